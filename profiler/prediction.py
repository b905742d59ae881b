"""What the planner and executor ask of a fitted profile: runtime and memory predictions.

The planner only sees this interface, never the fitting code. ``workers`` is a number of
*effective desktop-core workers*: a fleet of ``n`` instances with ``w`` workers each, whose cores
run at ``speed`` times the profiling host's single-core score, counts as ``n * w * speed``
(see README "How plans map onto the model"). It may therefore be fractional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Estimate:
    """A predicted quantity as its median and 90th percentile."""

    p50: float
    p90: float


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak resident memory, MB."""

    per_worker_mb: float
    master_mb: float

    def per_host_mb(self, workers_on_host: float, includes_master: bool) -> float:
        """Peak memory of a host running ``workers_on_host`` workers (and the master if asked)."""
        return self.per_worker_mb * workers_on_host + (self.master_mb if includes_master else 0.0)


class RuntimePredictor(Protocol):
    """A fitted runtime and memory model of one app."""

    full_scale: float
    """The scale of the real run (from the descriptor), used when no scale is given."""

    def runtime(
        self,
        scale: float,
        workers: float,
        *,
        host_memory_mb: float | None = None,
        workers_per_host: float | None = None,
    ) -> Estimate:
        """Predicted wall seconds at ``scale`` with ``workers`` effective workers.

        When the host memory and workers per host are given, a working set that does not fit
        changes the runtime regime (spilling), which the estimate includes.
        """

    def memory(self, scale: float, workers: float) -> MemoryEstimate:
        """Predicted peak memory at ``scale`` with ``workers`` workers."""
