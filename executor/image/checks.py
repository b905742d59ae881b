"""Is this VM ready for EC2? A checklist read from the guest's files, each item pass, fix or fail.

``inspect_disk`` finds the root filesystem on a raw copy; ``run_checks`` reads the guest's files
and returns one ``CheckItem`` per thing EC2 needs. An item that ``prepare`` can repair carries the
exact edits (file, before, after) that would repair it, so the checklist and the edits never
disagree; a failing item means nothing may be uploaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from d2c.errors import UsageError
from executor.image.disk import DiskLayout, ExtFilesystem, Partition, read_layout, swap_uuid
from executor.image.initramfs import InitramfsError, default_entry, driver_item, has_module, member_names
from executor.image.items import CheckItem, Edit
from executor.image.kernel_cmdline import DEFAULTS, RESUME_CONF, cmdline_item
from executor.image.network import network_item

MIN_FREE_BYTES = 250 * 2**20
EXT_TYPES = ("ext2", "ext3", "ext4")
BOOTABLE_TYPES = EXT_TYPES + ("xfs", "btrfs")
SERIAL_ARGS = "console=tty0 console=ttyS0,115200n8"
_DEVICE = re.compile(r"^/dev/(?:(?:sd|hd|vd|xvd)([a-z])|nvme(\d+)n1p)(\d+)$")
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
NVME_MODULE = "drivers/nvme/host/nvme.ko"
ENA_MODULE = "drivers/net/ethernet/amazon/ena/ena.ko"
_NO_LOGIN = ("nologin", "false", "sync", "halt", "shutdown")


@dataclass(frozen=True)
class LoginUser:
    """The account d2c logs in as: the first human user with a shell and a home."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class CheckReport:
    """The whole checklist for one image and the facts import needs (architecture, boot mode)."""

    image: Path
    items: tuple[CheckItem, ...]
    arch: str = "x86_64"
    boot_mode: str = "legacy-bios"
    login_user: LoginUser | None = None
    root_offset: int | None = None

    @property
    def failures(self) -> tuple[CheckItem, ...]:
        """The items that stop the image from being imported."""
        return tuple(i for i in self.items if i.status == "fail")

    @property
    def ok(self) -> bool:
        """True when nothing fails (fixes are allowed: prepare applies them)."""
        return not self.failures

    def edits(self) -> list[Edit]:
        """Every edit the fixable items need, in checklist order."""
        return [edit for item in self.items for edit in item.edits]


@dataclass
class Inspection:
    """A raw disk opened for checking: its layout, the root partition and (on ext) its files."""

    raw: Path
    layout: DiskLayout
    root: Partition | None
    fs: ExtFilesystem | None
    os_type: str = ""
    boot_fs: list[ExtFilesystem] = field(default_factory=list)


def inspect_disk(raw: Path, *, os_type: str = "", writable: bool = False) -> Inspection:
    """Find the root filesystem on the raw disk ``raw`` (the ext partition holding /etc/fstab)."""
    layout = read_layout(raw)
    ext_parts = [p for p in layout.partitions if p.filesystem in EXT_TYPES]
    filesystems = [(p, ExtFilesystem(raw, p.offset, writable=writable)) for p in ext_parts]
    for part, fs in filesystems:
        if fs.stat("/etc/fstab") is not None or fs.stat("/etc/passwd") is not None:
            return Inspection(raw, layout, part, fs, os_type, [f for _, f in filesystems])
    other = next((p for p in layout.partitions if p.filesystem in ("xfs", "btrfs")), None)
    return Inspection(raw, layout, other, None, os_type, [f for _, f in filesystems])


def run_checks(insp: Inspection, image: Path) -> CheckReport:
    """Run the whole checklist on an inspected disk."""
    boot_mode = "uefi" if insp.layout.label == "gpt" and insp.layout.has_esp else "legacy-bios"
    root_item = _root_item(insp)
    if root_item.status == "fail":
        return CheckReport(image, (root_item,), boot_mode=boot_mode)
    if insp.fs is None:
        files = CheckItem("guest files", "fail", f"d2c edits ext2/3/4 roots only (e2fsprogs); this {insp.root.filesystem} root cannot be inspected or prepared")
        return CheckReport(image, (root_item, files), boot_mode=boot_mode)
    fs = insp.fs
    arch_item, arch = _arch_item(fs, insp.os_type)
    cmdline, after_cmdline = _cmdline_item(insp)
    user_item, user = _login_user_item(fs)
    items = (
        root_item,
        arch_item,
        _grub_item(insp),
        _free_space_item(fs),
        _fstab_item(insp),
        network_item(fs, cloud_init=_has_cloud_init(fs)),
        _mac_rules_item(fs),
        _sshd_item(fs),
        user_item,
        _cloud_init_item(fs),
        *_driver_items(insp),
        cmdline,
        _serial_item(fs, after_cmdline),
    )
    return CheckReport(image, items, arch=arch, boot_mode=boot_mode, login_user=user, root_offset=insp.root.offset)


