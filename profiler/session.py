"""A profiling session: run the designed points inside the time box and collect the runs.

Profiling pays for itself: after each run the model is refitted and its p90 at the full scale
with the most workers is the session's guide. The session stops

* when that p90 has moved less than the noise between repeats (at least ``MIN_STABLE``) over
  the last run, once some point has been repeated (so the noise is known) and at least
  ``MIN_POINTS_TO_STOP`` distinct points are measured (enough to check Ernest's four
  coefficients out of sample): more runs would not change the answer;
* when the next run would take profiling past ``PROFILE_SHARE`` (5 %) of the predicted full
  run, once ``MIN_POINTS_TO_STOP`` points are measured (a fit from fewer extrapolates on too
  little, so those are measured whatever they cost): the share is a budget the design chooses
  within, so a session does not overshoot it by a run;
* when the design is complete or the next point would not finish inside the time box.

The next point is the one that narrows the full-scale prediction most per second
(profiler.design). Progress reports say why the session stopped (``Progress.stopped``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from d2c.descriptor import ProfileSpec
from d2c.errors import UsageError, WorkError
from d2c.transport.base import Host
from profiler.design import ExperimentDesign
from profiler.experiment import SamplerFactory, run_point
from profiler.model import FittedModel, fit_model
from profiler.runs import RunRecord

PROFILE_SHARE = 0.05
MIN_STABLE = 0.02
MIN_POINTS_TO_STOP = 5
QUICK_BOOTSTRAP = 50


@dataclass(frozen=True)
class Progress:
    """Where a session stands, for the progress bar."""

    done: int
    planned: int
    full_scale_estimate_s: float | None
    current: str
    stopped: str | None = None
    """Why the session ended early (stable prediction, profiling share), None otherwise."""


ProgressCallback = Callable[[Progress], None]


def profile_app(
    host: Host,
    spec: ProfileSpec,
    *,
    max_time_s: float,
    sampler_factory: SamplerFactory,
    host_memory_mb: float | None = None,
    cwd: str | None = None,
    interval_s: float = 0.2,
    on_progress: ProgressCallback | None = None,
) -> list[RunRecord]:
    """Run the profiling points chosen by :class:`ExperimentDesign` until the design is done or
    the next point would not finish inside ``max_time_s``.

    A point still running at the box (or at ``spec.timeout_s``) is killed and kept as
    ``partial``, and the session ends. An app exiting non-zero raises WorkError with its
    stderr tail.
    """
    design = ExperimentDesign(spec.scales, spec.workers, spec.repeats)
    started = time.monotonic()
    box_end = started + max_time_s
    runs: list[RunRecord] = []
    estimate: float | None = None
    model: FittedModel | None = None
    previous_p90: float | None = None
    target = (spec.full_scale, float(max(spec.workers)))
    label = ""

    def report(current: str, stopped: str | None = None) -> None:
        if on_progress is not None:
            on_progress(Progress(len(runs), design.planned, estimate, current, stopped))

    while True:
        remaining = box_end - time.monotonic()
        capped = estimate is not None and _enough_points(runs)
        cap_s = PROFILE_SHARE * estimate if capped else math.inf
        point = design.next_point(runs, min(remaining, started + cap_s - time.monotonic()), model, target)
        if point is None:
            if capped and design.next_point(runs, remaining, model, target) is not None:
                spent = time.monotonic() - started
                share = f"{PROFILE_SHARE:.0%} of the predicted full run ({estimate:.0f}s)"
                if spent < cap_s:
                    report(label, f"profiling took {spent:.1f}s; another run would take it past {cap_s:.1f}s, {share}")
                else:
                    report(label, f"profiling took {spent:.1f}s, past {share}, to measure the {MIN_POINTS_TO_STOP} points a fit needs")
            break
        label = f"scale {point.scale:g}, {point.workers} workers, run {point.repeat}"
        report(label)
        stop_at = box_end if spec.timeout_s is None else min(box_end, time.monotonic() + spec.timeout_s)
        outcome = run_point(
            host,
            spec.render(point.scale, point.workers),
            scale=point.scale,
            workers=point.workers,
            repeat=point.repeat,
            sampler_factory=sampler_factory,
            stop_at=stop_at,
            cwd=cwd,
            interval_s=interval_s,
        )
        runs.append(outcome.record)
        if outcome.killed_at_box:
            report(f"{label}: killed after {outcome.record.wall_s:.1f}s (kept as partial)")
            break
        if outcome.result.exit_status != 0:
            tail = " | ".join(outcome.result.stderr_tail.strip().splitlines()[-3:]) or "no stderr"
            raise WorkError(
                f"the app exited with status {outcome.result.exit_status} at {label} "
                f"({spec.render(point.scale, point.workers)!r}); its stderr ends: {tail}"
            )
        model = _fit(runs, spec, host_memory_mb)
        if model is None:
            report(label)
            continue
        p90 = model.runtime(*target).p90
        estimate = model.runtime(*target).p50
        stable = max(model.noise, MIN_STABLE)
        if previous_p90 and _enough_points(runs) and model.noise > 0 and abs(p90 / previous_p90 - 1.0) < stable:
            report(label, f"the full-scale p90 moved {abs(p90 / previous_p90 - 1.0):.1%} with the last run, less than the {stable:.1%} noise between repeats")
            break
        previous_p90 = p90
        report(label)
    return runs


def _enough_points(runs: list[RunRecord]) -> bool:
    return len({(r.scale, r.workers) for r in runs if r.fitted}) >= MIN_POINTS_TO_STOP


def _fit(runs: list[RunRecord], spec: ProfileSpec, host_memory_mb: float | None) -> FittedModel | None:
    """The model of the runs so far (a quick bootstrap), None while too few to fit or to
    predict the full scale."""
    try:
        model = fit_model([r.observation(host_memory_mb) for r in runs if r.fitted], spec.full_scale, bootstrap_samples=QUICK_BOOTSTRAP)
        model.check_scale(spec.full_scale)
    except UsageError:
        return None
    return model
