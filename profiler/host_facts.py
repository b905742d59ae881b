"""Facts about the profiling host: CPU model, cores, memory, and a single-core speed score.

The facts are read with one shell command that works the same on this machine and in a VM over
SSH, needing nothing but ``/proc``, ``getconf`` and (for the speed score) ``python3``.

The speed score times a fixed pure-Python integer loop (best of repeated 0.1 s runs, at most
about 1 s in all; the best run is the one least disturbed by other work on a shared machine) and
converts loops per second to the scale of :mod:`profiler.fleet`, where a c5 core (Xeon Platinum
8275CL, 3.6 GHz turbo) is 1.0, by dividing by ``REFERENCE_LOOPS_PER_S``. That constant was
chosen from the development machine, an AMD EPYC (Zen 5, KVM guest) that runs the loop at about
21 million iterations per second under CPython 3.11, taken to be 1.4 c5 cores from published
single-thread comparisons of the two generations. It is an honest approximation (±20 %): the
interpreter version moves the score too (CPython 3.8 runs the loop about 1.5x slower than 3.11),
so the Python version is recorded beside the score. Without ``python3`` on the host the speed is
taken as 1.0 and the profile says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from d2c.errors import WorkError
from d2c.transport.base import Host

REFERENCE_LOOPS_PER_S = 15.0e6
"""Loop iterations per second of the speed script on a c5 core (the 1.0 of profiler.fleet)."""

_SPEED_SCRIPT = r"""
import sys, time
def f(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x
n = 200000
best = 1e9
start = time.perf_counter()
while time.perf_counter() - start < 0.8:
    t = time.perf_counter()
    f(n)
    best = min(best, time.perf_counter() - t)
print("loops_per_s=%.0f" % (n / best))
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
        )


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
    loops = number("loops_per_s", 0.0) or None
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
    )


def measure_host(host: Host) -> HostFacts:
    """Read the facts of ``host`` (about 1 s, most of it the speed score)."""
    result = host.run(FACTS_COMMAND, timeout=30)
    if not result.ok:
        raise WorkError(f"{host.name}: cannot read host facts (exit {result.exit_status}): {result.stderr_tail.strip()[-200:]}")
    return parse_facts(result.stdout_tail, host.name)
