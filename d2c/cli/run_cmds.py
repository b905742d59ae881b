"""``d2c run``, ``logs``, ``down`` and ``report``: carrying out a plan and looking after runs (``status``: status_cmd)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from d2c.cli.aws_options import aws_profile_option
from d2c.cli.profile_file_option import profile_file_option

from d2c.errors import UsageError

_CONNECT_HELP = "reach instances at their public or private address (private: on a VPN into the VPC); env D2C_CONNECT"


def _provider(
    name: str, *, region: str, connect: str | None, ssh_from: str | None, subnet: str | None, ssh_timeout: float | None = None,
    scheduler_role: str | None = None, kms_key: str | None = None, boot_test: bool = True,
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
        boot_test=boot_test,
        **options,
    )


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


def _display(planset, plan, settings, simulated: bool, record):
    """The live display, measuring the run against its plan (a resumed run from its journaled start)."""
    from d2c.cli.run_display import RunDisplay, run_targets

    started_at = record.created_at if record is not None else time.time()
    deadline_s = record.deadline_s if record is not None else None
    return RunDisplay(run_targets(plan, planset, reserve_s=settings.reserve_s, started_at=started_at, deadline_s=deadline_s, simulated=simulated))


def _detached_args(plan_rank, plans_path, descriptor_path, provider, resume_id, connect, ssh_from, subnet, profile_path, ssh_timeout, poll, fallback) -> list[str]:
    """The ``d2c run`` arguments the background controller of ``--detach`` runs with (already confirmed)."""
    args = ["run", "--yes", "--provider", provider]
    args += ["--resume", resume_id] if resume_id else ["--plan", str(plan_rank), "--plans", str(Path(plans_path).resolve())]
    options = {"-f": descriptor_path and Path(descriptor_path).resolve(), "--connect": connect, "--ssh-from": ssh_from, "--subnet": subnet,
               "--profile-file": profile_path and Path(profile_path).resolve(), "--ssh-timeout": ssh_timeout, "--poll": poll}
    for flag, value in options.items():
        if value is not None:
            args += [flag, str(value)]
    return args + (["--next-plan-on-capacity"] if fallback else [])


def _finish(result) -> None:
    if result.report_path is not None and Path(result.report_path).is_file():
        from executor.report import load_report, report_lines

        for line in report_lines(load_report(Path(result.report_path).parent)):
            click.echo(line)
        from d2c.cli.run_display import rehearsal_line
        from executor.journal import open_journal

        compared = rehearsal_line(open_journal().run(result.run_id))
        if compared:
            click.echo(compared)
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
@profile_file_option(None, help="profile.json to append the measured run to")
@click.option("--ssh-timeout", type=float, default=None, help="seconds to wait for each host's SSH (default 300)")
@click.option("--poll", type=float, default=None, help="seconds between looks at the running app (default 2)")
@click.option("--next-plan-on-capacity", "fallback", is_flag=True, help="if AWS lacks capacity or quota for the plan, try the next-ranked one")
@click.option("--allow-concurrent", is_flag=True, help="run beside other runs of this project; outputs go to results/<run>/ instead")
@click.option("--detach", is_flag=True, help="run in the background: print the run id and return ('d2c logs RUN -f', 'd2c status', 'd2c down RUN' follow it)")
@click.option("--deadman", default=None, metavar="DURATION", help="power every host off this long after boot at the latest (default: what the budget and deadline allow)")
@click.option("--kms-key", default=None, metavar="KEY", help="KMS key (id or ARN) for the encrypted root volumes (default: the account's EBS default key)")
@click.option("--no-boot-test", is_flag=True, help="upload VM images without first booting them under QEMU as EC2 presents them")
@click.option("--scheduler-role", default=None, metavar="ARN", help="IAM role EventBridge Scheduler assumes to terminate the run's instances at its bound (default: the role d2c-scheduler, if any; env D2C_SCHEDULER_ROLE)")
def run_cmd(plan_rank, plans_path, descriptor_path, provider, yes, resume_id, connect, ssh_from, subnet, profile_path, ssh_timeout, poll, fallback, allow_concurrent, detach, deadman, kms_key, no_boot_test, scheduler_role):
    """Carry out a plan: provision, upload, run the master, fetch outputs, tear down.

    Every input (descriptor, plans.json, the plan against the descriptor) is checked before
    anything is created: no journal, run folder or lock file exists for a refused run.
    """
    from d2c.descriptor import load_descriptor
    from executor.journal import open_journal
    from executor.orchestrator import Orchestrator, start_with_fallback
    from executor.run_input import check_run_input
    from executor.run_lock import acquire_run_lock
    from planner.plans import load_plans

    if resume_id:
        record = open_journal(read_only=True).run(resume_id)
        descriptor = load_descriptor(Path(record.descriptor))
        planset = load_plans(Path(record.plans_file))
        plan = planset.plan(record.plan_rank)
        check_run_input(descriptor, planset, plan, plans_path=Path(record.plans_file), provider=record.provider)
        deadman_s = _deadman_seconds(deadman, plan)
        chosen = _provider(record.provider, region=record.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key, boot_test=not no_boot_test)
        profile = profile_path or record.details.get("profile")
        _check_not_followed(record)
        allow_concurrent = bool(record.details.get("per_run_outputs"))
    else:
        descriptor = load_descriptor(descriptor_path)
        planset = load_plans(plans_path)
        plan = planset.plan(plan_rank)
        check_run_input(descriptor, planset, plan, plans_path=plans_path, provider=provider)
        deadman_s = _deadman_seconds(deadman, plan)
        chosen = _provider(provider, region=plan.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key, boot_test=not no_boot_test)
        profile = profile_path or (descriptor.project_dir / "profile.json")
        if provider == "aws":
            from d2c.aws import have_credentials

            if not have_credentials():
                raise UsageError("no AWS credentials found; run 'aws configure' or set AWS_ACCESS_KEY_ID, or rehearse with --provider local")
            plan = _plan_within_quotas(planset, plan, fallback)
            chosen = _provider(provider, region=plan.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key, boot_test=not no_boot_test)
        if provider == "aws" and not yes:
            question = f"Launch {plan.instance_count} instance(s) in {plan.region} at ${plan.hourly_usd:.3f}/h, budget ${planset.budget_usd:.2f}?"
            if not sys.stdin.isatty():
                raise UsageError(f"{question} — pass --yes to confirm when not at a terminal")
            click.confirm(question, abort=True)
    settings = _settings(poll, Path(profile) if profile else None, deadman_s)
    if not allow_concurrent:
        acquire_run_lock(open_journal(read_only=True), resuming=resume_id)
    journal = open_journal()
    if detach:
        from d2c.cli.detach import detach_run
        from executor.run_lock import release_run_lock

        release_run_lock()
        args = _detached_args(plan_rank, plans_path, descriptor_path, provider, resume_id, connect, ssh_from, subnet, profile_path, ssh_timeout, poll, fallback)
        args += [arg for flag, value in (("--deadman", deadman), ("--kms-key", kms_key), ("--scheduler-role", scheduler_role)) if value for arg in (flag, value)]
        args += ["--no-boot-test"] if no_boot_test else []
        detach_run(journal, args + (["--allow-concurrent"] if allow_concurrent else []))
        return
    with _display(planset, plan, settings, chosen.simulated, journal.run(resume_id) if resume_id else None) as ui:
        orchestrator = Orchestrator(journal, chosen, ui=ui, settings=settings)
        if resume_id:
            result = orchestrator.resume(resume_id, descriptor, plan)
        else:
            result = start_with_fallback(
                orchestrator,
                descriptor,
                planset,
                plan,
                plans_path=plans_path,
                provider_for=lambda p: _provider(provider, region=p.region, connect=connect, ssh_from=ssh_from, subnet=subnet, ssh_timeout=ssh_timeout, scheduler_role=scheduler_role, kms_key=kms_key, boot_test=not no_boot_test),
                fallback=fallback,
                per_run_outputs=allow_concurrent,
            )
    _finish(result)


def _check_not_followed(record) -> None:
    """A run another live controller drives is not resumed a second time."""
    from executor.controller import controller_alive

    if record.active and controller_alive(record.details):
        pid = record.details["controller"]["pid"]
        raise UsageError(f"run {record.run_id} is already followed by a live 'd2c run' (pid {pid}); see 'd2c status {record.run_id}'")


@click.command("logs")
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until the run ends")
def logs_cmd(run_id, follow):
    """Print the master's log of a run (as streamed to this machine)."""
    from executor.journal import open_journal

    journal = open_journal(read_only=True)
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
    # Deleting what costs money comes first; on a full disk the journal may lag behind (told below).
    journal.best_effort = True
    if run_id:
        record = journal.run(run_id)
        provider = _provider(record.provider, region=record.region, connect=None, ssh_from=None, subnet=None)
        _down_one(journal, provider, run_id)
        _warn_unsaved(journal)
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
    _warn_unsaved(journal)


def _warn_unsaved(journal) -> None:
    if journal.unsaved:
        click.echo(
            f"warning: the journal {journal.path} could not record {len(journal.unsaved)} change(s) ({journal.unsaved[0]}); "
            "the resources are deleted all the same; run 'd2c down' again once the disk has space to bring the journal up to date",
            err=True,
        )


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

    record = open_journal(read_only=True).run(run_id)
    report = load_report(record.run_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in report_lines(report):
        click.echo(line)


COMMANDS: list[click.Command] = [run_cmd, logs_cmd, down_cmd, report_cmd]
