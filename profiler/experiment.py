"""Running one profiling point on a host while sampling its process tree."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from d2c.transport.base import CommandResult, Host
from profiler.runs import RunRecord
from profiler.sampling import TreeAccumulator, TreeSampler, sample_tree_into

SamplerFactory = Callable[[int], TreeSampler]
"""Makes a sampler for the process tree rooted at a pid."""

_POLL_S = 0.02


@dataclass(frozen=True)
class PointOutcome:
    """A finished (or killed) point: the run record and how the command ended."""

    record: RunRecord
    result: CommandResult
    killed_at_box: bool


def run_point(
    host: Host,
    command: str,
    *,
    scale: float,
    workers: int,
    repeat: int,
    sampler_factory: SamplerFactory,
    stop_at: float | None,
    cwd: str | None = None,
    interval_s: float = 0.2,
) -> PointOutcome:
    """Run ``command`` on ``host``, sampling its tree every ``interval_s`` seconds (more often
    in its first seconds).

    ``stop_at`` is a ``time.monotonic()`` instant: a command still running then is killed and
    its record marked ``partial``. ``D2C_WORKER_COUNT`` is set to ``workers`` as on the cloud.
    """
    accumulator = TreeAccumulator()
    started = time.monotonic()
    process = host.start(command, cwd=cwd, env={"D2C_WORKER_COUNT": str(workers)})
    sampler = sampler_factory(process.pid)
    killed = False
    next_sample = started
    ended = None
    while True:
        now = time.monotonic()
        if process.poll() is not None:
            ended = now
            break
        if stop_at is not None and now >= stop_at:
            process.kill()
            killed = True
            ended = now
            break
        if now >= next_sample:
            sample_tree_into(accumulator, sampler.sample())
            # Dense at first: short runs would otherwise end before their CPU time is seen.
            next_sample = time.monotonic() + min(interval_s, 0.05 + (now - started) / 10)
        time.sleep(_POLL_S)
    result = process.wait(timeout=30)
    wall = ended - started
    summary = accumulator.summary(wall)
    if summary.worker_rss_mb is not None:
        per_worker, master = summary.worker_rss_mb, summary.master_rss_mb
    else:
        # One process doing all the work (threads): its memory is shared out over the workers.
        per_worker, master = (summary.peak_rss_mb / workers if summary.peak_rss_mb else None), None
    record = RunRecord(
        scale=scale,
        workers=float(workers),
        wall_s=wall,
        repeat=repeat,
        source="profile",
        status="partial" if killed else "ok",
        exit_status=None if killed else result.exit_status,
        peak_rss_mb=None if per_worker is None else round(per_worker, 2),
        master_rss_mb=master,
        contention=summary.contention,
        summary=summary.to_dict(),
    )
    return PointOutcome(record=record, result=result, killed_at_box=killed)