def _root_item(insp: Inspection) -> CheckItem:
    kinds = {p.filesystem for p in insp.layout.partitions}
    if insp.root is not None:
        return CheckItem("root filesystem", "pass", f"{insp.root.filesystem} on partition {insp.root.number} ({insp.layout.label} table)")
    if "luks" in kinds:
        return CheckItem("root filesystem", "fail", "the root is encrypted (LUKS); EC2 cannot unlock it at boot — decrypt it in the VM first")
    if "lvm" in kinds:
        return CheckItem("root filesystem", "fail", "the root is on LVM, which d2c cannot edit; move it to a plain ext4 partition")
    return CheckItem("root filesystem", "fail", f"no ext2/3/4, XFS or Btrfs root found (partitions hold: {', '.join(sorted(kinds)) or 'nothing'})")


def _arch_item(fs: ExtFilesystem, os_type: str) -> tuple[CheckItem, str]:
    for probe in ("/bin/sh", "/usr/bin/env", "/sbin/init"):
        head = fs.read(probe)
        if head and head[:4] == b"\x7fELF" and len(head) >= 20:
            machine = int.from_bytes(head[18:20], "little")
            if head[4] == 2 and machine in (0x3E, 0xB7):
                arch = "x86_64" if machine == 0x3E else "arm64"
                return CheckItem("64-bit", "pass", f"{probe} is a 64-bit {arch} program"), arch
            return CheckItem("64-bit", "fail", f"{probe} is a 32-bit program; EC2 runs 64-bit (x86_64, arm64) guests only"), "i386"
    if fs.exists("/lib64"):
        return CheckItem("64-bit", "pass", "/lib64 is present"), "x86_64"
    if os_type.endswith("_64"):
        return CheckItem("64-bit", "pass", f"VirtualBox OS type {os_type}"), "x86_64"
    return CheckItem("64-bit", "fail", f"no 64-bit programs found and OS type {os_type or 'unknown'} is 32-bit"), "i386"


def _grub_item(insp: Inspection) -> CheckItem:
    for fs in insp.boot_fs:
        prefix = "/boot" if fs is insp.fs else ""
        for path, kind in ((f"{prefix}/grub/grub.cfg", "GRUB 2"), (f"{prefix}/grub2/grub.cfg", "GRUB 2"), (f"{prefix}/grub/menu.lst", "GRUB legacy")):
            if fs.stat(path) is not None:
                return CheckItem("boot loader", "pass", f"{kind} ({path})")
    return CheckItem("boot loader", "fail", "no GRUB configuration (/boot/grub/grub.cfg); EC2 boots Linux through GRUB")


def _free_space_item(fs: ExtFilesystem) -> CheckItem:
    free = fs.free_bytes()
    if free >= MIN_FREE_BYTES:
        return CheckItem("free space", "pass", f"{free / 2**20:.0f} MiB free")
    return CheckItem("free space", "fail", f"{free / 2**20:.0f} MiB free, EC2 needs 250 MiB; free space in the VM or grow its disk, then export again")


def _partition_uuids(insp: Inspection) -> dict[int, str]:
    uuids = {}
    for part in insp.layout.partitions:
        if part.filesystem in EXT_TYPES:
            uuids[part.number] = ExtFilesystem(insp.raw, part.offset).uuid()
        elif part.filesystem == "swap":
            uuids[part.number] = swap_uuid(insp.raw, part.offset)
    return uuids


def _fstab_item(insp: Inspection) -> CheckItem:
    """Device-name lines of fstab by UUID: the line mounted at ``/`` gets the root's, others their partition's."""
    text = insp.fs.read_text("/etc/fstab")
    if text is None:
        return CheckItem("fstab", "fail", "/etc/fstab is missing")
    if not any(_DEVICE.match(line.split()[0]) for line in text.splitlines() if line.split() and not line.startswith("#")):
        return CheckItem("fstab", "pass", "mounts by UUID or LABEL")
    uuids = _partition_uuids(insp)
    lines = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        match = _DEVICE.match(fields[0]) if fields and not line.startswith("#") else None
        first_disk = match is not None and (match.group(1) or "a") == "a" and (match.group(2) or "0") == "0"
        if match is None:
            lines.append(line)
        elif len(fields) > 1 and fields[1] == "/":
            lines.append(line.replace(fields[0], f"UUID={uuids[insp.root.number]}", 1))
        elif first_disk and int(match.group(3)) in uuids:
            lines.append(line.replace(fields[0], f"UUID={uuids[int(match.group(3))]}", 1))
        else:
            options = fields[3] if len(fields) > 3 else "defaults"
            lines.append(line.replace(options, options + ",nofail", 1) if "nofail" not in options else line)
    after = "".join(lines)
    edit = Edit("/etc/fstab", text, after, "device names change on EC2 (sda becomes nvme0n1); mount by UUID, other disks nofail")
    return CheckItem("fstab", "fix", "mounts by device name (/dev/sdX); will mount by UUID", (edit,))


