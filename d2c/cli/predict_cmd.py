"""``d2c predict``: what the profile's model says for a fleet of one instance type.

``--json`` output (stable)::

    {"instance_type": "c5.xlarge", "count": 8, "scale": 1.0,
     "effective_workers": 19.2, "workers_per_instance": 4, "per_vcpu_speed": 0.6,
     "runtime_s": {"p50": 812.4, "p90": 873.0},
     "memory_mb": {"per_worker": 130.2, "master": 60.0, "per_host": 580.8, "host_memory": 8192.0},
     "spill_factor": 1.0,
     "extrapolation": {"beyond": true, "workers_factor": 9.6, "scale_factor": 12.5,
                       "measured_workers": [1, 2], "measured_scales": [0.02, 0.08],
                       "text": "19.2 effective workers, 9.6x the most measured (2); scale 1, 12.5x the largest measured (0.08)"},
     "speed_basis": "c5: family table (c5)",
     "model": "amdahl (s)", "profile": "sha256:…", "assumptions": "…"}

A profile measured at one scale predicts that scale only: another ``--scale`` is refused (exit 2).
A family without a speed basis (profiler.fleet) is refused too, naming why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import click
from d2c.cli.profile_file_option import profile_file_option

from d2c.durations import format_duration
from d2c.errors import UsageError


def lookup_instances(types: Iterable[str]) -> dict[str, tuple[str, str, int, float]]:
    """Instance type -> (family, arch, vcpus, memory MB) from the current catalog; unknown types
    are left out (the caller names them in its error)."""
    from planner.catalog.store import current_catalog

    catalog = current_catalog()
    found = {}
    for name in types:
        offer = catalog.find(name)
        if offer is not None:
            found[name] = (offer.family, offer.arch, int(offer.vcpus), float(offer.memory_gib) * 1024.0)
    return found


@click.command("predict")
@click.option("--type", "instance_type", required=True, help="EC2 instance type, e.g. c5.xlarge")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="number of instances")
@click.option("--scale", type=float, default=None, help="problem scale (default: the profile's full_scale)")
@profile_file_option(Path("profile.json"), help="the profile to predict from")
@click.option("--json", "as_json", is_flag=True, help="print the documented JSON instead of a table")
def predict(instance_type: str, count: int, scale: float | None, profile_path: Path, as_json: bool) -> None:
    """Predict runtime (p50/p90) and memory of the app on COUNT x TYPE."""
    from d2c.cli.output import console, print_json
    from profiler.fleet import assumptions_text, instance_capacity
    from profiler.profile_file import load_profile

    profile = load_profile(profile_path)
    if scale is not None and not scale > 0:
        raise UsageError(f"--scale: {scale:g} must be positive")
    scale = profile.full_scale if scale is None else scale
    facts = lookup_instances([instance_type])
    if instance_type not in facts:
        raise UsageError(f"--type: {instance_type!r} is not in the instance catalog; check the name (e.g. c5.xlarge) or run 'd2c catalog refresh'")
    _, arch, vcpus, memory_mb = facts[instance_type]
    capacity = instance_capacity(instance_type, arch, vcpus, profile.host.speed)
    if not capacity.known:
        raise UsageError(f"--type: {capacity.basis}; choose a type whose family d2c can rate (e.g. c5.xlarge)")
    workers = count * capacity.effective_workers
    model = profile.predictor
    estimate = model.runtime(scale, workers, host_memory_mb=memory_mb, workers_per_host=capacity.workers_per_instance)
    memory = model.memory(scale, workers)
    per_host = memory.per_host_mb(capacity.workers_per_instance, includes_master=True)
    spill = model.spill_factor(scale, workers, memory_mb, capacity.workers_per_instance)
    extrapolation = model.extrapolation(scale, workers)
    result = {
        "instance_type": instance_type,
        "count": count,
        "scale": scale,
        "effective_workers": round(workers, 3),
        "workers_per_instance": capacity.workers_per_instance,
        "per_vcpu_speed": round(capacity.speed, 3),
        "runtime_s": {"p50": round(estimate.p50, 2), "p90": round(estimate.p90, 2)},
        "memory_mb": {
            "per_worker": round(memory.per_worker_mb, 1),
            "master": round(memory.master_mb, 1),
            "per_host": round(per_host, 1),
            "host_memory": round(memory_mb, 1),
        },
        "spill_factor": round(spill, 3),
        "extrapolation": extrapolation.to_dict(),
        "misfit": model.misfit_text(scale, workers) if extrapolation.beyond else None,
        "speed_basis": capacity.basis,
        "model": model.name,
        "profile": profile.digest,
        "assumptions": assumptions_text(),
    }
    if as_json:
        print_json(result)
        return
    out = console()
    out.print(f"[bold]{count} x {instance_type}[/bold] at scale {scale:g}: {workers:.1f} effective desktop-core workers ({capacity.workers_per_instance} per instance x {capacity.speed:.2f})")
    out.print(f"runtime  p50 {format_duration(estimate.p50)}   p90 {format_duration(estimate.p90)}   (the app alone; plans add boot and setup)")
    out.print(f"memory   {memory.per_worker_mb:.0f} MB per worker, {per_host:.0f} MB per host (master {memory.master_mb:.0f} MB) of {memory_mb:.0f} MB")
    if spill > 1.0:
        out.print(f"[yellow]the working set does not fit in memory: runtime x{spill:.2f} for spilling[/yellow]")
    if extrapolation.beyond:
        out.print(f"[yellow]extrapolates {extrapolation.text}[/yellow]")
        misfit = model.misfit_text(scale, workers)
        if misfit:
            out.print(f"[yellow]{misfit}[/yellow]")
    else:
        out.print(f"range    {extrapolation.text}")
    out.print(f"model    {model.name} (profile {profile.digest[:19]}); speed {capacity.basis}")
    out.print(f"assumes  {assumptions_text()}")


COMMANDS: list[click.Command] = [predict]
