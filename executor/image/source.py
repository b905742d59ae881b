"""What VirtualBox gives a user, turned into one disk qemu-img can read.

Accepted: an appliance (.ova tar or .ovf with its disk files), a .vbox machine file with its
disks, or a bare disk (.vdi, .vmdk, .vhd/.vhdx, .qcow2, raw .img). A disk inside an .ova is read
in place through qemu's ``raw`` driver with the member's byte offset and size, so the archive is
never unpacked. The disk format is probed from its magic bytes rather than trusted from the file
name; a file that is none of these is refused before any tool runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from d2c.errors import UsageError
from d2c.ovf import read_appliance

_VBOX_NS = "{http://www.virtualbox.org/}"
_EXT_MAGIC_OFFSET = 0x438


@dataclass(frozen=True)
class DiskRef:
    """A disk image qemu-img can read: a whole file, or ``size`` bytes at ``offset`` in a file."""

    path: Path
    format: str
    offset: int = 0
    size: int | None = None

    def qemu_args(self) -> list[str]:
        """The source arguments for qemu-img (``-f FMT FILE`` or a ``json:`` spec for a slice).

        The file is always named by its absolute path: qemu-img reads ``name:rest`` before the
        first ``/`` as a protocol prefix, so a relative ``vm:1.vdi`` would not be opened as a file.
        """
        if self.size is None:
            return ["-f", self.format, qemu_file_name(self.path)]
        spec = {
            "driver": self.format,
            "file": {
                "driver": "raw",
                "offset": self.offset,
                "size": self.size,
                "file": {"driver": "file", "filename": str(Path(self.path).resolve())},
            },
        }
        return ["json:" + json.dumps(spec)]


def qemu_file_name(path: Path) -> str:
    """``path`` as qemu-img must get it to read it as a plain file whatever its name holds (absolute)."""
    return os.path.abspath(path)


@dataclass(frozen=True)
class ImageSource:
    """A VM image as d2c sees it: its boot disk, what the VM file says about it, and its files.

    ``vm`` is the name of the chosen VM when the image is an appliance (.ova/.ovf), else None.
    """

    path: Path
    kind: str
    name: str
    os_type: str
    disk: DiskRef
    virtual_size: int
    files: tuple[Path, ...]
    vm: str | None = None


def open_source(path: Path, *, vm: str | None = None) -> ImageSource:
    """Read ``path`` (.ova, .ovf, .vbox or a bare disk) and return its boot disk; UsageError if unusable.

    ``vm`` names the VM to use in an appliance holding several; it is required for those and
    refused for images that are not appliances.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give an .ova, .ovf, .vbox or disk image file")
    suffix = path.suffix.lower()
    if vm is not None and suffix not in (".ova", ".ovf"):
        raise UsageError(f"{path}: --vm {vm} names a VM of an appliance, but this is not an .ova or .ovf; leave --vm out")
    if suffix == ".ova":
        name, os_type, disk = _from_ova(path, vm)
        files: tuple[Path, ...] = (path,)
    elif suffix == ".ovf":
        name, os_type, disk = _from_ovf(path, vm)
        files = (path, disk.path)
    elif suffix == ".vbox":
        name, os_type, disk = _from_vbox(path)
        files = (disk.path,)
    else:
        disk = DiskRef(path, _probe_format(path, 0, path.stat().st_size))
        name, os_type, files = path.stem, "", (path,)
    return ImageSource(
        path=path,
        kind=suffix.lstrip(".") if suffix in (".ova", ".ovf", ".vbox") else "disk",
        name=name,
        os_type=os_type,
        disk=disk,
        virtual_size=_virtual_size(path, disk),
        files=files,
        vm=name if suffix in (".ova", ".ovf") else None,
    )


def _from_ova(path: Path, vm: str | None) -> tuple[str, str, DiskRef]:
    machine = _pick_machine(path, vm)
    wanted = machine.disks[0].file_name
    try:
        with tarfile.open(path, "r:") as archive:
            member = next((m for m in archive.getmembers() if m.name == wanted or Path(m.name).name == wanted), None)
    except (tarfile.TarError, EOFError) as exc:
        if "unexpected end" in str(exc):
            raise UsageError(f"{path}: the OVA is truncated (it ends inside a member); copy or export it again") from None
        raise UsageError(f"{path}: not a readable OVA archive ({exc}); export the VM again from VirtualBox") from None
    if member is None:
        raise UsageError(f"{path}: the OVA lacks the disk file {wanted!r} its descriptor names; export the VM again")
    if member.offset_data + member.size > path.stat().st_size:
        raise UsageError(f"{path}: the OVA is truncated (disk {wanted!r} is cut short); copy or export it again")
    fmt = _probe_format(path, member.offset_data, member.size, label=f"{path} (disk {wanted!r})")
    return machine.name, machine.os_type, DiskRef(path, fmt, member.offset_data, member.size)


