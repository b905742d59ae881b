"""Reading VirtualBox appliances: the OVF descriptor inside an .ova tar, or a bare .ovf file.

Only the Python standard library is used (tarfile, xml.etree), so ``d2c init`` and
``d2c image check`` can read an appliance without any image tool installed.
"""

from __future__ import annotations

import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from d2c.errors import UsageError

_OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
_RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
_VBOX_NS = "http://www.virtualbox.org/ovf/machine"
# CIM resource types used in the VirtualHardwareSection (DSP0243).
_RESOURCE_CPU = "3"
_RESOURCE_MEMORY = "4"
_RESOURCE_DISK = "17"


@dataclass(frozen=True)
class OvfDisk:
    """A disk the appliance declares: its file inside the appliance and its virtual size."""

    disk_id: str
    file_name: str
    capacity_bytes: int
    format_url: str


@dataclass(frozen=True)
class OvfMachine:
    """One virtual machine of an appliance."""

    name: str
    os_type: str
    cpus: int
    memory_mib: int
    disks: tuple[OvfDisk, ...]


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def read_ovf_text(path: Path) -> str:
    """Return the OVF XML of an .ova (the first .ovf member) or an .ovf file."""
    path = Path(path)
    if path.suffix.lower() == ".ovf":
        return path.read_text(encoding="utf-8")
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if member.name.lower().endswith(".ovf"):
                    handle = archive.extractfile(member)
                    if handle is None:
                        break
                    return handle.read().decode("utf-8")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UsageError(f"{path}: not a readable OVA archive ({exc}); export the VM again from VirtualBox") from None
    raise UsageError(f"{path}: the OVA holds no .ovf descriptor; export the VM again from VirtualBox")


def parse_ovf(text: str, source: Path) -> tuple[OvfMachine, ...]:
    """Parse OVF XML into the machines it describes (VirtualBox and VMware exports both)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UsageError(f"{source}: the OVF descriptor is not valid XML ({exc})") from None
    files = {
        f.get(_q(_OVF_NS, "id")): f.get(_q(_OVF_NS, "href"), "")
        for f in root.iter(_q(_OVF_NS, "File"))
    }
    disks: dict[str, OvfDisk] = {}
    for disk in root.iter(_q(_OVF_NS, "Disk")):
        disk_id = disk.get(_q(_OVF_NS, "diskId"), "")
        capacity = int(disk.get(_q(_OVF_NS, "capacity"), "0") or 0)
        units = disk.get(_q(_OVF_NS, "capacityAllocationUnits"), "byte")
        disks[disk_id] = OvfDisk(
            disk_id=disk_id,
            file_name=files.get(disk.get(_q(_OVF_NS, "fileRef")), ""),
            capacity_bytes=capacity * _unit_multiplier(units),
            format_url=disk.get(_q(_OVF_NS, "format"), ""),
        )
    machines = []
    for system in root.iter(_q(_OVF_NS, "VirtualSystem")):
        name = system.findtext(_q(_OVF_NS, "Name")) or system.get(_q(_OVF_NS, "id")) or "vm"
        os_section = system.find(_q(_OVF_NS, "OperatingSystemSection"))
        os_type = ""
        if os_section is not None:
            os_type = os_section.findtext(_q(_VBOX_NS, "OSType")) or os_section.findtext(_q(_OVF_NS, "Description")) or ""
        cpus, memory, used = 1, 0, []
        for item in system.iter(_q(_OVF_NS, "Item")):
            kind = item.findtext(_q(_RASD_NS, "ResourceType"))
            quantity = item.findtext(_q(_RASD_NS, "VirtualQuantity"))
            if kind == _RESOURCE_CPU and quantity:
                cpus = int(quantity)
            elif kind == _RESOURCE_MEMORY and quantity:
                units = item.findtext(_q(_RASD_NS, "AllocationUnits")) or "byte * 2^20"
                memory = int(quantity) * _unit_multiplier(units) // 2**20
            elif kind == _RESOURCE_DISK:
                ref = item.findtext(_q(_RASD_NS, "HostResource")) or ""
                disk_id = ref.rsplit("/", 1)[-1]
                if disk_id in disks:
                    used.append(disks[disk_id])
        machines.append(OvfMachine(name=name, os_type=os_type, cpus=cpus, memory_mib=memory, disks=tuple(used)))
    if not machines:
        raise UsageError(f"{source}: the OVF descriptor declares no virtual machine")
    return tuple(machines)


def read_appliance(path: Path) -> tuple[OvfMachine, ...]:
    """Read the machines of an .ova or .ovf appliance."""
    return parse_ovf(read_ovf_text(path), Path(path))


def _unit_multiplier(units: str) -> int:
    """Bytes per unit for OVF's programmatic units such as ``byte * 2^30`` or ``MegaBytes``."""
    text = units.replace(" ", "").lower()
    if text.startswith("byte*2^"):
        return 2 ** int(text.split("^", 1)[1])
    named = {"byte": 1, "bytes": 1, "kilobytes": 2**10, "megabytes": 2**20, "gigabytes": 2**30, "mb": 2**20, "gb": 2**30}
    return named.get(text, 1)
