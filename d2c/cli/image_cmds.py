"""``d2c image``: check a VM image for EC2, prepare a fixed copy, rehearse its boot, import it as an AMI.

``check --json`` prints (version 1)::

    {"version": 1, "image": "VM.ova", "ok": false, "arch": "x86_64", "boot_mode": "legacy-bios",
     "items": [{"name": "fstab", "status": "fix", "reason": "…"}, …]}

``boot-test --json`` prints (version 1)::

    {"version": 1, "image": "DIR/vm.prepared.raw", "ok": true, "accel": "kvm", "seconds": 14.2,
     "logged_in": true, "root_device": "/dev/nvme0n1p1", "interface": "ens5",
     "address": "10.0.2.15/24", "powered_off": true, "reason": "", "serial_log": "DIR/serial.log"}

Exit codes: 0 when nothing fails, 2 when any check fails or the disk does not boot as EC2
presents it (nothing is uploaded) or the file is not a usable image, 1 when QEMU cannot run.
"""

from __future__ import annotations

from pathlib import Path

import click

from d2c.cli.aws_options import aws_profile_option

from d2c.cli.output import console, note, print_json, progress

_STYLES = {"pass": "green", "fix": "yellow", "fail": "bold red", "info": "cyan"}


def _progress_callback(bar):
    tasks: dict[str, int] = {}

    def on_progress(stage: str, done: float, total: float) -> None:
        key = stage.split(":", 1)[0]
        if key not in tasks:
            tasks[key] = bar.add_task(key, total=total, status="")
        bar.update(tasks[key], completed=done, total=total, description=stage)

    return on_progress


