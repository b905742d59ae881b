"""``d2c run``, ``status``, ``logs``, ``down`` and ``report``: carrying out a plan and looking after runs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from d2c.cli.aws_options import aws_profile_option

from d2c.errors import UsageError

_CONNECT_HELP = "reach instances at their public or private address (private: on a VPN into the VPC); env D2C_CONNECT"


def _provider(
    name: str, *, region: str, connect: str | None, ssh_from: str | None, subnet: str | None, ssh_timeout: float | None = None,
    scheduler_role: str | None = None, kms_key: str | None = None,
):
    if name == "local":
        from executor.providers.local import LocalProvider

        return LocalProvider()
    from executor.providers.aws import AwsProvider

    options = {}
    if ssh_timeout is not None:
        options["ssh_timeout_s"] = ssh_timeout
    return AwsProvider(
        region=region,
        connect=connect or os.environ.get("D2C_CONNECT", "public"),
        ssh_from=ssh_from,
        subnet_id=subnet or os.environ.get("D2C_SUBNET"),
        scheduler_role=scheduler_role or os.environ.get("D2C_SCHEDULER_ROLE"),
        kms_key=kms_key,
        **options,
    )


class _TerminalUI:
    """Progress bars, the master's log and a live line (elapsed, spend, budget left) on the terminal."""

    def __init__(self, simulated: bool):
        from d2c.cli.output import console, progress

        self.console = console()
        self.bars = progress()
        self.tasks: dict[str, int] = {}
        self.simulated = " (simulated)" if simulated else ""
        self.live_task = None
        self.last_plain = 0.0

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.bars.__exit__(*exc_info)

    def note(self, message: str) -> None:
        self.bars.console.print(message, markup=False, highlight=False)

    def log_line(self, line: str) -> None:
        self.bars.console.print(f"  | {line}", markup=False, highlight=False, style="dim")

    def live(self, elapsed_s: float, spent_usd: float, budget_left_usd: float) -> None:
        text = f"running {elapsed_s:,.0f} s · spent ${spent_usd:.4f}{self.simulated} · budget left ${budget_left_usd:.4f}"
        if self.console.is_terminal:
            if self.live_task is None:
                self.live_task = self.bars.add_task(text, total=None, status="")
            self.bars.update(self.live_task, description=text)
        elif time.monotonic() - self.last_plain > 30:
            self.last_plain = time.monotonic()
            self.note(text)

    def progress(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.bars.add_task(what, total=max(total, 1), status="")
        self.bars.update(self.tasks[what], completed=done, total=max(total, 1))

    def interrupted(self) -> str:
        if not sys.stdin.isatty():
            self.note("interrupted: stopping the run (fetching outputs, then tearing down)")
            return "stop"
        self.bars.stop()
        choice = click.prompt(
            "Keep the run going without this terminal (detach) or stop it now (stop)?",
            type=click.Choice(["detach", "stop"]),
            default="stop",
        )
        self.bars.start()
        return choice


def _deadman_seconds(deadman: str | None, plan) -> float | None:
    """``--deadman DURATION`` in seconds; shorter than boot plus the plan's p90 time is bad input."""
    if deadman is None:
        return None
    from d2c.durations import format_duration, parse_duration
    from executor.providers.base import BOOT_ALLOWANCE_S

    seconds = parse_duration(deadman, "--deadman")
    needed = BOOT_ALLOWANCE_S + plan.time_s.p90
    if seconds < needed:
        raise UsageError(
            f"--deadman {deadman}: shorter than the plan's boot ({format_duration(BOOT_ALLOWANCE_S)}) plus its p90 time "
            f"({format_duration(plan.time_s.p90)}); give at least {format_duration(needed)}"
        )
    return seconds


def _plan_within_quotas(planset, plan, fallback: bool):
    """``plan`` when the account's vCPU quotas allow it; with ``fallback`` the next-ranked plan that fits."""
    from executor.quotas import check_quotas

    candidates = [plan] + ([p for p in planset.plans if p.rank > plan.rank] if fallback else [])
    first_error = None
    for candidate in candidates:
        try:
            unchecked = check_quotas(candidate, candidate.region)
            if unchecked:
                click.echo(f"note: vCPU quotas not checked before launch ({unchecked}); EC2 refuses a launch past them", err=True)
            if candidate is not plan:
                click.echo(f"plan {plan.rank} does not fit your vCPU quotas ({first_error}); running plan {candidate.rank} instead", err=True)
            return candidate
        except UsageError as exc:
            first_error = first_error or exc
    raise first_error


def _settings(poll: float | None, profile: Path | None, deadman_s: float | None = None):
    from executor.orchestrator import RunSettings

    options = {}
    if poll is not None:
        options["poll_s"] = poll
        options["states_every_s"] = max(poll * 5, 1.0)
    return RunSettings(profile_path=profile, deadman_s=deadman_s, **options)


def _finish(result) -> None:
    if result.report_path is not None and Path(result.report_path).is_file():
        from executor.report import load_report, report_lines

        for line in report_lines(load_report(Path(result.report_path).parent)):
            click.echo(line)
    if result.outcome == "succeeded":
        click.echo(f"run {result.run_id} succeeded; report: {result.report_path}")
        return
    if result.outcome == "detached":
        click.echo(result.message)
        return
    click.echo(f"error: run {result.run_id} {result.outcome}: {result.message} (report: {result.report_path})", err=True)
    sys.exit(result.exit_code)


@click.command("run")
@aws_profile_option
@click.option("--plan", "plan_rank", type=int, default=1, show_default=True, help="rank of the plan in plans.json")
@click.option("--plans", "plans_path", type=click.Path(path_type=Path), default=Path("plans.json"), show_default=True)
@click.option("-f", "--file", "descriptor_path", type=click.Path(path_type=Path), default=None, help="the descriptor (default ./d2c.yaml)")
@click.option("--provider", type=click.Choice(["aws", "local"]), default="aws", show_default=True, help="local rehearses the plan on this machine")
@click.option("--yes", is_flag=True, help="do not ask before spending money")
@click.option("--resume", "resume_id", default=None, metavar="RUN", help="follow a run whose controller stopped")
@click.option("--connect", type=click.Choice(["public", "private"]), default=None, help=_CONNECT_HELP)
@click.option("--ssh-from", default=None, metavar="CIDR", help="open SSH to this address (default: your public IP; env D2C_SSH_FROM)")
@click.option("--subnet", default=None, metavar="SUBNET_ID", help="launch into this subnet (default: the default VPC; env D2C_SUBNET)")
@click.option("--profile", "profile_path", type=click.Path(path_type=Path), default=None, help="profile.json to append the measured run to")
@click.option("--ssh-timeout", type=float, default=None, help="seconds to wait for each host's SSH (default 300)")
@click.option("--poll", type=float, default=None, help="seconds between looks at the running app (default 2)")
@click.option("--next-plan-on-capacity", "fallback", is_flag=True, help="if AWS lacks capacity or quota for the plan, try the next-ranked one")
@click.option("--deadman", default=None, metavar="DURATION", help="power every host off this long after boot at the latest (default: what the budget and deadline allow)")
@click.option("--kms-key", default=None, metavar="KEY", help="KMS key (id or ARN) for the encrypted root volumes (default: the account's EBS default key)")
@click.option("--scheduler-role", default=None, metavar="ARN", help="IAM role EventBridge Scheduler assumes to terminate the run's instances at its bound (default: the role d2c-scheduler, if any; env D2C_SCHEDULER_ROLE)")
def run_cmd(plan_rank, plans_path, descriptor_path, provider, yes, resume_id, connect, ssh_from, subnet, profile_path, ssh_timeout, poll, fallback, deadman, kms_key, scheduler_role):
    """Carry out a plan: provision, upload, run the master, fetch outputs, tear down."""
    from d2c.descriptor import load_descriptor
    from executor.journal import open_journal
    from executor.orchestrator import Orchestrator, start_with_fallback
    from planner.plans import load_plans

    journal = open_journal()
    if resume_id:
        record = journal.run(resume_id)
        descriptor = load_descriptor(Path(record.descriptor))
        planset = load_plans(Path(record.plans_file))
        plan = planset.plan(record.plan_rank)
        deadman_s = _deadman_seconds(deadman, plan)
        chosen = _provider(record.provider, region=record.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key)
        profile = profile_path or record.details.get("profile")
    else:
        descriptor = load_descriptor(descriptor_path)
        planset = load_plans(plans_path)
        plan = planset.plan(plan_rank)
        deadman_s = _deadman_seconds(deadman, plan)
        chosen = _provider(provider, region=plan.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key)
        profile = profile_path or (descriptor.project_dir / "profile.json")
        if provider == "aws":
            from d2c.aws import have_credentials

            if not have_credentials():
                raise UsageError("no AWS credentials found; run 'aws configure' or set AWS_ACCESS_KEY_ID, or rehearse with --provider local")
            plan = _plan_within_quotas(planset, plan, fallback)
            chosen = _provider(provider, region=plan.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key)
        if provider == "aws" and not yes:
            question = f"Launch {plan.instance_count} instance(s) in {plan.region} at ${plan.hourly_usd:.3f}/h, budget ${planset.budget_usd:.2f}?"
            if not sys.stdin.isatty():
                raise UsageError(f"{question} — pass --yes to confirm when not at a terminal")
            click.confirm(question, abort=True)
    with _TerminalUI(chosen.simulated) as ui:
        orchestrator = Orchestrator(journal, chosen, ui=ui, settings=_settings(poll, Path(profile) if profile else None, deadman_s))
        if resume_id:
            result = orchestrator.resume(resume_id, descriptor, plan)
        else:
            result = start_with_fallback(
                orchestrator,
                descriptor,
                planset,
                plan,
                plans_path=plans_path,
                provider_for=lambda p: _provider(provider, region=p.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key),
                fallback=fallback,
            )
    _finish(result)


@click.command("status")
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="stable JSON output")
def status_cmd(run_id, as_json):
    """Show runs (all, or one with its resources and events)."""
    from executor.controller import controller_alive
    from executor.journal import open_journal

    journal = open_journal()
    runs = [journal.run(run_id)] if run_id else journal.runs()
    rows = []
    for run in runs:
        live = journal.resources(run.run_id, live_only=True)
        alive = controller_alive(run.details) if run.active else None
        rows.append(
            {
                "run_id": run.run_id,
                "provider": run.provider,
                "region": run.region,
                "state": run.state,
                "outcome": run.outcome,
                "message": run.message,
                "budget_usd": run.budget_usd,
                "controller": None if alive is None else ("running" if alive else "gone"),
                "live_resources": [{"kind": r.kind, "id": r.resource_id, "role": r.role} for r in live],
            }
        )
    if as_json:
        from d2c.cli.output import print_json

        print_json({"runs": rows})
        return
    if not rows:
        click.echo("no runs yet; start one with 'd2c run'")
        return
    from rich.table import Table

    from d2c.cli.output import console

    table = Table()
    table.add_column("run", no_wrap=True)
    for heading in ("provider", "state", "outcome", "live"):
        table.add_column(heading)
    for row in rows:
        table.add_row(row["run_id"], row["provider"], row["state"], row["outcome"] or "-", str(len(row["live_resources"])))
    console().print(table)
    for row in rows:
        if row["controller"] == "gone":
            click.echo(f"{row['run_id']}: controller gone — 'd2c run --resume {row['run_id']}' or 'd2c down {row['run_id']}'")
    if run_id:
        for event in journal.events(run_id):
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            click.echo(f"{stamp} {event.kind}: {event.message}")


