"""Experiment design: which (scale, workers) point to run next inside the time box.

Each candidate point is valued by what it adds to the fit and costed by what the runs so far
say it will take; the point with the most value per second that can still finish inside the box
is run next:

* value: a point never run is worth 1, plus 0.5 if its worker count is new and 0.5 if its scale
  is new (both widen the fit); a repeat (up to ``repeats``) is worth 0.5, as it measures noise;
* cost: a point already run costs its slowest run; otherwise the nearest run (in log scale, then
  workers) scaled linearly in scale and, conservatively, assuming no speed-up from more workers
  (``t0 · s/s0 · max(w0/w, 1)``); times ``SAFETY`` plus ``OVERHEAD_S``;
* scales are climbed one at a time (a scale is only tried once the scale below it has a run),
  so the first runs are the cheapest and the estimate of a larger one is never a wild guess.

The first point, before anything is known, is the smallest scale with the most workers: the
cheapest run there is. A point that was killed at the box is never retried.

Once a model is fitted (``model`` given), a point's value is what it would narrow the
prediction at the *target* (the full scale with the most workers): the drop in the target's
relative prediction variance, in units of one run's noise, from adding a run at x,
``(x0' C a)² / (1 + a' C a) / T(x0)²`` with ``a`` x's relative design row and ``C`` the current
(A'A)⁻¹ (Sherman-Morrison). This is the criterion of Ernest's experiment design (Venkataraman
et al., NSDI 2016, §3.2: choose the runs that most reduce the variance of the prediction, per
unit of cost), here greedy and per second of profiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from profiler.model import FittedModel, design_matrix
from profiler.runs import RunRecord

SAFETY = 1.3
OVERHEAD_S = 0.3


@dataclass(frozen=True)
class PlannedPoint:
    """The next run: its point, its repeat number and its estimated cost."""

    scale: float
    workers: int
    repeat: int
    estimate_s: float | None


class ExperimentDesign:
    """Chooses profiling points among ``scales`` × ``workers`` with ``repeats`` each."""

    def __init__(self, scales: Sequence[float], workers: Sequence[int], repeats: int):
        self.scales = sorted(set(scales))
        self.workers = sorted(set(workers))
        self.repeats = repeats

    @property
    def planned(self) -> int:
        """How many runs a complete design has."""
        return len(self.scales) * len(self.workers) * self.repeats

    def estimate_cost(self, scale: float, workers: int, done: Sequence[RunRecord]) -> float | None:
        """Estimated seconds for one run at (scale, workers), None before any run."""
        same = [r.wall_s for r in done if r.scale == scale and r.workers == workers]
        if same:
            return max(same)
        finished = [r for r in done if r.fitted]
        if not finished:
            return None
        nearest = min(finished, key=lambda r: (abs(math.log(scale / r.scale)), abs(math.log(workers / r.workers)), -r.wall_s))
        return nearest.wall_s * (scale / nearest.scale) * max(nearest.workers / workers, 1.0)

    def narrowing(self, model: FittedModel, done: Sequence[RunRecord], target: tuple[float, float]) -> Callable[[float, float], float]:
        """A function (scale, workers) -> how much a run there narrows the target's prediction."""
        rows = [r for r in done if r.fitted]
        scale = np.array([r.scale for r in rows], dtype=float)
        workers = np.array([r.workers for r in rows], dtype=float)
        matrix = design_matrix(model.family, model.scale_form, model.s_ref, scale, workers)
        fitted = np.maximum(matrix @ np.asarray(model.coefficients), 1e-12)
        relative = matrix / fitted[:, None]
        inverse = np.linalg.pinv(relative.T @ relative)
        x0 = design_matrix(model.family, model.scale_form, model.s_ref, np.array([target[0]]), np.array([target[1]]))[0]
        t0 = max(float(x0 @ np.asarray(model.coefficients)), 1e-12)

        def value(s: float, w: float) -> float:
            x = design_matrix(model.family, model.scale_form, model.s_ref, np.array([s]), np.array([float(w)]))[0]
            a = x / max(float(x @ np.asarray(model.coefficients)), 1e-12)
            return float((x0 @ inverse @ a) ** 2 / (1.0 + a @ inverse @ a)) / t0**2

        return value

    def next_point(
        self,
        done: Sequence[RunRecord],
        remaining_s: float,
        model: FittedModel | None = None,
        target: tuple[float, float] | None = None,
    ) -> PlannedPoint | None:
        """The most informative affordable point, or None when the design is complete or nothing fits.

        With a fitted ``model`` and a ``target`` (scale, workers), informative means narrowing
        the target's prediction the most per second (module docstring)."""
        narrowing = self.narrowing(model, done, target) if model is not None and target is not None else None
        if not done:
            return PlannedPoint(self.scales[0], self.workers[-1], 1, None)
        killed = {(r.scale, r.workers) for r in done if not r.fitted}
        counts: dict[tuple[float, float], int] = {}
        for r in done:
            counts[(r.scale, r.workers)] = counts.get((r.scale, r.workers), 0) + 1
        seen_scales = {r.scale for r in done}
        seen_workers = {r.workers for r in done}
        climbable = [s for s in self.scales if s in seen_scales]
        above = [s for s in self.scales if s not in seen_scales]
        allowed_scales = set(climbable + above[:1])
        best: tuple[float, PlannedPoint] | None = None
        for scale in self.scales:
            if scale not in allowed_scales:
                continue
            for workers in self.workers:
                key = (scale, float(workers))
                runs = counts.get(key, 0)
                if key in killed or runs >= self.repeats:
                    continue
                if narrowing is not None:
                    # A count or scale never run also guards against a wrong model family.
                    value = narrowing(scale, workers) + 1e-3 * (runs == 0)
                elif runs == 0:
                    value = 1.0 + 0.5 * (workers not in seen_workers) + 0.5 * (scale not in seen_scales)
                else:
                    value = 0.5
                cost = self.estimate_cost(scale, workers, done)
                if cost is None:
                    continue
                budget = cost * SAFETY + OVERHEAD_S
                if budget > remaining_s:
                    continue
                ratio = value / budget
                if best is None or ratio > best[0] + 1e-12:
                    best = (ratio, PlannedPoint(scale, workers, runs + 1, cost))
        return best[1] if best else None
