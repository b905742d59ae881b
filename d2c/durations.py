"""Durations as people write them (``3h``, ``90m``, ``1h30m``, ``45s``, ``2d``, ``0:05:00``,
``1-12:00:00``) and as d2c prints them.

One grammar for every option and setting that takes a time: ``--deadline``, ``--max-time``,
``D2C_CATALOG_TTL``, ``D2C_CATALOG_SPOT_TTL``. The clock form is Slurm's ``--time`` syntax
(``[days-]hours:minutes:seconds``, also ``minutes:seconds`` and ``days-hours[:minutes]``;
https://slurm.schedmd.com/sbatch.html#OPT_time), so a deadline copied from a batch script works.
"""

from __future__ import annotations

import math
import re

from d2c.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CLOCK = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_HINT = "write it like 3h, 90m, 1h30m or 45s, or as a clock: 0:05:00, 1-12:00:00"


def _clock_seconds(text: str) -> float | None:
    """Seconds of a clock form (``H:MM:SS``, ``MM:SS``, ``D-HH[:MM[:SS]]``), None if ``text`` is not one."""
    match = _CLOCK.fullmatch(text)
    if match is None or (":" not in text and "-" not in text):
        return None
    days, first, second, third = match.groups()
    fields = [int(x) for x in (first, second, third) if x is not None]
    if any(x >= 60 for x in fields[1:]):
        return None
    if days is not None:
        hours, minutes, seconds = (fields + [0, 0])[:3]
        return int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    if len(fields) == 2:
        minutes, seconds = fields
        return minutes * 60 + seconds
    hours, minutes, seconds = fields
    return hours * 3600 + minutes * 60 + seconds


def parse_duration(text: str, what: str) -> float:
    """``3h``, ``90m``, ``1h30m``, ``45s``, ``2d``, ``H:MM:SS``, ``D-HH:MM:SS``, ``MM:SS`` or plain
    seconds, as a finite number of seconds > 0.

    Anything else is a UsageError naming ``what`` (the option or setting it came from).
    """
    cleaned = text.strip().lower().replace(" ", "")
    try:
        seconds = float(cleaned)
    except ValueError:
        clock = _clock_seconds(cleaned)
        if clock is not None:
            seconds = clock
        else:
            parts = _PART.findall(cleaned)
            if not parts or "".join(n + u for n, u in parts) != cleaned:
                raise UsageError(f"{what}: '{text}' is not a duration; {_HINT}") from None
            seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{what}: '{text}' must be a finite duration longer than zero; {_HINT}")
    return seconds


def format_duration(seconds: float) -> str:
    """``4h10m``, ``45m``, ``30s``, ``12.5s``: how plans, predictions and messages state times."""
    seconds = max(0.0, float(seconds))
    if seconds < 20:
        return f"{seconds:.1f}s"
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = int(round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def format_clock(seconds: float) -> str:
    """``0:04:07``, ``1-02:00:00``: a running time on a live line, whole seconds, never cut short."""
    total = int(max(0.0, float(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"
