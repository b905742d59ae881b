"""Feeding a measured cloud run back into the profile as a calibration point.

A successful, billed run (not a rehearsal) is one more measured point of the scaling model: its
scale, its effective workers (each instance counted as :func:`profiler.fleet.instance_capacity`
counts it against the desktop's speed), and the master's wall time. The point is appended to
profile.json (``source: calibration``) so the next ``d2c recommend`` fits it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.plans import Plan


def calibrate(profile: Path | None, plan: Plan, details: dict[str, Any]) -> bool:
    """Append the run journaled in ``details`` to ``profile``; False when there is no profile file."""
    if profile is None or not Path(profile).is_file():
        return False
    from profiler.calibration import append_calibration
    from profiler.fleet import instance_capacity
    from profiler.profile_file import load_profile

    host_speed = load_profile(Path(profile)).host.speed
    effective = sum(a.count * instance_capacity(a.instance_type.split(".")[0], a.arch, a.vcpus, host_speed).effective_workers for a in plan.roles)
    largest = max(plan.roles, key=lambda a: a.count * a.vcpus)
    append_calibration(
        Path(profile),
        scale=float(details.get("scale", 1.0)),
        workers=effective,
        wall_s=float(details["master_ended_at"]) - float(details["master_started_at"]),
        instance_type=largest.instance_type,
        count=largest.count,
    )
    return True
