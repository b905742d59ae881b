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
* Burstable families (t3) are assumed to run at their baseline once credits run out, so they
  are scaled by their baseline fraction for long runs.
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

BURSTABLE_BASELINE = {"t3": 0.3}
"""Sustained fraction of a vCPU for burstable families (t3.large-class baseline)."""

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


def instance_capacity(family: str, arch: str, vcpus: int, host_speed: float = 1.0) -> Capacity:
    """Capacity of one instance of ``family`` with ``vcpus`` vCPUs, for a profile whose host
    single-core speed is ``host_speed`` on the c5 = 1.0 scale."""
    core_speed = FAMILY_CORE_SPEED.get(family, 1.0) / max(host_speed, 1e-9)
    if family in BURSTABLE_BASELINE:
        # Throttled vCPUs rarely contend for their shared core, so the baseline alone applies.
        return Capacity(workers_per_instance=vcpus, speed=core_speed * BURSTABLE_BASELINE[family])
    smt = arch == "x86_64" and family not in _SMT_OFF_FAMILIES and vcpus >= 2
    per_vcpu = core_speed * (SMT_YIELD if smt else 1.0)
    return Capacity(workers_per_instance=vcpus, speed=per_vcpu)


def assumptions_text() -> str:
    """One line that states the mapping, for ``d2c predict`` and plan explanations."""
    return (
        f"one worker per vCPU; an x86 hyper-thread = {SMT_YIELD:g} core when all are busy, arm64 vCPU = 1 core; "
        "per-core speed from the family table relative to the profiling host's score (c5 core = 1.0)"
    )
