"""``d2c profile``, ``d2c profile import`` and ``d2c profile show``: learn the app's scaling model."""

from __future__ import annotations

import math
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

            stopped: list[str] = []

            def on_progress(update) -> None:
                if update.stopped:
                    stopped.append(update.stopped)
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
    for line in model.excluded:
        note(f"note: {line}")
    from d2c.cli.profile_progress import skipped_points

    skipped = skipped_points(spec, runs)
    if skipped and stopped:
        out.print(f"skipped {skipped} — not needed: {stopped[-1]}")
    elif skipped:
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
@click.option("--replace", is_flag=True, help="start OUTPUT over with these runs instead of adding to it")
@click.option("--host-speed", type=float, default=None, help="single-core speed (c5 core = 1.0) of the machine the desktop runs were measured on")
def import_runs(runs_csv: Path, output: Path, descriptor_path: Path | None, replace: bool, host_speed: float | None) -> None:
    """Fit the model from recorded runs (RUNS.csv), added to OUTPUT's runs if it exists.

    Rows with an instance_type ran on EC2 and need no desktop speed score. Other rows are taken
    as measured on this machine (scored now) unless --host-speed gives their machine's score.
    """
    from d2c.cli.output import console, note
    from d2c.cli.predict_cmd import lookup_instances
    from profiler.profile_file import build_profile, load_profile, save_profile
    from profiler.runs_csv import parse_runs_csv, read_instance_types

    if host_speed is not None and not (math.isfinite(host_speed) and 0 < host_speed < 100):
        raise UsageError(f"--host-speed: {host_speed:g} must be a positive single-core speed (a c5 core is 1.0)")
    existing = load_profile(output) if output.exists() and not replace else None
    types = read_instance_types(runs_csv)
    instances = lookup_instances(types) if types else {}
    provisional = parse_runs_csv(runs_csv, instances, 1.0)
    desktop_rows = sum(r.instance_type is None for r in provisional)
    host, host_note = _import_host(existing, host_speed, desktop_rows)
    imported = parse_runs_csv(runs_csv, instances, host.speed) if host.speed != 1.0 else provisional
    held = list(existing.runs) if existing else []
    seen = {_run_key(r) for r in held}
    new = [r for r in imported if _run_key(r) not in seen]
    skipped = len(imported) - len(new)
    if existing and not new:
        console().print(f"nothing new: all {len(imported)} runs of {runs_csv} are already in {output} ({len(held)} runs); left it as it was")
        return
    if existing:
        app, full_scale = existing.app, existing.full_scale
    else:
        app, full_scale = runs_csv.stem, max(r.scale for r in imported)
        descriptor_file = descriptor_path or Path("d2c.yaml")
        if descriptor_path is not None or descriptor_file.is_file():
            from d2c.descriptor import load_descriptor

            descriptor = load_descriptor(descriptor_file)
            app = descriptor.name
            if descriptor.profile is not None:
                full_scale = descriptor.profile.full_scale
    result = build_profile(app, full_scale, host, [*held, *new])
    save_profile(output, result)
    before = f"it held {len(held)}" if existing else ("replaced its runs" if replace and output.exists() else "a new profile")
    duplicates = f", {skipped} exact duplicates skipped" if skipped else ""
    out = console()
    out.print(f"imported {len(new)} runs from {runs_csv} into {output} ({before}{duplicates}); now {len(result.runs)} runs; model {result.predictor.name}; wrote {result.digest[:19]}")
    if host_note:
        note(host_note)
    for line in result.predictor.excluded:
        note(f"note: {line}")


def _run_key(record) -> tuple:
    """What makes two runs the same measurement (the same CSV row imported twice)."""
    return (record.scale, record.workers, round(record.wall_s, 4), record.instance_type, record.count, record.repeat, record.peak_rss_mb, record.input_mb)


def _import_host(existing, host_speed: float | None, desktop_rows: int):
    """The host facts an import is fitted with, and a note saying where its speed came from."""
    from profiler.host_facts import HostFacts

    if existing is not None:
        if host_speed is not None and abs(host_speed - existing.host.speed) > 1e-9:
            raise UsageError(f"--host-speed: {host_speed:g}, but the profile's runs were counted at speed {existing.host.speed:g}; use --replace to start over at the new speed")
        return existing.host, None
    if host_speed is not None:
        return HostFacts("elsewhere", "unknown", 1, 1, 0.0, host_speed, None, None, speed_basis="given"), None
    if desktop_rows == 0:
        return HostFacts("cloud runs", "EC2", 1, 1, 0.0, 1.0, None, None, speed_basis="cloud runs"), None
    from d2c.transport.local import LocalHost
    from profiler.host_facts import measure_host

    host = measure_host(LocalHost())
    return host, (
        f"note: {desktop_rows} runs without an instance_type are taken as measured on this machine, scored now at "
        f"{host.speed:g} x c5 core (spread {host.speed_spread:.0%}); pass --host-speed if they were measured elsewhere"
    )


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
    out.print(f"host {host.name}: {host.cpu_model}, {host.physical_cores} cores ({host.logical_cores} logical), {host.memory_mb:.0f} MB, speed {host.speed:g} x c5 core ({host.speed_basis}" + (f", spread {host.speed_spread:.0%})" if host.speed_spread else ")"))
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
    noise = f"noise between repeats {model.noise:.1%} (sd of ln wall)" if model.noise else "no repeats (noise between repeats unknown)"
    out.print(f"{noise}; p90 from out-of-sample errors at the {model.interval.level:.1%} level" + (f", host speed spread {model.interval.speed_spread:.0%}" if model.interval.speed_spread else ""))
    misfit = model.misfit_text()
    if misfit:
        out.print(f"[yellow]{misfit}[/yellow]")
    for line in model.excluded:
        out.print(f"[yellow]left out: {line}[/yellow]")
    memory = model.memory_model
    out.print(f"memory: per worker {memory.per_worker[0]:.1f} + {memory.per_worker[1]:.1f}·s MB, master {memory.master[0]:.1f} + {memory.master[1]:.1f}·s MB")
    if plot is not None:
        from profiler.fit_plot import plot_fit

        plot_fit(profile, plot)
        out.print(f"wrote {plot}")


COMMANDS: list[click.Command] = [profile]
