"""Builds small real VM images for the image tests: an Ubuntu-shaped root on a partitioned disk.

Each image is a sparse raw disk (sfdisk MBR or GPT) whose root partition is an ext4 filesystem
made by ``mkfs.ext4 -d TREE -E offset=...`` straight into the disk file, converted to VDI with
qemu-img and wrapped as an OVA whose OVF descriptor is shaped like a VirtualBox export. The root
is ~330 MiB so that EC2's 250 MiB free-space rule can pass, but only a few MiB are allocated.
Knobs plant one problem each (static address, device-name fstab, 32-bit binaries, LVM, ...).
"""

from __future__ import annotations

import base64
import gzip
import os
import random
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
KERNEL = "5.15.0-91-generic"
ROOT_UUID = "3f5b9a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


@dataclass(frozen=True)
class Guest:
    """What the guest's root tree holds; each field plants or removes one thing the checks look at."""

    bits: int = 64
    fstab_by_device: bool = True
    netplan_static: bool = True
    ifupdown_static: bool = False
    persistent_net: bool = True
    ssh_enabled: bool = True
    login_user: bool = True
    cloud_init: bool = False
    nvme: bool = True
    ena: bool = True
    grub: bool = True
    serial_console: bool = False
    payload_mib: int = 0
    dhcp_client: bool = True
    systemd: bool = True
    netplan_unmatched: bool = False
    """netplan ``enp0s3: {dhcp4: true}`` without ``match`` (Ubuntu Server's installer default; with ``netplan_static=False``)."""
    grub_root_device: bool = False
    """``root=/dev/sda1`` on grub.cfg's kernel line and ``GRUB_DISABLE_LINUX_UUID=true``."""
    extra_files: tuple[tuple[str, str], ...] = ()
    """``(path under the root, text)`` of further files to plant, e.g. one with a hostile name."""


def _elf(bits: int) -> bytes:
    machine = 0x3E if bits == 64 else 0x03
    return b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)


def newc_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A cpio archive in the kernel's ``newc`` format holding ``(path, data)`` regular files and the trailer."""
    out = bytearray()
    for ino, (name, data) in enumerate([*members, ("TRAILER!!!", b"")], start=1):
        encoded = name.encode() + b"\0"
        mode = 0o100644 if name != "TRAILER!!!" else 0
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + "".join(f"{f:08x}" for f in fields).encode() + encoded
        out += bytes(-len(out) % 4)
        out += data + bytes(-len(data) % 4)
    return bytes(out)


def _put(root: Path, rel: str, text: str | bytes, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)


