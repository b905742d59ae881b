"""Durations as people write them (``3h``, ``90m``, ``1h30m``, ``45s``, ``2d``) and as d2c prints them.

One grammar for every option and setting that takes a time: ``--deadline``, ``--max-time``,
``D2C_CATALOG_TTL``, ``D2C_CATALOG_SPOT_TTL``.
"""

from __future__ import annotations

import math
import re

from d2c.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str, what: str) -> float:
    """``3h``, ``90m``, ``1h30m``, ``45s``, ``2d`` or plain seconds, as a finite number of seconds > 0.

    Anything else is a UsageError naming ``what`` (the option or setting it came from).
    """
    cleaned = text.strip().lower().replace(" ", "")
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _PART.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise UsageError(f"{what}: '{text}' is not a duration; write it like 3h, 90m, 1h30m or 45s") from None
        seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{what}: '{text}' must be a finite duration longer than zero, like 3h or 90m")
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