def _from_ovf(path: Path, vm: str | None) -> tuple[str, str, DiskRef]:
    machine = _pick_machine(path, vm)
    disk_path = path.parent / machine.disks[0].file_name
    if not disk_path.is_file():
        raise UsageError(f"{path}: the disk file {disk_path.name!r} it names is missing beside it")
    return machine.name, machine.os_type, DiskRef(disk_path, _probe_format(disk_path, 0, disk_path.stat().st_size))


def _pick_machine(path: Path, vm: str | None):
    """The appliance's VM named ``vm``, or its only VM when ``vm`` is None."""
    machines = read_appliance(path)
    names = ", ".join(repr(m.name) for m in machines)
    if vm is None:
        if len(machines) > 1:
            raise UsageError(
                f"{path}: the appliance holds {len(machines)} VMs ({names}); "
                "choose one with 'vm:' in the role (or --vm NAME)"
            )
        machine = machines[0]
    else:
        machine = next((m for m in machines if m.name == vm), None)
        if machine is None:
            raise UsageError(f"{path}: the appliance has no VM named {vm!r}; its VMs are {names}")
    if not machine.disks:
        raise UsageError(f"{path}: the appliance declares no disk for {machine.name!r}")
    return machine


def _from_vbox(path: Path) -> tuple[str, str, DiskRef]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise UsageError(f"{path}: not a readable VirtualBox machine file ({exc})") from None
    machine = root.find(f"{_VBOX_NS}Machine")
    if machine is None:
        raise UsageError(f"{path}: no <Machine> in this .vbox file")
    top_level = {}
    children = set()
    for disk in machine.iter(f"{_VBOX_NS}HardDisk"):
        top_level[disk.get("uuid")] = disk
        for child in disk.findall(f"{_VBOX_NS}HardDisk"):
            children.add(child.get("uuid"))
    attached = [
        image.get("uuid")
        for device in machine.iter(f"{_VBOX_NS}AttachedDevice")
        if device.get("type") == "HardDisk"
        for image in device.findall(f"{_VBOX_NS}Image")
    ]
    if not attached:
        raise UsageError(f"{path}: the VM has no hard disk attached")
    if attached[0] in children:
        raise UsageError(f"{path}: the boot disk is a snapshot; delete or merge the VM's snapshots in VirtualBox first")
    disk = top_level.get(attached[0])
    if disk is None:
        raise UsageError(f"{path}: the attached disk {attached[0]} is not in the media registry")
    disk_path = Path(disk.get("location", ""))
    if not disk_path.is_absolute():
        disk_path = path.parent / disk_path
    if not disk_path.is_file():
        raise UsageError(f"{path}: its disk {disk_path} is missing")
    fmt = _probe_format(disk_path, 0, disk_path.stat().st_size)
    return machine.get("name", path.stem), machine.get("OSType", ""), DiskRef(disk_path, fmt)


def _probe_format(path: Path, offset: int, size: int, *, label: str | None = None) -> str:
    """The qemu driver for the image at ``offset``, from its magic bytes; UsageError if none fits."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        head = handle.read(min(size, 0x10100))
        handle.seek(offset + max(size - 512, 0))
        tail = handle.read(512)
    if len(head) >= 0x44 and head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix") or tail.startswith(b"conectix"):
        return "vpc"
    boot_signature = len(head) >= 512 and head[510:512] == b"\x55\xaa"
    ext_magic = len(head) > _EXT_MAGIC_OFFSET + 2 and head[_EXT_MAGIC_OFFSET : _EXT_MAGIC_OFFSET + 2] == b"\x53\xef"
    if (boot_signature or ext_magic or head.startswith(b"XFSB")) and size % 512 == 0:
        return "raw"
    raise UsageError(
        f"{label or path}: not a disk image (no VDI, VMDK, VHD, QCOW2 or partitioned raw disk found); "
        "give the VM's .ova, .vbox or disk file"
    )


def _virtual_size(path: Path, disk: DiskRef) -> int:
    result = subprocess.run(
        ["qemu-img", "info", "--output=json", *disk.qemu_args()], capture_output=True, text=True
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise UsageError(f"{path}: qemu-img cannot read the disk ({detail}); the file may be damaged or truncated")
    return int(json.loads(result.stdout)["virtual-size"])
