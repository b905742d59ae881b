"""Facts about the profiling host: CPU model, cores, memory, and a single-core speed score.

The facts are read with one shell command that works the same on this machine and in a VM over
SSH, needing nothing but ``/proc``, ``getconf`` and (for the speed score) ``python3``.

The speed score times a fixed pure-Python integer loop and converts loops per second to the
scale of :mod:`profiler.fleet`. It is taken ``SPEED_REPEATS`` times (each the best of repeated
runs over about 0.15 s, the run least disturbed by other work on a shared machine); the score is
their median and ``speed_spread`` their relative spread (1.4826 × median absolute deviation /
median, a standard deviation robust to one disturbed repeat), which the model carries into its
interval (profiler.model). The scale is the one of :mod:`profiler.fleet`, where a c5 core (Xeon Platinum
8275CL, 3.6 GHz turbo) is 1.0, by dividing by ``REFERENCE_LOOPS_PER_S``. That constant was
chosen from the development machine, an AMD EPYC (Zen 5, KVM guest) that runs the loop at about
21 million iterations per second under CPython 3.11, taken to be 1.4 c5 cores from published
single-thread comparisons of the two generations. It is an honest approximation (±20 %): the
interpreter version moves the score too (CPython 3.8 runs the loop about 1.5x slower than 3.11),
so the Python version is recorded beside the score. Without ``python3`` on the host the speed is
taken as 1.0 and the profile says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from d2c.errors import WorkError
from d2c.transport.base import Host

SPEED_REPEATS = 5
REFERENCE_LOOPS_PER_S = 15.0e6
"""Loop iterations per second of the speed script on a c5 core (the 1.0 of profiler.fleet)."""

_SPEED_SCRIPT = r"""
import sys, time
def f(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x
n = 100000
scores = []
for _ in range(5):
    best = 1e9
    start = time.perf_counter()
    while time.perf_counter() - start < 0.15:
        t = time.perf_counter()
        f(n)
        best = min(best, time.perf_counter() - t)
    scores.append(n / best)
print("loops_per_s=" + ",".join("%.0f" % x for x in scores))
print("python=%d.%d" % sys.version_info[:2])
"""

FACTS_COMMAND = (
    "echo \"cpu_model=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\"; "
    "echo \"logical=$(getconf _NPROCESSORS_ONLN)\"; "
    "echo \"physical=$(awk -F: '/^physical id/{p=$2} /^core id/{print p\":\"$2}' /proc/cpuinfo | sort -u | wc -l)\"; "
    "echo \"memory_kb=$(awk '/^MemTotal/{print $2}' /proc/meminfo)\"; "
    "echo \"page_size=$(getconf PAGESIZE)\"; "
    "echo \"clock_ticks=$(getconf CLK_TCK)\"; "
    "if command -v python3 >/dev/null 2>&1; then python3 - <<'PY'\n" + _SPEED_SCRIPT + "PY\nfi"
)


@dataclass(frozen=True)
class HostFacts:
    """What the profile records about the host it was measured on."""

    name: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    memory_mb: float
    speed: float
    """Single-core speed on profiler.fleet's scale (c5 core = 1.0)."""
    speed_loops_per_s: float | None
    python: str | None
    page_size: int = 4096
    clock_ticks: int = 100
    speed_spread: float = 0.0
    """Relative spread of the repeated speed scores (0: one score, given, or not needed)."""
    speed_basis: str = "measured"
    """``measured`` (on this host), ``given`` (``--host-speed``), ``cloud runs`` (1.0: every run
    ran on EC2, whose workers are counted in c5 cores), ``assumed`` (no python3 on the host)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in profile.json under ``host``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HostFacts":
        """Rebuild from ``to_dict`` (KeyError/TypeError/ValueError if malformed)."""
        return cls(
            name=str(data["name"]),
            cpu_model=str(data["cpu_model"]),
            physical_cores=int(data["physical_cores"]),
            logical_cores=int(data["logical_cores"]),
            memory_mb=float(data["memory_mb"]),
            speed=float(data["speed"]),
            speed_loops_per_s=None if data.get("speed_loops_per_s") is None else float(data["speed_loops_per_s"]),
            python=data.get("python"),
            page_size=int(data.get("page_size", 4096)),
            clock_ticks=int(data.get("clock_ticks", 100)),
            speed_spread=float(data.get("speed_spread", 0.0)),
            speed_basis=str(data.get("speed_basis", "measured")),
        )

    def validate(self) -> None:
        """ValueError naming the first field that is out of range."""
        for name in ("physical_cores", "logical_cores"):
            if getattr(self, name) < 1:
                raise ValueError(f"host.{name} = {getattr(self, name)} must be at least 1")
        for name, low in (("memory_mb", 0.0), ("speed_spread", 0.0)):
            value = getattr(self, name)
            if not math.isfinite(value) or value < low:
                raise ValueError(f"host.{name} = {value:g} must be a finite number >= {low:g}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"host.speed = {self.speed:g} must be a positive number")


def score_spread(scores: list[float]) -> tuple[float, float]:
    """Median and relative spread (1.4826 × MAD / median) of repeated speed scores."""
    median = statistics.median(scores)
    deviation = statistics.median(abs(x - median) for x in scores)
    return median, (1.4826 * deviation / median if median > 0 else 0.0)


def parse_facts(text: str, host_name: str) -> HostFacts:
    """Turn the ``key=value`` lines of FACTS_COMMAND into HostFacts."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()

    def number(key: str, default: float) -> float:
        try:
            return float(values.get(key, ""))
        except ValueError:
            return default

    logical = int(number("logical", 1)) or 1
    physical = int(number("physical", 0)) or logical
    try:
        scores = [float(x) for x in values.get("loops_per_s", "").split(",") if x.strip()]
    except ValueError:
        scores = []
    scores = [x for x in scores if x > 0]
    loops, spread = score_spread(scores) if scores else (None, 0.0)
    return HostFacts(
        name=host_name,
        cpu_model=values.get("cpu_model") or "unknown",
        physical_cores=physical,
        logical_cores=logical,
        memory_mb=number("memory_kb", 0.0) / 1024.0,
        speed=round(loops / REFERENCE_LOOPS_PER_S, 3) if loops else 1.0,
        speed_loops_per_s=loops,
        python=values.get("python"),
        page_size=int(number("page_size", 4096)),
        clock_ticks=int(number("clock_ticks", 100)),
        speed_spread=round(spread, 4),
        speed_basis="measured" if loops else "assumed",
    )


def measure_host(host: Host) -> HostFacts:
    """Read the facts of ``host`` (about 1 s, most of it the speed score)."""
    result = host.run(FACTS_COMMAND, timeout=30)
    if not result.ok:
        raise WorkError(f"{host.name}: cannot read host facts (exit {result.exit_status}): {result.stderr_tail.strip()[-200:]}")
    return parse_facts(result.stdout_tail, host.name)
