"""What the planner and executor ask of a fitted profile: runtime and memory predictions.

The planner only sees this interface, never the fitting code. ``workers`` is a number of
*effective desktop-core workers*: a fleet of ``n`` instances with ``w`` workers each, whose cores
run at ``speed`` times the profiling host's single-core score, counts as ``n * w * speed``
(see README "How plans map onto the model"). It may therefore be fractional.

Every plan can carry how far it extrapolates: ``extrapolation_of(predictor, scale, workers)``
gives an :class:`Extrapolation` whose ``text`` reads "203 effective workers, 100x the most
measured (2)" and whose ``to_dict()`` is the JSON form ``d2c predict --json`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol


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

    # Fitted profiles also offer ``extrapolation(scale, workers) -> Extrapolation`` (how far the
    # target lies beyond the measured runs); read it through :func:`extrapolation_of`, which
    # also accepts predictors without it.


@dataclass(frozen=True)
class Extrapolation:
    """How far a prediction lies beyond the runs the model was fitted on.

    ``workers_factor`` and ``scale_factor`` are the target over the most measured (or, below the
    range, the fewest / smallest measured over the target); 1 inside the range.
    """

    scale: float
    workers: float
    min_scale: float
    max_scale: float
    min_workers: float
    max_workers: float

    @property
    def workers_factor(self) -> float:
        if self.workers > self.max_workers:
            return self.workers / self.max_workers
        if self.workers < self.min_workers:
            return self.min_workers / self.workers
        return 1.0

    @property
    def scale_factor(self) -> float:
        if self.scale > self.max_scale:
            return self.scale / self.max_scale
        if self.scale < self.min_scale:
            return self.min_scale / self.scale
        return 1.0

    @property
    def beyond(self) -> bool:
        """True when the target lies outside the measured range in workers or in scale."""
        return self.workers_factor > 1.0 + 1e-9 or self.scale_factor > 1.0 + 1e-9

    @property
    def text(self) -> str:
        """E.g. ``203 effective workers, 100x the most measured (2); scale 1, 50x the largest measured (0.02)``."""
        parts = []
        if self.workers > self.max_workers * (1 + 1e-9):
            parts.append(f"{self.workers:.3g} effective workers, {self.workers_factor:.3g}x the most measured ({self.max_workers:.3g})")
        elif self.workers < self.min_workers * (1 - 1e-9):
            parts.append(f"{self.workers:.3g} effective workers, {self.workers_factor:.3g}x below the fewest measured ({self.min_workers:.3g})")
        if self.scale > self.max_scale * (1 + 1e-9):
            parts.append(f"scale {self.scale:g}, {self.scale_factor:.3g}x the largest measured ({self.max_scale:g})")
        elif self.scale < self.min_scale * (1 - 1e-9):
            parts.append(f"scale {self.scale:g}, {self.scale_factor:.3g}x below the smallest measured ({self.min_scale:g})")
        return "; ".join(parts) if parts else f"within the measured range ({self.min_workers:.3g}-{self.max_workers:.3g} workers, scale {self.min_scale:g}-{self.max_scale:g})"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``predict --json`` and plans.json)."""
        return {
            "beyond": self.beyond,
            "workers_factor": round(self.workers_factor, 3),
            "scale_factor": round(self.scale_factor, 3),
            "measured_workers": [self.min_workers, self.max_workers],
            "measured_scales": [self.min_scale, self.max_scale],
            "text": self.text,
        }


@dataclass(frozen=True)
class MeasuredRange:
    """The scales and effective worker counts a model was fitted on."""

    min_scale: float
    max_scale: float
    min_workers: float
    max_workers: float
    single_scale: bool = False

    def extrapolation(self, scale: float, workers: float) -> Extrapolation:
        """How far (scale, workers) lies beyond this range."""
        return Extrapolation(scale, workers, self.min_scale, self.max_scale, self.min_workers, self.max_workers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scales": [self.min_scale, self.max_scale],
            "workers": [self.min_workers, self.max_workers],
            "single_scale": self.single_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MeasuredRange":
        """Rebuild from ``to_dict`` (ValueError when a bound is not a positive, ordered number)."""
        (s0, s1), (w0, w1) = data["scales"], data["workers"]
        s0, s1, w0, w1 = float(s0), float(s1), float(w0), float(w1)
        for name, low, high in (("scales", s0, s1), ("workers", w0, w1)):
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"model.measured.{name}: {low:g}..{high:g} must be positive and ordered")
        return cls(s0, s1, w0, w1, bool(data.get("single_scale", False)))


def extrapolation_of(predictor: Any, scale: float, workers: float) -> Extrapolation | None:
    """The predictor's :class:`Extrapolation` at (scale, workers), None when it cannot say
    (a predictor without ``extrapolation``, e.g. a planner test's fixed model)."""
    method = getattr(predictor, "extrapolation", None)
    return method(scale, workers) if callable(method) else None
