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

_OVF_NAMESPACES = ("http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2")
_RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
# OVF 2.0 exports describe disks as StorageItem elements in the SASD namespace.
_SASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
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
    """Return the OVF XML of an .ova (the first .ovf member) or an .ovf file.

    The whole archive is walked, not just up to the descriptor, so that an .ova cut short (a
    copy or download that stopped) is reported here rather than half-way through a conversion.
    """
    path = Path(path)
    if path.suffix.lower() == ".ovf":
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the OVF descriptor ({exc})") from None
    text = None
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if text is None and member.name.lower().endswith(".ovf"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        text = handle.read().decode("utf-8")
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable OVA archive ({exc}); export the VM again from VirtualBox") from None
    if text is None:
        raise UsageError(f"{path}: the OVA holds no .ovf descriptor; export the VM again from VirtualBox")
    return text


def parse_ovf(text: str, source: Path) -> tuple[OvfMachine, ...]:
    """Parse OVF XML (1.0 or 2.0) into the machines it describes (VirtualBox and VMware exports)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UsageError(f"{source}: the OVF descriptor is not valid XML ({exc})") from None
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if ns not in _OVF_NAMESPACES:
        raise UsageError(f"{source}: not an OVF descriptor (root element {root.tag!r}); export the VM again from VirtualBox")

    def number(text: str | None, what: str) -> int:
        try:
            return int((text or "0").strip())
        except ValueError:
            raise UsageError(f"{source}: the OVF gives {what} as {text!r}, not a whole number") from None

    files = {f.get(_q(ns, "id")): f.get(_q(ns, "href"), "") for f in root.iter(_q(ns, "File"))}
    disks: dict[str, OvfDisk] = {}
    for disk in root.iter(_q(ns, "Disk")):
        disk_id = disk.get(_q(ns, "diskId"), "")
        units = disk.get(_q(ns, "capacityAllocationUnits"), "byte")
        disks[disk_id] = OvfDisk(
            disk_id=disk_id,
            file_name=files.get(disk.get(_q(ns, "fileRef")), ""),
            capacity_bytes=number(disk.get(_q(ns, "capacity")), f"the capacity of disk {disk_id!r}") * _unit_multiplier(units),
            format_url=disk.get(_q(ns, "format"), ""),
        )
    machines = []
    for system in root.iter(_q(ns, "VirtualSystem")):
        vbox = system.find(_q(_VBOX_NS, "Machine"))
        name = (system.findtext(_q(ns, "Name")) or (vbox.get("name") if vbox is not None else None)
                or system.get(_q(ns, "id")) or "vm")
        os_type = ""
        os_section = system.find(_q(ns, "OperatingSystemSection"))
        if os_section is not None:
            os_type = os_section.findtext(_q(_VBOX_NS, "OSType")) or ""
        if not os_type and vbox is not None:
            os_type = vbox.get("OSType", "")
        if not os_type and os_section is not None:
            os_type = os_section.findtext(_q(ns, "Description")) or ""
        cpus, memory, used = 1, 0, []
        for item in system.iter():
            if item.tag == _q(ns, "Item"):
                cim = _RASD_NS
            elif item.tag == _q(ns, "StorageItem"):
                cim = _SASD_NS
            else:
                continue
            kind = (item.findtext(_q(cim, "ResourceType")) or "").strip()
            quantity = item.findtext(_q(cim, "VirtualQuantity"))
            if kind == _RESOURCE_CPU and quantity:
                cpus = number(quantity, f"the CPU count of {name!r}")
            elif kind == _RESOURCE_MEMORY and quantity:
                units = item.findtext(_q(cim, "AllocationUnits")) or "byte * 2^20"
                memory = number(quantity, f"the memory of {name!r}") * _unit_multiplier(units) // 2**20
            elif kind == _RESOURCE_DISK:
                disk_id = (item.findtext(_q(cim, "HostResource")) or "").strip().rsplit("/", 1)[-1]
                if disk_id in disks:
                    used.append(disks[disk_id])
        machines.append(OvfMachine(name=name.strip(), os_type=os_type.strip(), cpus=cpus, memory_mib=memory, disks=tuple(used)))
    if not machines:
        raise UsageError(f"{source}: the OVF descriptor declares no virtual machine")
    return tuple(machines)


def read_appliance(path: Path) -> tuple[OvfMachine, ...]:
    """Read the machines of an .ova or .ovf appliance."""
    return parse_ovf(read_ovf_text(path), Path(path))


def _unit_multiplier(units: str) -> int:
    """Bytes per unit for OVF's programmatic units such as ``byte * 2^30`` or ``MegaBytes``."""
    text = units.replace(" ", "").lower()
    exponent = text.removeprefix("byte*2^")
    if exponent != text and exponent.isdigit() and int(exponent) <= 60:
        return 2 ** int(exponent)
    named = {"byte": 1, "bytes": 1, "kilobytes": 2**10, "megabytes": 2**20, "gigabytes": 2**30, "mb": 2**20, "gb": 2**30}
    return named.get(text, 1)
