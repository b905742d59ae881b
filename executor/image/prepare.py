"""The minimal edits EC2 needs, applied to a raw copy and recorded in a manifest.

Only what the checklist marks ``fix`` is changed (fstab by UUID, DHCP on the first interface
whatever its name, root= by UUID, MAC-pinned rules removed, sshd enabled, serial console on),
plus the run's public key in the login user's ``~/.ssh/authorized_keys`` with the modes sshd
insists on, and, given a bound, the dead-man timer (``executor.image.deadman``). Each change is one entry
of ``manifest.json``: the file, its text before and after, and why. The original image is only
read: edits go to the raw copy made by ``convert``, named ``<name>.prepared.raw`` so that it is
never the original's own name, and refused outright when an output would land on one of the
image's files.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from d2c.errors import UsageError
from d2c.files import atomic_write_json
from d2c.state import state_dir
from executor.image.checks import CheckReport, Edit, LoginUser, check_raw
from executor.image.convert import ProgressFn, convert
from executor.image.deadman import deadman_edits
from executor.image.disk import ExtFilesystem
from executor.image.source import ImageSource, open_source

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PreparedImage:
    """A raw disk ready for EC2, the checklist it passed and the edits made to it."""

    raw: Path
    manifest: Path
    report: CheckReport
    edits: tuple[Edit, ...]


def key_edits(fs: ExtFilesystem, user: LoginUser, public_key: str) -> list[Edit]:
    """Edits that let ``public_key`` log in as ``user`` (``~/.ssh`` 0700, ``authorized_keys`` 0600)."""
    line = public_key.strip()
    home = fs.resolve(user.home)
    ssh_dir = str(PurePosixPath(home) / ".ssh")
    keys_path = f"{ssh_dir}/authorized_keys"
    edits = []
    if fs.stat(ssh_dir) is None:
        edits.append(Edit(ssh_dir, None, "", "sshd reads keys from ~/.ssh", kind="dir", mode=0o700, uid=user.uid, gid=user.gid))
    before = fs.read_text(keys_path)
    if before is not None and line in before.splitlines():
        return edits
    after = (before or "") + ("" if not before or before.endswith("\n") else "\n") + line + "\n"
    edits.append(Edit(keys_path, before, after, f"the run's key logs in as {user.name}", mode=0o600, uid=user.uid, gid=user.gid))
    return edits


def apply_edits(fs: ExtFilesystem, edits: list[Edit]) -> None:
    """Carry out ``edits`` on the writable filesystem ``fs``."""
    for edit in edits:
        if edit.kind == "dir":
            fs.make_dir(edit.path, mode=edit.mode or 0o755, uid=edit.uid, gid=edit.gid)
        elif edit.kind == "symlink":
            fs.make_symlink(edit.path, edit.after or "")
        elif edit.after is None:
            fs.remove(edit.path)
        else:
            current = fs.stat(edit.path)
            mode = edit.mode if edit.mode is not None else (current.mode & 0o7777 if current else 0o644)
            uid, gid = (current.uid, current.gid) if current and edit.mode is None else (edit.uid, edit.gid)
            fs.write_file(edit.path, edit.after.encode("utf-8"), mode=mode, uid=uid, gid=gid)


def manifest_dict(image: Path, edits: list[Edit]) -> dict:
    """The manifest: every change made to the copy of ``image`` (file, before, after, reason)."""
    return {
        "version": MANIFEST_VERSION,
        "image": str(image),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edits": [
            {"file": e.path, "kind": e.kind, "before": e.before, "after": e.after, "reason": e.reason}
            for e in edits
        ],
    }


def prepare_raw(
    raw: Path, source: ImageSource, *, public_key: str | None = None, deadman_s: int | None = None
) -> tuple[CheckReport, list[Edit]]:
    """Check the raw copy of ``source`` and apply every fix, the key and the dead-man timer; UsageError when a check fails.

    ``deadman_s`` (seconds after boot) installs ``executor.image.deadman``'s units; None leaves them out.
    """
    report = check_raw(raw, source.path, os_type=source.os_type)
    if not report.ok:
        first = report.failures[0]
        raise UsageError(
            f"{source.path}: not ready for EC2 — {first.name}: {first.reason} "
            f"({len(report.failures)} failing check(s); run 'd2c image check {source.path}')"
        )
    fs = ExtFilesystem(raw, report.root_offset or 0, writable=True)
    edits = report.edits()
    if public_key:
        assert report.login_user is not None
        edits += key_edits(fs, report.login_user, public_key)
    if deadman_s is not None:
        edits += deadman_edits(fs, int(deadman_s))
    apply_edits(fs, edits)
    return report, edits


def prepared_name(source: ImageSource) -> str:
    """The file name of the prepared copy of ``source``: ``<VM name>.prepared.raw``, safe as a file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip(".-") or "vm"
    return f"{slug}.prepared.raw"


def refuse_overwriting(source: ImageSource, outputs: tuple[Path, ...]) -> None:
    """UsageError when any of ``outputs`` is one of the files that make up ``source``."""
    originals = {*source.files, source.path, source.disk.path}
    for output in outputs:
        for original in originals:
            # samefile also sees through symlinks, hard links and differently spelled paths.
            if output.exists() and os.path.samefile(output, original):
                raise UsageError(
                    f"{output}: writing here would overwrite the image's own file {original}; "
                    "give -o a folder that does not hold the image's files"
                )


def prepare_image(
    image: Path,
    out_dir: Path,
    *,
    public_key: str | None = None,
    progress: ProgressFn | None = None,
    vm: str | None = None,
    deadman_s: int | None = None,
) -> PreparedImage:
    """Convert ``image`` to a raw copy in ``out_dir``, apply the fixes, and write ``manifest.json`` there.

    ``vm`` names the VM to take from an appliance holding several; ``deadman_s`` bakes in the
    dead-man timer with that bound. Nothing is written when an output would replace one of the
    image's own files.
    """
    source = open_source(image, vm=vm)
    out_dir = Path(out_dir)
    raw = out_dir / prepared_name(source)
    manifest = out_dir / "manifest.json"
    refuse_overwriting(source, (raw, raw.with_name(raw.name + ".partial"), manifest))
    convert(source.disk, raw, fmt="raw", image=source.path, progress=progress)
    try:
        report, edits = prepare_raw(raw, source, public_key=public_key, deadman_s=deadman_s)
        atomic_write_json(manifest, manifest_dict(source.path, edits))
    except BaseException:
        raw.unlink(missing_ok=True)
        raise
    return PreparedImage(raw, manifest, report, tuple(edits))


def check_image(image: Path, *, progress: ProgressFn | None = None, vm: str | None = None) -> CheckReport:
    """Run the checklist on ``image`` (its VM ``vm`` for a multi-VM appliance) through a temporary raw copy.

    The copy lives in the state folder while the checks run; a state folder created for it is
    removed again, so checking leaves nothing behind.
    """
    source = open_source(image, vm=vm)
    with _scratch_folder() as work:
        raw = convert(source.disk, work / "disk.raw", fmt="raw", image=source.path, progress=progress)
        return check_raw(raw, source.path, os_type=source.os_type)


@contextmanager
def _scratch_folder() -> Iterator[Path]:
    """A temporary folder inside the state folder; state folders made for it are removed after."""
    root = state_dir(create=False)
    missing = []
    folder = root
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="check-", dir=root) as work:
            yield Path(work)
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break
