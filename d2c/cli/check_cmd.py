"""``d2c check``: validate a descriptor and summarise what d2c understood from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

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
    for role in descriptor.roles:
        mark = "runs the app, " if role.master else ""
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
@click.argument("path", type=click.Path(path_type=Path), required=False)
def check_command(path: Path | None) -> None:
    """Validate d2c.yaml (or PATH) and summarise its roles, files and profile.

    Exits 0 when the descriptor is valid, 2 with one line naming the field to fix otherwise.
    """
    from d2c.descriptor import load_descriptor

    for line in summary_lines(load_descriptor(path)):
        click.echo(line)


COMMANDS: list[click.Command] = [check_command]
