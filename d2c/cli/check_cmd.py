"""``d2c check``: validate a descriptor and summarise what d2c understood from it; ``--cloud``: the AWS account (cloud_check)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from d2c.cli.aws_options import aws_profile_option

if TYPE_CHECKING:
    from d2c.descriptor import Descriptor, Role


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to the project folder when it lies inside it, else absolute."""
    try:
        relative = path.relative_to(base)
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else "."


def _count(role: Role) -> str:
    if role.count is None:
        return f"auto ({role.min_count}..{role.max_count})"
    return str(role.count)


def _image(role: Role, base: Path) -> str:
    kind = "folder" if role.image_is_folder else role.image.suffix.lower().lstrip(".")
    return f"{_shown(role.image, base)} ({kind})"


def summary_lines(descriptor: Descriptor) -> list[str]:
    """The one-screen summary ``d2c check`` prints, as plain lines."""
    base = descriptor.project_dir
    lines = [
        f"{descriptor.path}: valid",
        f"name: {descriptor.name}    remote work folder: {descriptor.workdir}    desktop: {descriptor.desktop.label}",
        "roles:",
    ]
    from d2c.descriptor import BALANCE_MEANING

    lines.insert(2, f"balance: {BALANCE_MEANING[descriptor.balance]}")
    from d2c.descriptor import SERVICE_MEMORY_MB

    working = descriptor.working
    services = set(descriptor.services)
    for role in descriptor.roles:
        marks = (["runs the app"] if role.master else []) + (["runs the profiled workers"] if role is working else [])
        if role in services:
            memory = role.memory_mb if role.memory_mb is not None else SERVICE_MEMORY_MB
            marks.append(f"service (no MPI slots, {memory:.0f} MB per host)")
        mark = "".join(f"{m}, " for m in marks)
        lines.append(f"  {role.name}: {mark}count {_count(role)}, image {_image(role, base)}, user {role.user}")
        lines.append(f"    command: {role.command or '(none: started by the master, e.g. mpirun over SSH)'}")
    for label, transfers in (("inputs", descriptor.inputs), ("outputs", descriptor.outputs)):
        if not transfers:
            lines.append(f"{label}: none")
            continue
        lines.append(f"{label}:")
        arrow = "->" if label == "inputs" else "<-"
        for transfer in transfers:
            lines.append(f"  {_shown(transfer.local, base)} {arrow} {descriptor.workdir}/{transfer.remote}")
    profile = descriptor.profile
    if profile is None:
        lines.append("profile: none (add a 'profile' section so that 'd2c profile' can measure the app)")
    else:
        runs = len(profile.scales) * len(profile.workers) * profile.repeats
        timeout = f", timeout {profile.timeout_s:g} s each" if profile.timeout_s else ""
        lines += [
            f"profile: {runs} runs = scales {', '.join(f'{s:g}' for s in profile.scales)}"
            f" x workers {', '.join(str(w) for w in profile.workers)} x {profile.repeats} repeats"
            f" (full scale {profile.full_scale:g}{timeout})",
            f"  e.g. {profile.render(profile.scales[0], profile.workers[0])}",
        ]
    if descriptor.done_file:
        lines.append(f"done when: {descriptor.workdir}/{descriptor.done_file} exists")
    return lines


@click.command("check")
@aws_profile_option
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--cloud", is_flag=True, help="also check the AWS side: credentials, region, vCPU quotas against the plan, your address, the scheduler role")
@click.option("--plans", "plans_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("plans.json"), show_default=True,
              help="with --cloud: the plans whose region and vCPUs are checked")
@click.option("--plan", "plan_rank", type=int, default=1, show_default=True, help="with --cloud: the plan to check")
@click.option("--ssh-from", default=None, metavar="CIDR", help="with --cloud: the address SSH will be opened to (default: your public IP; env D2C_SSH_FROM)")
@click.option("--scheduler-role", default=None, metavar="NAME", help="with --cloud: the EventBridge Scheduler role (default d2c-scheduler)")
def check_command(path: Path | None, cloud: bool, plans_path: Path, plan_rank: int, ssh_from: str | None, scheduler_role: str | None) -> None:
    """Validate d2c.yaml (or PATH) and summarise its roles, files and profile; with --cloud, the AWS account too.

    Exits 0 when the descriptor is valid (and, with --cloud, every cloud check passes or only
    warns), 2 with one line naming the field to fix for a bad descriptor, 1 when a cloud check fails.
    """
    from d2c.descriptor import load_descriptor

    descriptor_file = Path(path) if path else Path("d2c.yaml")
    if not cloud or path is not None or descriptor_file.is_file():
        for line in summary_lines(load_descriptor(path)):
            click.echo(line)
    if cloud:
        _check_cloud(plans_path, plan_rank, ssh_from, scheduler_role)


def _check_cloud(plans_path: Path, plan_rank: int, ssh_from: str | None, scheduler_role: str | None) -> None:
    from d2c.aws import default_region
    from d2c.cli.cloud_check import SCHEDULER_ROLE, cloud_checks, plan_needs, result_lines
    from d2c.errors import WorkError

    needs, label, region = None, "the plan", default_region()
    if plans_path.is_file():
        from planner.plans import load_plans

        plan = load_plans(plans_path).plan(plan_rank)
        needs, label, region = plan_needs(plan), f"plan {plan_rank} of {plans_path}", plan.region
    click.echo(f"cloud ({region}):")
    results = cloud_checks(region, needs=needs, plan_label=label, ssh_from=ssh_from, scheduler_role=scheduler_role or SCHEDULER_ROLE)
    for line in result_lines(results):
        click.echo(f"  {line}")
    failed = [r.name for r in results if r.status == "fail"]
    if failed:
        raise WorkError(f"the cloud is not ready: {', '.join(failed)} failed; see the fixes above")


COMMANDS: list[click.Command] = [check_command]
