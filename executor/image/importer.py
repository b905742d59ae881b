"""One call from a VM image to an AMI id: reuse by digest, or check, prepare, convert and import.

``ensure_ami`` is what ``d2c run`` calls for every role whose image has no AMI yet and what
``d2c image import`` runs. The work folder (the raw copy, the VMDK) lives under the state folder
and is removed afterwards; the manifest of edits is kept beside it as
``images/<digest>.manifest.json`` so a user can see what was changed in every imported image,
with the boot rehearsal's result, and the rehearsal's serial console as
``images/<digest>.serial.log``.

Nothing is uploaded before the prepared disk has booted under QEMU as Nitro presents it
(``executor.image.boot_test``) whenever QEMU for the image's architecture is installed; a disk
that does not answer SSH is refused with what its serial log shows. The rehearsal logs in with
the run's private key, found in the run's folder (``runs/<run id>/``) by matching ``public_key``;
without it (``d2c image import`` with only a public key) SSH answering is the proof. How AMIs are
reused by digest, and why the dead-man bound is part of it: ``executor.image.digest``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from d2c.aws import aws_errors, client
from d2c.errors import UsageError
from d2c.files import atomic_write_json
from d2c.state import runs_dir, state_dir
from executor.image.boot_test import boot_test as rehearse
from executor.image.boot_test import qemu_binary, require_boot
from executor.image.convert import ProgressFn, convert
from executor.image.digest import image_digest
from executor.image.prepare import manifest_dict, prepare_raw
from executor.image.snapshot_import import register_snapshot, upload_snapshot
from executor.image.source import DiskRef, open_source
from executor.image.vmimport import import_vmdk

METHODS = ("snapshot", "vmimport")
DIGEST_TAG = "d2c:digest"


def find_ami(ec2, digest: str) -> str | None:
    """The id of an AMI of this account tagged with ``digest`` (available or pending), if any."""
    images = ec2.describe_images(
        Owners=["self"],
        Filters=[{"Name": f"tag:{DIGEST_TAG}", "Values": [digest]}, {"Name": "state", "Values": ["available", "pending"]}],
    )["Images"]
    return sorted(images, key=lambda i: i.get("CreationDate", ""))[-1]["ImageId"] if images else None


def run_private_key(public_key: str | None, run_id: str | None) -> Path | None:
    """The private key in the run's folder whose public half is ``public_key`` (None when there is none)."""
    import paramiko

    if not public_key or not run_id:
        return None
    wanted = public_key.split()[:2]
    folder = runs_dir() / run_id
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            key = paramiko.PKey.from_path(path)
        except (OSError, ValueError, TypeError, paramiko.SSHException):
            continue
        if [key.get_name(), key.get_base64()] == wanted:
            return path
    return None


def _ami_name(name: str, digest: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9()\[\]./_-]+", "-", name).strip("-")[:80] or "vm"
    return f"d2c-{slug}-{digest[:12]}"


def ensure_ami(
    image: Path,
    *,
    region: str,
    method: str = "snapshot",
    public_key: str | None = None,
    run_id: str | None = None,
    progress: ProgressFn | None = None,
    vm: str | None = None,
    deadman_s: int | None = None,
    boot_test: bool = True,
    private_key: Path | None = None,
) -> str:
    """Return an AMI for ``image`` in ``region``, importing it only when no AMI has its content digest.

    Checks the image first (UsageError on a failing check; nothing is uploaded), prepares a raw
    copy (the original is never written), imports it by ``method`` (``snapshot`` or
    ``vmimport``) and tags the AMI ``d2c:digest``. ``public_key`` is baked into the login user's
    authorized_keys and is part of the digest. ``vm`` names the VM to import from an appliance
    holding several (the role's ``vm:``); the chosen VM is part of the digest too. ``deadman_s``
    bakes in the dead-man timer with that bound (seconds after boot; part of the digest).
    ``boot_test`` False skips the boot rehearsal (``--no-boot-test``); it logs in with
    ``private_key``, else with the run's key found by ``run_private_key``.
    """
    if method not in METHODS:
        raise UsageError(f"--method {method}: unknown import method; use one of {', '.join(METHODS)}")
    source = open_source(Path(image), vm=vm)
    digest = image_digest(source.files, public_key, vm=source.vm, deadman_s=deadman_s)
    with aws_errors(f"looking up an AMI for {source.path}"):
        ec2 = client("ec2", region)
        existing = find_ami(ec2, digest)
    if existing:
        return existing
    images_dir = state_dir() / "images"
    work = images_dir / f"{digest[:16]}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tags = {DIGEST_TAG: digest, "d2c:image": source.path.name, "d2c:kind": "image", "Name": f"d2c {source.name}"}
    if source.vm is not None:
        tags["d2c:vm"] = source.vm
    if run_id:
        tags["d2c:run"] = run_id
    name = _ami_name(source.name, digest)
    try:
        raw = convert(source.disk, work / "disk.raw", fmt="raw", image=source.path, progress=progress)
        report, edits = prepare_raw(raw, source, public_key=public_key, deadman_s=deadman_s)
        manifest = manifest_dict(source.path, edits)
        manifest_path = images_dir / f"{digest[:16]}.manifest.json"
        atomic_write_json(manifest_path, manifest)
        if boot_test and qemu_binary(report.arch):
            if progress:
                progress("boot test", 0, 1)
            result = rehearse(
                raw, serial_log=images_dir / f"{digest[:16]}.serial.log", arch=report.arch, boot_mode=report.boot_mode,
                user=report.login_user.name if report.login_user else None, key_path=private_key or run_private_key(public_key, run_id),
            )
            atomic_write_json(manifest_path, {**manifest, "boot_test": result.as_dict()})
            require_boot(result, source.path)
            if progress:
                progress("boot test", 1, 1)
        if method == "snapshot":
            with aws_errors(f"importing {source.path} as an EBS snapshot"):
                upload = upload_snapshot(raw, ebs=client("ebs", region), ec2=ec2, tags=tags, description=name, progress=progress)
                return register_snapshot(
                    ec2, snapshot_id=upload.snapshot_id, name=name, volume_gib=upload.volume_gib,
                    arch=report.arch, boot_mode=report.boot_mode, tags=tags,
                )
        vmdk = convert(DiskRef(raw, "raw"), work / "disk.vmdk", fmt="vmdk", image=source.path, progress=progress)
        raw.unlink()
        with aws_errors(f"importing {source.path} with VM Import"):
            account = client("sts", region).get_caller_identity()["Account"]
            return import_vmdk(
                vmdk, ec2=ec2, s3=client("s3", region), iam=client("iam", region),
                bucket=f"d2c-images-{account}-{region}", key=f"{name}.vmdk", region=region,
                boot_mode=report.boot_mode, description=name, tags=tags, progress=progress,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
