"""How a fleet of EC2 instances maps onto the profile model's workers.

The model is fitted on the desktop, where each worker ran on a core of its own. On EC2 the app
is started with one worker per vCPU (``D2C_WORKER_COUNT`` is the fleet's total vCPUs), so a fleet
of ``count`` instances offers ``count * workers_per_instance * speed`` effective desktop-core
workers. The assumptions, shown by ``d2c predict``:

* x86 families with SMT run two vCPUs per physical core; with every vCPU busy a vCPU yields
  ``SMT_YIELD`` of a full core (two hyper-threads together give about 1.2 cores on
  compute-bound code). Graviton (arm64) vCPUs are whole cores, and hpc6a runs with SMT off.
* Per-core speed is ``FAMILY_CORE_SPEED[family] / host_speed``: both on one scale where a c5
  core (Intel Xeon Platinum 8275CL at 3.6 GHz turbo) is 1.0. The family figures are relative
  single-thread performance from AWS's published processor generations; the profiling host's
  figure comes from the profiler's single-core speed score.
* Burstable types (t2, t3, t3a, t4g) launched in ``standard`` credit mode run at their
  per-size baseline once their credits run out, so for long runs each vCPU counts as its
  baseline fraction (``BURSTABLE_BASELINE``: AWS's baseline utilization per vCPU, e.g. 5 % for
  t3.nano, 40 % for t3.xlarge, from the credit table at
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-credits-baseline-concepts.html,
  baseline = credits earned per hour / vCPUs / 60). In ``unlimited`` mode they run at full speed
  like any other type (and are billed surplus credits, see planner.billing).
"""

from __future__ import annotations

from dataclasses import dataclass

SMT_YIELD = 0.6
"""Fraction of a physical core one busy hyper-thread delivers when its sibling is busy too."""

FAMILY_CORE_SPEED = {
    "c5": 1.00, "c5n": 1.00, "m5": 0.95, "r5": 0.95,
    "c6i": 1.12, "m6i": 1.10, "r6i": 1.10,
    "c6a": 1.08, "m6a": 1.06, "hpc6a": 1.06,
    "c7i": 1.25, "m7i": 1.22, "r7i": 1.22,
    "c7g": 1.15, "m7g": 1.12,
    "t3": 0.95,
}
"""Single-core speed per family relative to a c5 core (1.0); unknown families count as 1.0."""

_T3_SIZES = {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.40, "2xlarge": 0.40}
BURSTABLE_BASELINE = {
    "t3": _T3_SIZES,
    "t3a": _T3_SIZES,
    "t4g": _T3_SIZES,
    "t2": {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.225, "2xlarge": 0.17},
}
"""Baseline utilization per vCPU by burstable family and size (AWS's credit table, cited above)."""


def burstable_baseline(instance_type: str) -> float | None:
    """Baseline fraction per vCPU of a burstable type or family (None for other families).

    Given a family alone, or a size the table lacks, the family's smallest baseline applies, so
    a burstable host is never counted faster than AWS runs it.
    """
    family, _, size = instance_type.partition(".")
    table = BURSTABLE_BASELINE.get(family)
    if table is None:
        return None
    return table.get(size, min(table.values()))


_SMT_OFF_FAMILIES = ("hpc6a",)


@dataclass(frozen=True)
class Capacity:
    """What one instance contributes: workers started on it and their speed in desktop cores."""

    workers_per_instance: int
    speed: float
    """Effective desktop-core workers per worker started (per-vCPU speed)."""

    @property
    def effective_workers(self) -> float:
        """Desktop-core workers one instance is worth."""
        return self.workers_per_instance * self.speed


def instance_capacity(
    family: str, arch: str, vcpus: int, host_speed: float = 1.0, *, cpu_credits: str = "standard"
) -> Capacity:
    """Capacity of one instance of ``family`` (or a full type name, e.g. ``t3.micro``, which burstable
    types need for their per-size baseline) with ``vcpus`` vCPUs, for a profile whose host
    single-core speed is ``host_speed`` on the c5 = 1.0 scale. ``cpu_credits`` is the credit mode
    a burstable type is launched in."""
    baseline = burstable_baseline(family)
    family = family.split(".", 1)[0]
    core_speed = FAMILY_CORE_SPEED.get(family, 1.0) / max(host_speed, 1e-9)
    if baseline is not None and cpu_credits == "standard":
        # Throttled vCPUs rarely contend for their shared core, so the baseline alone applies.
        return Capacity(workers_per_instance=vcpus, speed=core_speed * baseline)
    smt = arch == "x86_64" and family not in _SMT_OFF_FAMILIES and vcpus >= 2
    per_vcpu = core_speed * (SMT_YIELD if smt else 1.0)
    return Capacity(workers_per_instance=vcpus, speed=per_vcpu)


def assumptions_text() -> str:
    """One line that states the mapping, for ``d2c predict`` and plan explanations."""
    return (
        f"one worker per vCPU; an x86 hyper-thread = {SMT_YIELD:g} core when all are busy, arm64 vCPU = 1 core; "
        "per-core speed from the family table relative to the profiling host's score (c5 core = 1.0)"
    )
