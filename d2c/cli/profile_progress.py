"""What ``d2c profile`` tells about the runs its time box left out."""

from __future__ import annotations


def skipped_points(spec, runs) -> str:
    """The planned runs the session did not start, named by point:
    ``4 of 12 planned runs: scale 0.2 with 1 and 2 workers; a repeat of scale 0.1 with 4 workers``."""
    started = {(r.scale, r.workers, r.repeat) for r in runs}
    named, count = [], 0
    for scale in sorted(set(spec.scales)):
        never, again = [], []
        for workers in sorted(set(spec.workers)):
            left = sum((scale, workers, repeat) not in started for repeat in range(1, spec.repeats + 1))
            count += left
            if left:
                (never if left == spec.repeats else again).append(workers)
        if never:
            named.append(f"scale {scale:g} with {_workers(never)}")
        if again:
            named.append(f"a repeat of scale {scale:g} with {_workers(again)}")
    if not count:
        return ""
    planned = len(set(spec.scales)) * len(set(spec.workers)) * spec.repeats
    return f"{count} of {planned} planned runs: {'; '.join(named)}"


def _workers(counts: list[int]) -> str:
    """``1 worker``, ``1 and 2 workers``, ``1, 2 and 4 workers``."""
    if counts == [1]:
        return "1 worker"
    listed = ", ".join(map(str, counts[:-1])) + " and " if len(counts) > 1 else ""
    return f"{listed}{counts[-1]} workers"
