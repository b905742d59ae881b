"""A profiling session: run the designed points inside the time box and collect the runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from d2c.descriptor import ProfileSpec
from d2c.errors import UsageError, WorkError
from d2c.transport.base import Host
from profiler.design import ExperimentDesign
from profiler.experiment import SamplerFactory, run_point
from profiler.model import fit_model
from profiler.runs import RunRecord


@dataclass(frozen=True)
class Progress:
    """Where a session stands, for the progress bar."""

    done: int
    planned: int
    full_scale_estimate_s: float | None
    current: str


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

    def report(current: str) -> None:
        if on_progress is not None:
            on_progress(Progress(len(runs), design.planned, estimate, current))

    while True:
        point = design.next_point(runs, box_end - time.monotonic())
        if point is None:
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
        estimate = _full_scale_estimate(runs, spec, host_memory_mb)
        report(label)
    return runs


def _full_scale_estimate(runs: list[RunRecord], spec: ProfileSpec, host_memory_mb: float | None) -> float | None:
    try:
        model = fit_model([r.observation(host_memory_mb) for r in runs if r.fitted], spec.full_scale, bootstrap_samples=0)
    except UsageError:
        return None
    return model.point(spec.full_scale, max(spec.workers))