def _write_payload(path: Path, mib: int) -> None:
    """``mib`` MiB of data like a user's files: alternating incompressible and text-like MiB (seeded)."""
    rng = random.Random(mib)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for index in range(mib):
            if index % 2:
                handle.write(base64.b64encode(rng.randbytes(MIB * 3 // 4)))
            else:
                handle.write(rng.randbytes(MIB))


def build_tree(root: Path, guest: Guest, *, root_device: str = "/dev/sda1") -> Path:
    """Write an Ubuntu-shaped root filesystem tree into ``root``."""
    root.mkdir(parents=True)
    for name in ("usr/bin", "usr/sbin", "usr/lib", "etc", "home", "root", "tmp", "var/log", "boot"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib"):
        os.symlink(f"usr/{link}", root / link)
    if guest.bits == 64:
        _put(root, "usr/lib64/ld-linux-x86-64.so.2", _elf(64), 0o755)
        os.symlink("usr/lib64", root / "lib64")
    _put(root, "usr/bin/dash", _elf(guest.bits), 0o755)
    os.symlink("dash", root / "usr/bin/sh")
    _put(root, "usr/bin/bash", _elf(guest.bits), 0o755)
    _put(root, "etc/os-release", 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.3 LTS"\n')
    _put(root, "etc/hostname", "labvm\n")
    fstab_root = root_device if guest.fstab_by_device else f"UUID={ROOT_UUID}"
    _put(root, "etc/fstab", f"# /etc/fstab: static file system information.\n{fstab_root} / ext4 errors=remount-ro 0 1\n")
    if guest.netplan_static:
        _put(root, "etc/netplan/00-installer-config.yaml",
             "network:\n  version: 2\n  ethernets:\n    enp0s3:\n      addresses: [192.168.56.10/24]\n"
             "      routes:\n        - to: default\n          via: 192.168.56.1\n      nameservers:\n        addresses: [192.168.56.1]\n")
    elif guest.netplan_unmatched:
        _put(root, "etc/netplan/00-installer-config.yaml", "network:\n  version: 2\n  ethernets:\n    enp0s3:\n      dhcp4: true\n")
    elif not guest.ifupdown_static:
        _put(root, "etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  ethernets:\n    primary:\n      match:\n        name: e*\n      dhcp4: true\n")
    if guest.ifupdown_static:
        _put(root, "usr/sbin/ifup", _elf(guest.bits), 0o755)
        if guest.dhcp_client:
            _put(root, "usr/sbin/dhclient", _elf(guest.bits), 0o755)
        _put(root, "etc/network/interfaces",
             "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address 192.168.56.10\n"
             "    netmask 255.255.255.0\n    gateway 192.168.56.1\n")
    if guest.persistent_net:
        _put(root, "etc/udev/rules.d/70-persistent-net.rules",
             'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="08:00:27:aa:bb:cc", NAME="eth0"\n')
    _put(root, "etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n")
    _put(root, "usr/sbin/sshd", _elf(guest.bits), 0o755)
    if guest.systemd:
        _put(root, "usr/lib/systemd/systemd", _elf(guest.bits), 0o755)
        _put(root, "usr/bin/systemctl", _elf(guest.bits), 0o755)
    _put(root, "usr/lib/systemd/system/ssh.service", "[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    (root / "etc/systemd/system").mkdir(parents=True)
    if guest.ssh_enabled:
        wants.mkdir()
        os.symlink("/lib/systemd/system/ssh.service", wants / "ssh.service")
    passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    if guest.login_user:
        passwd += "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n"
        (root / "home/alice").mkdir()
        if os.geteuid() == 0:
            os.chown(root / "home/alice", 1000, 1000)
    _put(root, "etc/passwd", passwd)
    _put(root, "etc/group", "root:x:0:\nalice:x:1000:\n")
    if guest.cloud_init:
        _put(root, "etc/cloud/cloud.cfg", "users:\n  - default\n")
        _put(root, "usr/bin/cloud-init", "#!/usr/bin/python3\n", 0o755)
    if guest.grub:
        console = " console=ttyS0" if guest.serial_console else ""
        root_arg = root_device if guest.grub_root_device else f"UUID={ROOT_UUID}"
        _put(root, "boot/grub/grub.cfg",
             "set default=0\nset timeout=5\nmenuentry 'Ubuntu' {\n\tinsmod ext2\n"
             f"\tlinux\t/boot/vmlinuz-{KERNEL} root={root_arg} ro quiet splash{console}\n"
             f"\tinitrd\t/boot/initrd.img-{KERNEL}\n}}\n")
        _put(root, "etc/default/grub", f'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX="{console.strip()}"\n' + ("GRUB_DISABLE_LINUX_UUID=true\n" if guest.grub_root_device else ""))
    _put(root, f"boot/vmlinuz-{KERNEL}", b"MZ" + bytes(510))
    if guest.payload_mib:
        _write_payload(root / "srv/payload.bin", guest.payload_mib)
    if guest.nvme:
        _put(root, f"usr/lib/modules/{KERNEL}/kernel/drivers/nvme/host/nvme.ko", _elf(guest.bits))
    if guest.ena:
        _put(root, f"usr/lib/modules/{KERNEL}/kernel/drivers/net/ethernet/amazon/ena/ena.ko", _elf(guest.bits))
    _put(root, f"usr/lib/modules/{KERNEL}/modules.builtin", "kernel/drivers/ata/libata.ko\n")
    early = [(f"usr/lib/modules/{KERNEL}/kernel/drivers/nvme/host/nvme.ko", _elf(guest.bits))] if guest.nvme else []
    _put(root, f"boot/initrd.img-{KERNEL}", newc_archive([("kernel/x86/microcode/GenuineIntel.bin", b"")]) + gzip.compress(newc_archive([("init", b"#!/bin/sh\n"), *early]), mtime=0))
    for rel, text in guest.extra_files:
        _put(root, rel, text)
    return root


def build_raw(path: Path, tree: Path, *, table: str = "dos", disk_mib: int = 352, fs_mib: int = 330, container: str = "ext4") -> Path:
    """A sparse raw disk at ``path``: a ``table`` (dos, gpt or none) with the root partition filled from ``tree``.

    ``container`` plants what the root partition holds instead of a plain ext4 (``lvm``, ``luks``).
    """
    with open(path, "wb") as handle:
        handle.truncate(disk_mib * MIB)
    if table == "dos":
        script, offset = "label: dos\nstart=2048, type=83, bootable\n", 1 * MIB
    elif table == "gpt":
        script, offset = "label: gpt\nstart=2048, size=16384, type=U\nstart=18432, type=L\n", 9 * MIB
    else:
        script, offset = "", 0
    if script:
        subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True, capture_output=True)
    if container == "ext4":
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-d", str(tree), "-E", f"offset={offset}", str(path), f"{fs_mib}M"],
            check=True, capture_output=True,
        )
    else:
        with open(path, "r+b") as handle:
            if container == "lvm":
                handle.seek(offset + 0x200)
                handle.write(b"LABELONE" + bytes(16) + b"LVM2 001")
            elif container == "luks":
                handle.seek(offset)
                handle.write(b"LUKS\xba\xbe\x00\x02")
    return path


def to_vdi(raw: Path, vdi: Path) -> Path:
    """Convert ``raw`` to a dynamic VDI, the format VirtualBox stores disks in."""
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vdi", str(raw), str(vdi)], check=True, capture_output=True)
    return vdi


def ovf_text(disk_name: str, capacity: int, *, name: str = "labvm", os_type: str = "Ubuntu_64") -> str:
    """An OVF 1.0 descriptor shaped like VirtualBox's export of a one-disk VM."""
    return ovf_multi_text([(name, disk_name, capacity)], os_type=os_type)


def ovf_multi_text(vms: list[tuple[str, str, int]], *, os_type: str = "Ubuntu_64") -> str:
    """An OVF 1.0 descriptor of one VM per ``(name, disk file, capacity)``, as VirtualBox exports several VMs.

    With more than one VM the systems sit in a ``VirtualSystemCollection``, each with its own disk.
    """
    references = "".join(f'    <File ovf:id="file{i}" ovf:href="{disk}"/>\n' for i, (_, disk, _) in enumerate(vms, 1))
    disks = "".join(
        f'    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:format="http://www.virtualbox.org/vdi" vbox:uuid="9b4c1c3e-0d7a-4f7e-8d1c-3a0b2f6e1d1{i}"/>\n'
        for i, (_, _, capacity) in enumerate(vms, 1)
    )
    systems = "".join(_virtual_system(name, f"vmdisk{i}", os_type) for i, (name, _, _) in enumerate(vms, 1))
    if len(vms) > 1:
        systems = f'  <VirtualSystemCollection ovf:id="appliance">\n    <Info>A collection of virtual machines</Info>\n{systems}  </VirtualSystemCollection>\n'
    return f"""<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
{references}  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
{disks}  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
{systems}</Envelope>
"""


def _virtual_system(name: str, disk_id: str, os_type: str) -> str:
    return f"""  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="94">
      <Info>The kind of installed guest operating system</Info>
      <Description>Ubuntu</Description>
      <vbox:OSType ovf:required="false">{os_type}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
      <Item><rasd:Caption>2 virtual CPU</rasd:Caption><rasd:Description>Number of virtual CPUs</rasd:Description><rasd:ElementName>2 virtual CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:Caption>2048 MB of memory</rasd:Caption><rasd:Description>Memory Size</rasd:Description><rasd:ElementName>2048 MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:Caption>sataController0</rasd:Caption><rasd:Description>SATA Controller</rasd:Description><rasd:ElementName>sataController0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:Caption>disk1</rasd:Caption><rasd:Description>Disk Image</rasd:Description><rasd:ElementName>disk1</rasd:ElementName><rasd:HostResource>/disk/{disk_id}</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
"""


def _capacity(disk: Path) -> int:
    info = subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True, check=True).stdout
    return int(info.split('"virtual-size":')[1].split(",")[0])


def make_ova(disk: Path, ova: Path, *, name: str = "labvm", os_type: str = "Ubuntu_64") -> Path:
    """Wrap ``disk`` and an OVF descriptor into ``ova`` (a plain tar with the .ovf first, as VirtualBox writes it)."""
    return make_multi_ova([(name, disk)], ova, os_type=os_type, ovf_name=f"{name}.ovf")


def make_multi_ova(vms: list[tuple[str, Path]], ova: Path, *, os_type: str = "Ubuntu_64", ovf_name: str | None = None) -> Path:
    """Wrap one disk per ``(VM name, disk)`` and a descriptor naming them all into ``ova``."""
    ovf = ova.with_suffix(".ovf.tmp")
    ovf.write_text(ovf_multi_text([(name, disk.name, _capacity(disk)) for name, disk in vms], os_type=os_type))
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as archive:
        archive.add(ovf, arcname=ovf_name or f"{ova.stem}.ovf")
        for _, disk in vms:
            archive.add(disk, arcname=disk.name)
    ovf.unlink()
    return ova


def build_ova(workdir: Path, guest: Guest = Guest(), *, table: str = "dos", name: str = "labvm", os_type: str = "Ubuntu_64", fs_mib: int = 330, container: str = "ext4") -> Path:
    """One call: tree, raw disk, VDI and OVA in ``workdir``; returns the .ova path."""
    workdir.mkdir(parents=True, exist_ok=True)
    root_device = "/dev/sda2" if table == "gpt" else "/dev/sda1"
    tree = build_tree(workdir / "tree", guest, root_device=root_device)
    raw = build_raw(workdir / "disk.raw", tree, table=table, fs_mib=fs_mib, container=container)
    vdi = to_vdi(raw, workdir / f"{name}-disk001.vdi")
    raw.unlink()
    ova = make_ova(vdi, workdir / f"{name}.ova", name=name, os_type=os_type)
    vdi.unlink()
    return ova


def build_disk(workdir: Path, guest: Guest = Guest(), *, file_name: str = "vm.raw", vdi: bool = False) -> Path:
    """A bare disk (raw, or VDI with ``vdi``) named ``file_name`` in ``workdir``, as a user may keep one."""
    workdir.mkdir(parents=True, exist_ok=True)
    tree = build_tree(workdir / f"tree-{file_name}", guest)
    if not vdi:
        return build_raw(workdir / file_name, tree)
    raw = build_raw(workdir / f"{file_name}.tmp.raw", tree)
    disk = to_vdi(raw, workdir / file_name)
    raw.unlink()
    return disk


def build_multi_ova(workdir: Path, guests: dict[str, Guest], *, name: str = "cluster") -> Path:
    """An appliance of one VM per ``{VM name: guest}``, each on its own disk; returns the .ova path."""
    workdir.mkdir(parents=True, exist_ok=True)
    disks = []
    for vm_name, guest in guests.items():
        tree = build_tree(workdir / f"tree-{vm_name}", guest)
        raw = build_raw(workdir / f"{vm_name}.raw", tree)
        disks.append((vm_name, to_vdi(raw, workdir / f"{vm_name}-disk001.vdi")))
        raw.unlink()
    ova = make_multi_ova(disks, workdir / f"{name}.ova")
    for _, disk in disks:
        disk.unlink()
    return ova