@click.command("logs")
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until the run ends")
def logs_cmd(run_id, follow):
    """Print the master's log of a run (as streamed to this machine)."""
    from executor.journal import open_journal

    journal = open_journal()
    record = journal.run(run_id)
    path = record.run_dir / "logs" / "master.log"
    position = 0
    while True:
        if path.is_file():
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
                position += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        if not follow or not journal.run(run_id).active:
            break
        time.sleep(1.0)
    if not path.is_file() and not follow:
        click.echo(f"run {run_id} has no log yet (state {record.state})", err=True)


@click.command("down")
@aws_profile_option
@click.argument("run_id", required=False)
@click.option("--all", "everything", is_flag=True, help="every run's resources, including those only found by their d2c:run tag")
@click.option("--regions", "--region", "regions", multiple=True, help="regions to search with --all, comma-separated, or 'all' (default: the journal's and the configured one)")
def down_cmd(run_id, everything, regions):
    """Delete everything a run created (or, with --all, every run's leftovers)."""
    from executor.journal import open_journal

    if bool(run_id) == bool(everything):
        raise UsageError("d2c down: give a RUN id or --all (not both)")
    journal = open_journal()
    if run_id:
        record = journal.run(run_id)
        provider = _provider(record.provider, region=record.region, connect=None, ssh_from=None, subnet=None)
        _down_one(journal, provider, run_id)
        return
    found_any = False
    for run in journal.runs():
        if run.provider == "local" and run.active:
            found_any = True
            _down_one(journal, _provider("local", region=run.region, connect=None, ssh_from=None, subnet=None), run.run_id)
    from d2c.aws import aws_errors, client, default_region, have_credentials

    asked = {name.strip() for value in regions for name in value.split(",") if name.strip()}
    if not have_credentials():
        click.echo("no AWS credentials: only this machine's journal was checked", err=True)
        aws_regions: set[str] = set()
    elif "all" in asked:
        with aws_errors("listing the account's regions"):
            aws_regions = {r["RegionName"] for r in client("ec2", default_region()).describe_regions()["Regions"]}
    else:
        aws_regions = asked | {r.region for r in journal.runs() if r.provider == "aws"} | ({default_region()} if not asked else set())
    for region in sorted(aws_regions):
        provider = _provider("aws", region=region, connect=None, ssh_from=None, subnet=None)
        for leftover_run in sorted(provider.leftovers(journal)):
            found_any = True
            _down_one(journal, provider, leftover_run)
    for run in journal.runs():
        if run.active and not journal.resources(run.run_id, live_only=True):
            journal.update_run(run.run_id, state="finished", finished_at=time.time(), outcome="stopped", message="stopped by 'd2c down'")
    if not found_any:
        click.echo("nothing to delete: no run has resources left")


def _down_one(journal, provider, run_id: str) -> None:
    from executor.journal import RunRecord

    lines = provider.teardown(run_id, journal)
    for line in lines:
        click.echo(f"{run_id}: {line}")
    try:
        record: RunRecord = journal.run(run_id)
    except UsageError:
        click.echo(f"{run_id}: deleted {len(lines)} resource(s) the journal did not know")
        return
    journal.event(run_id, "down", f"d2c down deleted {len(lines)} resource(s)")
    if record.active:
        journal.update_run(run_id, state="finished", finished_at=time.time(), outcome="stopped", message="stopped by 'd2c down'")
    click.echo(f"{run_id}: nothing of the run is left")


@click.command("report")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print report.json as it is")
def report_cmd(run_id, as_json):
    """Show a finished run's report: wall time, cost per instance, predicted vs actual."""
    from executor.journal import open_journal
    from executor.report import load_report, report_lines

    record = open_journal().run(run_id)
    report = load_report(record.run_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in report_lines(report):
        click.echo(line)


COMMANDS: list[click.Command] = [run_cmd, status_cmd, logs_cmd, down_cmd, report_cmd]