def _grub_cfg(fs: ExtFilesystem) -> str | None:
    return next((p for p in GRUB_CFGS if fs.stat(p) is not None), None)


def _cmdline_item(insp: Inspection) -> tuple[CheckItem, dict[str, str]]:
    """The kernel command line item, and grub.cfg and /etc/default/grub as they read after its edits."""
    fs = insp.fs
    grub_cfg = _grub_cfg(fs)
    files = {path: fs.read_text(path) for path in (grub_cfg, DEFAULTS, RESUME_CONF) if path}
    item = cmdline_item(files, grub_cfg, _partition_uuids(insp))
    texts = {path: text for path, text in files.items() if text is not None}
    texts.update({edit.path: edit.after for edit in item.edits})
    return item, texts


def _driver_items(insp: Inspection) -> tuple[CheckItem, CheckItem]:
    """The NVMe and ENA drivers of the kernel the boot loader starts (built in, in its initramfs, on disk)."""
    fs = insp.fs
    grub_cfg = _grub_cfg(fs)
    entry = default_entry(fs.read_text(grub_cfg) or "") if grub_cfg else None
    kernels = fs.listdir("/lib/modules")
    kernel = entry.version if entry and entry.version in kernels else (kernels[-1] if kernels else "")
    base = f"/lib/modules/{kernel}"
    builtin = fs.read_text(f"{base}/modules.builtin") or ""
    listed = fs.read_text(f"{base}/modules.dep") or ""
    initrd = _initrd_path(insp, entry, kernel)
    names: list[str] | None = None
    unreadable = ""
    if initrd is not None:
        try:
            names = member_names(_read_boot_file(insp, initrd) or b"")
        except InitramfsError as exc:
            unreadable = f"{initrd}: {exc}; d2c cannot tell whether the kernel can mount an NVMe root"

    def item(name: str, module: str, early: bool) -> CheckItem:
        folder, filename = module.rsplit("/", 1)
        on_disk = any(n.startswith(filename) for n in fs.listdir(f"{base}/kernel/{folder}")) or f"/{filename}" in listed
        return driver_item(
            name, module, builtin=f"kernel/{module}" in builtin, in_initramfs=None if names is None else has_module(names, module),
            on_disk=on_disk, kernel=kernel or "no kernel", initrd=initrd or "", needed_early=early,
        )

    nvme = CheckItem("NVMe driver", "fail", unreadable) if unreadable else item("NVMe driver", NVME_MODULE, True)
    return nvme, item("ENA driver", ENA_MODULE, False)


def _initrd_path(insp: Inspection, entry, kernel: str) -> str | None:
    """The initramfs the default entry loads (the last of its initrd files), else the kernel's usual one."""
    candidates = list(reversed(entry.initrd)) if entry else []
    candidates += [f"/boot/initrd.img-{kernel}", f"/boot/initramfs-{kernel}.img"]
    return next((p for p in candidates if _read_boot_stat(insp, p)), None)


def _boot_locations(insp: Inspection, path: str):
    """(filesystem, path) pairs where a path as GRUB names it may live: the root, or a separate /boot."""
    yield insp.fs, path
    if not path.startswith("/boot/"):
        yield insp.fs, f"/boot{path}"
    for fs in insp.boot_fs:
        if fs is not insp.fs:
            yield fs, path.removeprefix("/boot")


def _read_boot_stat(insp: Inspection, path: str) -> bool:
    return any(fs.exists(p) for fs, p in _boot_locations(insp, path))


def _read_boot_file(insp: Inspection, path: str) -> bytes | None:
    for fs, candidate in _boot_locations(insp, path):
        data = fs.read(candidate)
        if data is not None:
            return data
    return None


def _mac_rules_item(fs: ExtFilesystem) -> CheckItem:
    edits = []
    for name in fs.listdir("/etc/udev/rules.d"):
        path = f"/etc/udev/rules.d/{name}"
        text = fs.read_text(path) or ""
        if "persistent-net" in name or ('SUBSYSTEM=="net"' in text and "ATTR{address}" in text):
            edits.append(Edit(path, text, None, "the rule names interfaces by VirtualBox's MAC address, which EC2 does not have"))
    if not edits:
        return CheckItem("MAC-pinned rules", "pass", "no udev rule pins interface names to MAC addresses")
    return CheckItem("MAC-pinned rules", "fix", f"{', '.join(e.path for e in edits)} pins names to MAC addresses; will be removed", tuple(edits))


