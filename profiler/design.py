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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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

    def next_point(self, done: Sequence[RunRecord], remaining_s: float) -> PlannedPoint | None:
        """The most informative affordable point, or None when the design is complete or nothing fits."""
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
                if runs == 0:
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
