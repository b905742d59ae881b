"""``d2c init``: scaffold a descriptor from an app folder or a VirtualBox appliance."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from d2c.errors import UsageError

_ENTRY_POINTS = ("run.sh", "main.py", "app.py", "run.py", "Makefile")


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "app"
    return slug[:62]


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML string scalar: plain when YAML reads it back as the same string,
    quoted otherwise (``2024``, ``yes``, ``null``, ``0x1F`` and odd characters)."""
    import yaml

    plain = re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*", text) and not text.endswith(" ")
    return text if plain and yaml.safe_load(text) == text else json.dumps(text)


def _image_path(source: Path, target: Path) -> str:
    """How the descriptor at ``target`` names ``source``: relative to the descriptor's folder."""
    return os.path.relpath(source.resolve(), target.resolve().parent)


def _guess_command(folder: Path) -> str:
    for entry in _ENTRY_POINTS:
        if (folder / entry).is_file():
            if entry.endswith(".py"):
                return f"python3 {entry}"
            if entry == "Makefile":
                return "make"
            return f"./{entry}"
    return "./run.sh"


def scaffold_from_folder(folder: Path, target: Path) -> str:
    """Descriptor text for an app living in ``folder`` (not in a VM)."""
    command = _guess_command(folder)
    image = _yaml_scalar(_image_path(folder, target))
    return f"""\
# d2c descriptor — see README.md "The descriptor" for every field.
name: {_yaml_scalar(_slug(folder.resolve().name))}
workdir: d2c-work
roles:
  - name: master
    image: {image}
    command: {command}
    count: 1
inputs: []
outputs:
  - {{remote: out, local: results}}
# Uncomment and adapt so that 'd2c profile' can run the app at reduced scale:
# profile:
#   command: {command} --scale {{scale}} --workers {{workers}}
#   scales: [0.01, 0.02, 0.05]
#   workers: [1, 2]
#   full_scale: 1.0
desktop: local
"""


def scaffold_from_appliance(appliance: Path, target: Path) -> str:
    """Descriptor text with one role per VM of a VirtualBox appliance (.ova/.ovf)."""
    from d2c.ovf import read_appliance

    machines = read_appliance(appliance)
    image = _yaml_scalar(_image_path(appliance, target))
    lines = [
        "# d2c descriptor — see README.md \"The descriptor\" for every field.",
        f"# Scaffolded from {appliance.name}, which holds {len(machines)} virtual machine(s).",
        f"name: {_yaml_scalar(_slug(appliance.stem))}",
        "workdir: d2c-work",
        "roles:",
    ]
    for index, machine in enumerate(machines):
        role = "master" if index == 0 else ("worker" if len(machines) == 2 else f"worker{index}")
        disks = ", ".join(f"{d.file_name or d.disk_id} ({d.capacity_bytes / 2**30:.1f} GiB)" for d in machine.disks) or "no disk"
        lines += [
            f"  # VM {' '.join(machine.name.split())!r}: {' '.join(machine.os_type.split()) or 'unknown OS'}, {machine.cpus} CPUs, {machine.memory_mib} MiB memory, disks: {disks}",
            f"  - name: {role}",
            f"    image: {image}",
        ]
        if len(machines) > 1:
            lines.append(f"    vm: {_yaml_scalar(machine.name)}")
        if index == 0:
            lines += ["    command: ./run.sh   # how the app starts inside the VM", "    count: 1"]
        else:
            lines += ["    count: auto", "    min: 1", "    max: 64"]
    lines += [
        "inputs: []",
        "outputs:",
        "  - {remote: out, local: results}",
        "# Where the VMs answer SSH for profiling (forward a port in VirtualBox), e.g.",
        "# desktop: {host: 'ssh://ubuntu@127.0.0.1:2222', key: ~/.ssh/id_ed25519}",
        "desktop: local",
        "",
    ]
    return "\n".join(lines)


@click.command("init")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="An app folder, or a VirtualBox appliance (.ova/.ovf). Default: this folder.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("d2c.yaml"), show_default=True,
              help="Where to write the descriptor.")
@click.option("--force", is_flag=True, help="Overwrite an existing descriptor.")
def init_command(source: Path | None, output: Path, force: bool) -> None:
    """Scaffold d2c.yaml for an app folder or a VirtualBox appliance."""
    from d2c.files import atomic_write_text

    source = source or Path.cwd()
    if output.is_dir():
        output = output / "d2c.yaml"
    if output.exists() and not force:
        raise UsageError(f"{output}: already exists; pass --force to overwrite it")
    if not source.exists():
        raise UsageError(f"{source}: does not exist; give an app folder or an .ova/.ovf appliance")
    if source.is_dir():
        text = scaffold_from_folder(source, output)
    elif source.suffix.lower() in (".ova", ".ovf"):
        text = scaffold_from_appliance(source, output)
    else:
        raise UsageError(f"{source}: not an app folder or a VirtualBox appliance (.ova/.ovf)")
    atomic_write_text(output, text)
    click.echo(f"wrote {output}; edit the commands, check it with 'd2c check', then run 'd2c profile'")


COMMANDS: list[click.Command] = [init_command]