def _sshd_item(fs: ExtFilesystem) -> CheckItem:
    if not (fs.exists("/usr/sbin/sshd") or fs.exists("/sbin/sshd")):
        return CheckItem("sshd", "fail", "OpenSSH server is not installed; install openssh-server in the VM")
    wants = "/etc/systemd/system/multi-user.target.wants"
    for unit in ("ssh.service", "sshd.service"):
        if fs.stat(f"{wants}/{unit}") is not None:
            return CheckItem("sshd", "pass", f"enabled ({wants}/{unit})")
    if any("ssh" in name for name in fs.listdir("/etc/rc2.d") if name.startswith("S")):
        return CheckItem("sshd", "pass", "enabled (/etc/rc2.d)")
    for unit in ("ssh.service", "sshd.service"):
        for folder in ("/lib/systemd/system", "/usr/lib/systemd/system"):
            if fs.exists(f"{folder}/{unit}"):
                why = "sshd must start at boot for d2c to log in"
                edits = (*missing_parents(fs, f"{wants}/{unit}", why), Edit(f"{wants}/{unit}", None, f"{folder}/{unit}", why, kind="symlink"))
                return CheckItem("sshd", "fix", f"installed but not enabled; will enable {unit}", edits)
    return CheckItem("sshd", "fail", "sshd is installed but has no systemd unit to enable; enable it in the VM")


def missing_parents(fs: ExtFilesystem, path: str, reason: str) -> list[Edit]:
    """Edits creating the folders above guest ``path`` that do not exist yet, outermost first (root, 0755)."""
    edits = []
    for parent in reversed(PurePosixPath(path).parents):
        if str(parent) != "/" and fs.stat(fs.resolve(str(parent))) is None:
            edits.append(Edit(str(parent), None, "", reason, kind="dir", mode=0o755))
    return edits


def _login_user_item(fs: ExtFilesystem) -> tuple[CheckItem, LoginUser | None]:
    for line in (fs.read_text("/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[2].isdigit():
            continue
        uid = int(fields[2])
        if uid < 1000 or uid == 65534 or PurePosixPath(fields[6]).name in _NO_LOGIN:
            continue
        if fs.exists(fields[5]):
            user = LoginUser(fields[0], uid, int(fields[3]) if fields[3].isdigit() else uid, fields[5])
            return CheckItem("login user", "pass", f"{user.name} (uid {uid}, home {user.home})"), user
    return CheckItem("login user", "fail", "no user with a login shell and a home folder in /etc/passwd; create one in the VM"), None


def _has_cloud_init(fs: ExtFilesystem) -> bool:
    return fs.exists("/etc/cloud/cloud.cfg") or fs.exists("/usr/bin/cloud-init")


def _cloud_init_item(fs: ExtFilesystem) -> CheckItem:
    if _has_cloud_init(fs):
        return CheckItem("cloud-init", "info", "present: EC2 passes the host name and key pair through it")
    return CheckItem("cloud-init", "info", "absent: d2c writes the run's key into the login user's authorized_keys")


def _serial_item(fs: ExtFilesystem, texts: dict[str, str]) -> CheckItem:
    """console=ttyS0 on the kernel command line; ``texts`` holds grub.cfg and /etc/default/grub as earlier items leave them."""
    path = _grub_cfg(fs)
    if path is None:
        return CheckItem("serial console", "info", "no grub.cfg on the root filesystem to edit")
    text = texts.get(path, "")
    if "console=ttyS0" in text:
        return CheckItem("serial console", "pass", f"console=ttyS0 in {path}")
    after = re.sub(r"^(\s*linux(?:16|efi)?\s+\S+.*?)\s*$", rf"\1 {SERIAL_ARGS}", text, flags=re.MULTILINE)
    edits = [Edit(path, text, after, "EC2's serial console and get-console-output read ttyS0")]
    defaults = texts.get(DEFAULTS)
    if defaults is not None and "console=ttyS0" not in defaults:
        new = re.sub(r'^GRUB_CMDLINE_LINUX="(.*)"', lambda m: f'GRUB_CMDLINE_LINUX="{(m.group(1) + " " + SERIAL_ARGS).strip()}"', defaults, flags=re.MULTILINE)
        edits.append(Edit(DEFAULTS, defaults, new, "keeps the console setting when update-grub runs later"))
    return CheckItem("serial console", "fix", f"not on; will add {SERIAL_ARGS} to the kernel command line", tuple(edits))


def check_raw(raw: Path, image: Path, *, os_type: str = "") -> CheckReport:
    """Inspect the raw copy of ``image`` and run the checklist; UsageError if the disk is unreadable."""
    if not Path(raw).is_file():
        raise UsageError(f"{image}: no converted disk to check")
    return run_checks(inspect_disk(raw, os_type=os_type), image)
