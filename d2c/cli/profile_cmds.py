"""``d2c profile``, ``d2c profile import`` and ``d2c profile show``: learn the app's scaling model."""

from __future__ import annotations

from pathlib import Path

import click

from d2c.durations import format_duration, parse_duration
from d2c.errors import UsageError

_DEFAULT_PROFILE = Path("profile.json")


@click.group("profile", invoke_without_command=True)
@click.option("--max-time", default="5m", show_default=True, help="time box for all experiments, e.g. 5m, 90s")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=_DEFAULT_PROFILE, show_default=True)
@click.option("-f", "--file", "descriptor_path", type=click.Path(path_type=Path), default=None, help="the descriptor (default ./d2c.yaml)")
@click.pass_context
def profile(ctx: click.Context, max_time: str, output: Path, descriptor_path: Path | None) -> None:
    """Run the app at small scales on the desktop and fit its runtime and memory model."""
    if ctx.invoked_subcommand is not None:
        return
    from d2c.cli.output import console, note, progress
    from d2c.descriptor import load_descriptor
    from profiler.host_facts import measure_host
    from profiler.profile_file import build_profile, save_profile
    from profiler.session import profile_app

    box = parse_duration(max_time, "--max-time")
    descriptor = load_descriptor(descriptor_path)
    if descriptor.profile is None:
        raise UsageError(f"{descriptor.path}: profile: missing; add a 'profile:' section (command with {{scale}} and {{workers}}, scales, workers, full_scale)")
    spec = descriptor.profile
    host, sampler_factory, cwd, interval = _open_host(descriptor)
    try:
        facts = measure_host(host)
        if sampler_factory is None:
            from profiler.sampling import ProcTreeSampler

            def sampler_factory(pid: int):
                return ProcTreeSampler(host, pid, page_size=facts.page_size, clock_ticks=facts.clock_ticks)

        if max(spec.workers) > facts.logical_cores:
            note(f"note: profile.workers goes up to {max(spec.workers)} but {host.name} has {facts.logical_cores} cores; those points measure contention, not speed-up")
        with progress(box_s=box, status_below=True) as bar:
            task = bar.add_task("profiling", total=len(spec.scales) * len(spec.workers) * spec.repeats, status="starting")

            def on_progress(update) -> None:
                guess = f"full scale ≈ {format_duration(update.full_scale_estimate_s)}" if update.full_scale_estimate_s else "full scale: not yet"
                bar.update(task, completed=update.done, total=update.planned, status=f"now {update.current} · {guess}")

            runs = profile_app(
                host,
                spec,
                max_time_s=box,
                sampler_factory=sampler_factory,
                host_memory_mb=facts.memory_mb,
                cwd=cwd,
                interval_s=interval,
                on_progress=on_progress,
            )
    finally:
        host.close()
    partial = [r for r in runs if not r.fitted]
    try:
        result = build_profile(descriptor.name, spec.full_scale, facts, runs)
    except UsageError as exc:
        killed = f"; scale {partial[0].scale:g} with {partial[0].workers:g} workers was still running at {partial[0].wall_s:.0f}s and was killed" if partial else ""
        raise UsageError(f"{exc.message} (--max-time {max_time}{killed}; raise --max-time or lower profile.scales)") from None
    save_profile(output, result)
    model = result.predictor
    top = max(spec.workers)
    estimate = model.runtime(spec.full_scale, top)
    out = console()
    out.print(f"profiled {len(runs) - len(partial)} runs" + (f" ({len(partial)} partial, killed at the time box)" if partial else "") + f" on {facts.name} ({facts.cpu_model}, speed {facts.speed:g} x c5 core)")
    out.print(f"model {model.name}; full scale {spec.full_scale:g} with {top} workers here: p50 {estimate.p50:.1f} s, p90 {estimate.p90:.1f} s")
    out.print(f"wrote {output} ({result.digest[:19]})")
    from d2c.cli.profile_progress import skipped_points

    skipped = skipped_points(spec, runs)
    if skipped:
        out.print(f"skipped {skipped} — the {max_time} time box ran out before them; raise --max-time to measure them")


def _open_host(descriptor):
    """The profiling host named by the descriptor, its sampler factory (None: /proc over the
    host, made once the host's page size is known), the working folder and the sampling interval."""
    desktop = descriptor.desktop
    if desktop.kind == "local":
        from d2c.transport.local import LocalHost
        from profiler.sampling import LocalTreeSampler

        master = descriptor.master
        folder = master.image if master.image_is_folder else descriptor.project_dir
        return LocalHost(root=folder), LocalTreeSampler, None, 0.2
    from d2c.state import known_hosts_path
    from d2c.transport.ssh import SSHHost

    if desktop.key is None:
        raise UsageError(f"{descriptor.path}: desktop.key: missing; give the private key that logs into {desktop.label}")
    host = SSHHost(
        desktop.hostname,
        desktop.port,
        user=desktop.user,
        key_path=desktop.key,
        known_hosts=known_hosts_path(descriptor.project_dir),
    )
    return host, None, None, 0.5


