"""Calibration: measured cloud runs go back into the profile and the model is refitted."""

from __future__ import annotations

from pathlib import Path

from d2c.errors import UsageError
from profiler.profile_file import build_profile, load_profile, save_profile
from profiler.runs import RunRecord


def append_calibration(
    profile_path: Path,
    *,
    scale: float,
    workers: float,
    wall_s: float,
    instance_type: str,
    count: int,
    peak_rss_mb: float | None = None,
) -> None:
    """Add a run measured on ``count`` × ``instance_type`` (``workers`` = effective desktop-core
    workers, see profiler.fleet) to the profile at ``profile_path``, refit, and save atomically."""
    for name, value in (("scale", scale), ("workers", workers), ("wall_s", wall_s), ("count", count)):
        if not value > 0:
            raise UsageError(f"{profile_path}: calibration point has {name} = {value}; it must be positive")
    profile = load_profile(profile_path)
    record = RunRecord(
        scale=float(scale),
        workers=float(workers),
        wall_s=float(wall_s),
        source="calibration",
        instance_type=instance_type,
        count=int(count),
        peak_rss_mb=peak_rss_mb,
    )
    refitted = build_profile(profile.app, profile.full_scale, profile.host, [*profile.runs, record])
    save_profile(profile_path, refitted)
