"""Disk conversion with qemu-img: a sparse raw copy (snapshot route, edits) or a stream-optimized VMDK (VM Import).

qemu-img runs with ``-p``; its ``(NN.NN/100%)`` updates are parsed as they stream so the caller
can draw a progress bar. Free space is checked first against the bytes the source really holds
(``qemu-img map``), and a failed or interrupted conversion leaves no partial file behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from d2c.errors import UsageError, WorkError
from executor.image.source import DiskRef, qemu_file_name

ProgressFn = Callable[[str, float, float], None]
"""Reports ``(stage, done, total)`` as long work advances; the CLI draws it as a bar."""

_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
_SPACE_MARGIN = 64 * 2**20
_FORMATS = {"raw": ["-O", "raw"], "vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"]}


def data_extents(disk: DiskRef) -> list[tuple[int, int]]:
    """``(start, length)`` of every guest-visible range that holds data (neither a hole nor known zero)."""
    result = subprocess.run(["qemu-img", "map", "--output=json", *disk.qemu_args()], capture_output=True, text=True)
    if result.returncode != 0:
        raise UsageError(f"{disk.path}: qemu-img cannot map the disk ({result.stderr.strip()[-200:]})")
    return [
        (int(e["start"]), int(e["length"]))
        for e in json.loads(result.stdout)
        if e.get("data") and not e.get("zero")
    ]


def allocated_bytes(disk: DiskRef) -> int:
    """Bytes of the disk that hold data: what a sparse copy or a block upload has to move."""
    return sum(length for _, length in data_extents(disk))


def ensure_space(folder: Path, needed: int, *, image: Path) -> None:
    """UsageError when ``folder`` has less than ``needed`` bytes (plus a margin) free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + _SPACE_MARGIN:
        raise UsageError(
            f"{image}: converting needs {(needed + _SPACE_MARGIN) / 2**30:.2f} GiB free in {folder} "
            f"but only {free / 2**30:.2f} GiB is; free space there or set D2C_HOME to a larger disk"
        )


def convert(disk: DiskRef, dest: Path, *, fmt: str = "raw", image: Path | None = None, progress: ProgressFn | None = None) -> Path:
    """Convert ``disk`` to ``fmt`` (``raw`` sparse, or ``vmdk`` stream-optimized) at ``dest``, streaming progress."""
    dest = Path(dest)
    ensure_space(dest.parent, allocated_bytes(disk), image=image or disk.path)
    partial = dest.with_name(dest.name + ".partial")
    stage = f"converting to {fmt}"
    argv = ["qemu-img", "convert", "-p", *_FORMATS[fmt], *disk.qemu_args(), qemu_file_name(partial)]
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            buffer = b""
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(4096):
                buffer += chunk
                matches = _PERCENT.findall(buffer)
                if matches and progress is not None:
                    progress(stage, float(matches[-1]), 100.0)
                buffer = buffer[-64:]
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            status = proc.wait()
        if status != 0:
            raise WorkError(f"{image or disk.path}: qemu-img convert failed ({stderr.strip()[-300:]})")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    if progress is not None:
        progress(stage, 100.0, 100.0)
    return dest