@profile.command("import")
@click.argument("runs_csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=_DEFAULT_PROFILE, show_default=True)
@click.option("-f", "--file", "descriptor_path", type=click.Path(path_type=Path), default=None, help="the descriptor (default ./d2c.yaml, if present)")
def import_runs(runs_csv: Path, output: Path, descriptor_path: Path | None) -> None:
    """Fit the model from recorded runs (RUNS.csv), added to OUTPUT's runs if it exists."""
    from d2c.cli.output import console
    from d2c.cli.predict_cmd import lookup_instances
    from d2c.transport.local import LocalHost
    from profiler.host_facts import measure_host
    from profiler.profile_file import build_profile, load_profile, save_profile
    from profiler.runs_csv import parse_runs_csv, read_instance_types

    existing = load_profile(output) if output.exists() else None
    host = existing.host if existing else measure_host(LocalHost())
    types = read_instance_types(runs_csv)
    instances = {name: facts[:3] for name, facts in lookup_instances(types).items()} if types else {}
    imported = parse_runs_csv(runs_csv, instances, host.speed)
    if existing:
        app, full_scale, runs = existing.app, existing.full_scale, [*existing.runs, *imported]
    else:
        app, full_scale = runs_csv.stem, max(r.scale for r in imported)
        descriptor_file = descriptor_path or Path("d2c.yaml")
        if descriptor_path is not None or descriptor_file.is_file():
            from d2c.descriptor import load_descriptor

            descriptor = load_descriptor(descriptor_file)
            app = descriptor.name
            if descriptor.profile is not None:
                full_scale = descriptor.profile.full_scale
        runs = imported
    result = build_profile(app, full_scale, host, runs)
    save_profile(output, result)
    console().print(f"imported {len(imported)} runs from {runs_csv}; model {result.predictor.name}; wrote {output} ({result.digest[:19]})")


@profile.command("show")
@click.argument("profile_path", type=click.Path(dir_okay=False, path_type=Path), default=_DEFAULT_PROFILE, required=False)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write measured vs predicted as a PNG")
def show(profile_path: Path, plot: Path | None) -> None:
    """Show the runs, every candidate model with its cross-validated error, and the choice."""
    from rich.table import Table

    from d2c.cli.output import console
    from profiler.profile_file import load_profile

    profile = load_profile(profile_path)
    model = profile.predictor
    host = profile.host
    out = console()
    out.print(f"[bold]{profile.app}[/bold]: {profile_path} ({profile.digest[:19]}), full scale {profile.full_scale:g}")
    out.print(f"host {host.name}: {host.cpu_model}, {host.physical_cores} cores ({host.logical_cores} logical), {host.memory_mb:.0f} MB, speed {host.speed:g} x c5 core")
    runs = Table(title="runs")
    for column in ("scale", "workers", "wall s", "own s", "fit s", "cpu s", "MB/worker"):
        runs.add_column(column, justify="right")
    runs.add_column("status", no_wrap=True)
    runs.add_column("ran on", no_wrap=True)
    for r in sorted(profile.runs, key=lambda r: (r.scale, r.workers, r.repeat)):
        summary = r.summary or {}
        cpu = summary.get("cpu_user_s", 0.0) + summary.get("cpu_system_s", 0.0) if summary else None
        if r.instance_type is not None:
            where = f"{r.count}x {r.instance_type}"
        else:
            where = "imported" if r.source == "import" else host.name
        runs.add_row(
            f"{r.scale:g}",
            f"{r.workers:.3g}",
            f"{r.wall_s:.2f}",
            f"{r.own_wall_s:.2f}",
            f"{model.point(r.scale, r.workers):.2f}",
            "" if cpu is None else f"{cpu:.2f}",
            "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.1f}",
            r.status,
            where,
        )
    out.print(runs)
    out.print("own s: wall time without the time spent waiting for CPUs busy with other work (what the model fits)")
    fits = Table(title="models (cross-validated mean absolute % error)")
    for column in ("model", "coefficients", "CV error", "extrapolation error", ""):
        fits.add_column(column, overflow="fold")
    for c in sorted(model.candidates, key=lambda c: c.score):
        fits.add_row(
            c.name,
            ", ".join(f"{x:.4g}" for x in c.coefficients),
            f"{c.cv_error:.1%}",
            "" if c.extrapolation_error is None else f"{c.extrapolation_error:.1%}",
            "chosen" if c.name == model.name else "",
        )
    out.print(fits)
    memory = model.memory_model
    out.print(f"memory: per worker {memory.per_worker[0]:.1f} + {memory.per_worker[1]:.1f}·s MB, master {memory.master[0]:.1f} + {memory.master[1]:.1f}·s MB")
    if plot is not None:
        from profiler.fit_plot import plot_fit

        plot_fit(profile, plot)
        out.print(f"wrote {plot}")


COMMANDS: list[click.Command] = [profile]