def _read_key(path: Path | None) -> str | None:
    """The public key line in ``path`` (checked to be a real OpenSSH key), or None without a path."""
    from d2c.errors import UsageError
    from d2c.transport.known_hosts import parse_public_key

    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--public-key {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        parse_public_key(text)
    except UsageError:
        raise UsageError(f"--public-key {path}: not an OpenSSH public key (expected one 'ssh-ed25519 AAAA…' line)") from None
    if len(text.splitlines()) != 1:
        raise UsageError(f"--public-key {path}: holds several lines; give a file with one OpenSSH public key")
    return text


def _deadman_seconds(text: str | None) -> int | None:
    from d2c.durations import parse_duration

    return None if text is None else max(1, round(parse_duration(text, "--deadman")))


_DEADMAN_OPTION = click.option("--deadman", "deadman", default=None, metavar="DURATION", help="Bake in the dead-man timer: power off this long after boot (e.g. 90m).")
_VM_OPTION = click.option("--vm", "vm_name", default=None, metavar="NAME", help="The VM to use from an appliance holding several (as the descriptor's 'vm:').")


@click.group("image")
def image() -> None:
    """Check VM images for EC2, prepare fixed copies, import them as AMIs."""


@image.command("check")
@click.argument("vm", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (documented in this module) instead of a table.")
@_VM_OPTION
def check_cmd(vm: Path, as_json: bool, vm_name: str | None) -> None:
    """Check VM (.ova, .ovf, .vbox or a disk) for what EC2 needs; exit 2 when anything fails."""
    from rich.table import Table

    from d2c.errors import UsageError
    from executor.image.prepare import check_image

    with progress(transient=True) as bar:
        report = check_image(vm, progress=_progress_callback(bar), vm=vm_name)
    if as_json:
        print_json({
            "version": 1, "image": str(vm), "ok": report.ok, "arch": report.arch, "boot_mode": report.boot_mode,
            "items": [{"name": i.name, "status": i.status, "reason": i.reason} for i in report.items],
        })
    else:
        table = Table(title=f"{vm}: EC2 readiness")
        for column in ("check", "status", "reason"):
            table.add_column(column)
        for item in report.items:
            table.add_row(item.name, f"[{_STYLES[item.status]}]{item.status}[/]", item.reason)
        console().print(table)
    if not report.ok:
        names = ", ".join(i.name for i in report.failures)
        raise UsageError(f"{vm}: {len(report.failures)} check(s) fail ({names}); fix them in the VM and export again")
    fixes = sum(1 for i in report.items if i.status == "fix")
    if fixes and not as_json:
        note(f"{fixes} item(s) marked fix are changed on a copy by 'd2c image prepare' or 'd2c image import'")


@image.command("prepare")
@click.argument("vm", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder for the prepared raw disk and manifest.json.")
@click.option("--public-key", type=click.Path(path_type=Path, dir_okay=False), help="OpenSSH public key to authorize for the login user.")
@_DEADMAN_OPTION
@_VM_OPTION
def prepare_cmd(vm: Path, out_dir: Path, public_key: Path | None, deadman: str | None, vm_name: str | None) -> None:
    """Make a raw copy of VM (DIR/<name>.prepared.raw) with the minimal edits EC2 needs, each recorded in DIR/manifest.json."""
    from rich.table import Table

    from executor.image.prepare import prepare_image

    key = _read_key(public_key)
    bound = _deadman_seconds(deadman)
    with progress(transient=True) as bar:
        prepared = prepare_image(vm, out_dir, public_key=key, progress=_progress_callback(bar), vm=vm_name, deadman_s=bound)
    table = Table(title=f"{vm}: edits made to the copy")
    for column in ("file", "change", "why"):
        table.add_column(column)
    for edit in prepared.edits:
        change = "created" if edit.before is None else "removed" if edit.after is None else "changed"
        table.add_row(edit.path, change, edit.reason)
    console().print(table)
    note(f"prepared disk: {prepared.raw}")
    note(f"manifest: {prepared.manifest}")


@image.command("import")
@aws_profile_option
@click.argument("vm", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["snapshot", "vmimport"]), default="snapshot", show_default=True, help="snapshot: EBS direct API, no bucket or role; vmimport: S3 + VM Import.")
@click.option("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or us-east-1).")
@click.option("--public-key", type=click.Path(path_type=Path, dir_okay=False), help="OpenSSH public key to authorize for the login user.")
@_DEADMAN_OPTION
@click.option("--no-boot-test", is_flag=True, help="Upload without first booting the prepared disk under QEMU as EC2 presents it.")
@_VM_OPTION
def import_cmd(vm: Path, method: str, region: str | None, public_key: Path | None, deadman: str | None, no_boot_test: bool, vm_name: str | None) -> None:
    """Import VM as an AMI (reused when an AMI with the same content digest exists); prints the AMI id.

    The prepared disk is booted first under QEMU as EC2 presents it, when QEMU is installed; with
    --public-key K.pub and its private half K beside it, the rehearsal logs in with that key.
    """
    import os

    from d2c.aws import DEFAULT_REGION
    from executor.image.importer import ensure_ami

    key = _read_key(public_key)
    private = _private_half(public_key)
    chosen = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    with progress(transient=True) as bar:
        ami = ensure_ami(
            vm, region=chosen, method=method, public_key=key, progress=_progress_callback(bar), vm=vm_name,
            deadman_s=_deadman_seconds(deadman), boot_test=not no_boot_test, private_key=private,
        )
    click.echo(ami)


@image.command("list")
@aws_profile_option
@click.option("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or us-east-1).")
@click.option("--json", "as_json", is_flag=True, help="Stable JSON: [{image_id, name, created, source, run_id, snapshot_gb, monthly_usd}].")
def list_cmd(region: str | None, as_json: bool) -> None:
    """List the AMIs d2c imported and kept, with what keeping each costs per month."""
    from d2c.aws import default_region
    from d2c.cli.output import console, print_json
    from executor.kept_images import list_images

    region = region or default_region()
    kept = list_images(region)
    if as_json:
        print_json([{**vars(k), "monthly_usd": round(k.monthly_usd, 4)} for k in kept])
        return
    out = console()
    if not kept:
        out.print(f"no d2c images in {region}")
        return
    for k in kept:
        owner = f"run {k.run_id}" if k.run_id else "kept"
        out.print(f"{k.image_id}  {k.created[:10]}  {k.snapshot_gb:>6.0f} GB  ${k.monthly_usd:,.2f}/month  {owner}  {k.source or k.name}", highlight=False)
    total = sum(k.monthly_usd for k in kept)
    out.print(f"{len(kept)} image(s), ${total:,.2f}/month of snapshot storage; remove one with 'd2c image rm AMI'", highlight=False)


@image.command("rm")
@aws_profile_option
@click.argument("ami")
@click.option("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION or us-east-1).")
def rm_cmd(ami: str, region: str | None) -> None:
    """Deregister a d2c AMI and delete its snapshots."""
    from d2c.aws import default_region
    from executor.kept_images import remove_image

    for line in remove_image(region or default_region(), ami):
        click.echo(line)
def _private_half(public_key: Path | None) -> Path | None:
    """``K`` beside ``K.pub``, when it exists (OpenSSH's naming)."""
    if public_key is None or public_key.suffix != ".pub":
        return None
    private = public_key.with_suffix("")
    return private if private.is_file() else None


@image.command("boot-test")
@click.argument("disk", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False), help="Private key authorized in the image (prepare --public-key's other half): log in with it.")
@click.option("--user", default=None, help="Account to log in as (default: the image's login user).")
@click.option("--timeout", "timeout", default=None, metavar="DURATION", help="How long to wait for SSH (default 3m with KVM, 10m without).")
@click.option("--serial-log", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Where to keep the serial console (default: beside the disk's manifest.json).")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON (documented in this module).")
def boot_test_cmd(disk: Path, key_path: Path | None, user: str | None, timeout: str | None, serial_log: Path | None, as_json: bool) -> None:
    """Boot a prepared DISK under QEMU as EC2 (Nitro) presents it and wait for SSH; exit 2 when it does not answer."""
    from d2c.durations import parse_duration
    from d2c.errors import UsageError
    from executor.image.boot_test import boot_test, require_boot
    from executor.image.prepare import check_image

    if not disk.is_file():
        raise UsageError(f"{disk}: no such disk; give the .prepared.raw that 'd2c image prepare' wrote")
    limit = parse_duration(timeout, "--timeout") if timeout else None
    report = check_image(disk)
    login = user or (report.login_user.name if report.login_user else None)
    log = serial_log or disk.with_name(f"{disk.name.removesuffix('.raw')}.serial.log")
    with console().status(f"booting {disk.name} as EC2 presents it (NVMe root, new NIC, DHCP)"):
        result = boot_test(disk, serial_log=log, arch=report.arch, boot_mode=report.boot_mode, user=login if key_path else None, key_path=key_path, timeout_s=limit)
    if as_json:
        print_json({"version": 1, "image": str(disk), **result.as_dict()})
    require_boot(result, disk)
    if not as_json:
        facts = f"root {result.root_device}, {result.interface} {result.address}" if result.logged_in else "SSH banner answered (no --key: not logged in)"
        note(f"SSH answered after {result.seconds:.1f} s ({result.accel}): {facts}")
        note(f"serial log: {result.serial_log}")


COMMANDS: list[click.Command] = [image]
