"""A raw disk copy: its partition table, the filesystem in each partition, and file access.

File access uses e2fsprogs (``debugfs``, ``dumpe2fs``) on the raw file at the partition's byte
offset (``disk.raw?offset=N``, the unix I/O manager), not libguestfs. libguestfs boots a helper
appliance VM, which needs KVM or minutes of TCG emulation and a kernel image readable by the user;
e2fsprogs edits the filesystem directly, in milliseconds, with no VM, no root and no loop device,
and MBR and GPT disks both work because only the partition's offset matters (from
``sfdisk --json``). The cost: files can be read and edited on ext2/3/4 only; XFS and Btrfs roots
are recognised (EC2 boots them) but their files cannot be inspected here.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from d2c.errors import UsageError, WorkError

SECTOR = 512
ESP_TYPES = {"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "ef"}
_DEBUGFS_BANNER = re.compile(r"^debugfs \d")
_MAX_LINKS = 40


@dataclass(frozen=True)
class Partition:
    """One partition (or the whole disk when it has no table): where it lives and what it holds."""

    number: int
    offset: int
    size: int
    type: str
    filesystem: str


@dataclass(frozen=True)
class DiskLayout:
    """The partition table of a raw disk: ``gpt``, ``dos`` (MBR) or ``none``."""

    label: str
    partitions: tuple[Partition, ...]

    @property
    def has_esp(self) -> bool:
        """True when an EFI system partition is present (the disk boots with UEFI)."""
        return any(p.type.upper() in ESP_TYPES or p.type.lower() in ESP_TYPES for p in self.partitions)


def read_layout(raw: Path) -> DiskLayout:
    """Read the partition table of ``raw`` with sfdisk and probe each partition's filesystem."""
    result = subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        size = Path(raw).stat().st_size
        return DiskLayout("none", (Partition(1, 0, size, "", probe_filesystem(raw, 0)),))
    table = json.loads(result.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", SECTOR))
    parts = []
    for index, entry in enumerate(table.get("partitions", []), start=1):
        number = int(re.sub(r"^.*?(\d+)$", r"\1", entry.get("node", str(index))) or index)
        offset = int(entry["start"]) * sector
        parts.append(Partition(number, offset, int(entry["size"]) * sector, str(entry.get("type", "")), probe_filesystem(raw, offset)))
    return DiskLayout(table.get("label", "dos"), tuple(parts))


def probe_filesystem(raw: Path, offset: int) -> str:
    """Name the filesystem or container at ``offset`` from its superblock magic."""
    with open(raw, "rb") as handle:
        handle.seek(offset)
        head = handle.read(0x10100)
    if len(head) < 0x1000:
        return "unknown"
    if head[0x438:0x43A] == b"\x53\xef":
        compat, incompat = (int.from_bytes(head[0x400 + o : 0x404 + o], "little") for o in (0x5C, 0x60))
        if incompat & (0x40 | 0x80 | 0x200):
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"
    if head.startswith(b"XFSB"):
        return "xfs"
    if head[0x10040:0x10048] == b"_BHRfS_M":
        return "btrfs"
    if head.startswith(b"LUKS\xba\xbe"):
        return "luks"
    if head[0x200:0x208] == b"LABELONE" and head[0x218:0x220] == b"LVM2 001":
        return "lvm"
    if head[0xFF6:0x1000] == b"SWAPSPACE2":
        return "swap"
    if head[0x52:0x57] == b"FAT32" or head[0x36:0x39] == b"FAT":
        return "vfat"
    return "unknown"


def swap_uuid(raw: Path, offset: int) -> str:
    """The UUID of a Linux swap area (stored at byte 0x40C of its header)."""
    with open(raw, "rb") as handle:
        handle.seek(offset + 0x40C)
        data = handle.read(16).hex()
    return f"{data[:8]}-{data[8:12]}-{data[12:16]}-{data[16:20]}-{data[20:]}"


def debugfs_quote(path: str) -> str:
    """``path`` double-quoted for a debugfs command line; UsageError when it cannot be quoted safely.

    debugfs reads one command per line and has no escape for ``"``, so a guest file name holding a
    quote, a newline or another control character could end the argument and smuggle in a command
    of its own (in a ``-w`` session, one that edits the disk). Such a name is refused, never passed.
    """
    if '"' in path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise UsageError(
            f"guest file {path!r}: its name holds a quote or control character that d2c cannot pass to "
            "debugfs safely; rename or remove it in the VM and export again"
        )
    return f'"{path}"'


@dataclass(frozen=True)
class FileStat:
    """What debugfs says about one inode."""

    kind: str
    mode: int
    uid: int
    gid: int
    link_target: str | None


class ExtFilesystem:
    """An ext2/3/4 filesystem inside a raw disk file, read (and written when ``writable``) with debugfs."""

    def __init__(self, raw: Path, offset: int, *, writable: bool = False):
        self.raw = Path(raw)
        self.offset = offset
        self.writable = writable
        self._device = f"{self.raw}?offset={offset}"

    def _debugfs(self, *commands: str, write: bool = False) -> bytes:
        argv = ["debugfs"]
        if write:
            if not self.writable:
                raise WorkError(f"{self.raw}: opened read-only; refusing to write")
            argv.append("-w")
        argv += ["-f", "-", self._device]
        script = "".join(f"{c}\n" for c in commands).encode()
        result = subprocess.run(argv, input=script, capture_output=True)
        errors = [
            line for line in result.stderr.decode(errors="replace").splitlines()
            if line.strip() and not _DEBUGFS_BANNER.match(line)
        ]
        if result.returncode != 0 or errors:
            raise _DebugfsError("; ".join(errors) or f"debugfs exited with {result.returncode}")
        return result.stdout

    def _run_one(self, command: str) -> bytes:
        # debugfs echoes "debugfs: <command>" before the output of each command read from stdin.
        out = self._debugfs(command)
        marker = f"debugfs: {command}\n".encode()
        return out.split(marker, 1)[1] if marker in out else out

    def stat(self, path: str) -> FileStat | None:
        """The inode at ``path`` itself (a final symlink is not followed); None when absent."""
        try:
            text = self._run_one(f'stat {debugfs_quote(path)}').decode(errors="replace")
        except _DebugfsError:
            return None
        kind = re.search(r"Type: (\w+)", text)
        mode = re.search(r"Mode:\s+(\d+)", text)
        owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", text)
        if not (kind and mode and owner):
            return None
        target = None
        if kind.group(1) == "symlink":
            fast = re.search(r'Fast link dest: "(.*)"', text)
            target = fast.group(1) if fast else self._run_one(f'cat {debugfs_quote(path)}').decode(errors="replace")
        return FileStat(kind.group(1), int(mode.group(1), 8), int(owner.group(1)), int(owner.group(2)), target)

    def resolve(self, path: str) -> str:
        """``path`` with every symlink inside the guest followed (absolute links stay in the guest)."""
        parts = [p for p in PurePosixPath(path).parts if p != "/"]
        resolved: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name in (".", ""):
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join(resolved + [name])
            info = self.stat(candidate)
            if info is not None and info.kind == "symlink" and info.link_target is not None:
                hops += 1
                if hops > _MAX_LINKS:
                    return candidate
                target = PurePosixPath(info.link_target)
                if target.is_absolute():
                    resolved = []
                parts = [p for p in target.parts if p != "/"] + parts
                continue
            resolved.append(name)
        return "/" + "/".join(resolved)

    def read(self, path: str) -> bytes | None:
        """The bytes of the regular file at ``path`` (symlinks followed); None when absent."""
        real = self.resolve(path)
        info = self.stat(real)
        if info is None or info.kind != "regular":
            return None
        return self._run_one(f'cat {debugfs_quote(real)}')

    def read_text(self, path: str) -> str | None:
        """``read`` decoded as UTF-8 (undecodable bytes replaced)."""
        data = self.read(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        """True when ``path`` names anything once symlinks are followed."""
        return self.stat(self.resolve(path)) is not None

    def listdir(self, path: str) -> list[str]:
        """Names in the directory ``path`` (symlinks followed); empty when absent."""
        real = self.resolve(path)
        info = self.stat(real)
        if info is None or info.kind != "directory":
            return []
        names = []
        for line in self._run_one(f'ls -p {debugfs_quote(real)}').decode(errors="replace").splitlines():
            fields = line.split("/")
            if len(fields) >= 6 and fields[5] not in (".", ".."):
                names.append(fields[5])
        return sorted(names)

    def write_file(self, path: str, data: bytes, *, mode: int, uid: int, gid: int) -> None:
        """Create or replace the regular file ``path`` with ``data`` and the given owner and mode."""
        with tempfile.NamedTemporaryFile() as local:
            local.write(data)
            local.flush()
            commands = [f'rm {debugfs_quote(path)}'] if self.stat(path) is not None else []
            commands += [f'write {debugfs_quote(local.name)} {debugfs_quote(path)}', *self._owner_commands(path, 0o100000 | mode, uid, gid)]
            self._debugfs(*commands, write=True)

    def make_dir(self, path: str, *, mode: int, uid: int, gid: int) -> None:
        """Create the directory ``path`` with the given owner and mode."""
        self._debugfs(f'mkdir {debugfs_quote(path)}', *self._owner_commands(path, 0o040000 | mode, uid, gid), write=True)

    def make_symlink(self, path: str, target: str) -> None:
        """Create the symlink ``path`` pointing at ``target``."""
        self._debugfs(f'symlink {debugfs_quote(path)} {debugfs_quote(target)}', write=True)

    def remove(self, path: str) -> None:
        """Remove the file or symlink ``path``."""
        self._debugfs(f'rm {debugfs_quote(path)}', write=True)

    @staticmethod
    def _owner_commands(path: str, mode: int, uid: int, gid: int) -> list[str]:
        return [f'sif {debugfs_quote(path)} mode 0{mode:o}', f'sif {debugfs_quote(path)} uid {uid}', f'sif {debugfs_quote(path)} gid {gid}']

    def superblock(self) -> dict[str, str]:
        """The superblock fields ``dumpe2fs -h`` prints (UUID, free blocks, block size, ...)."""
        result = subprocess.run(["dumpe2fs", "-h", self._device], capture_output=True, text=True)
        if result.returncode != 0:
            raise UsageError(f"{self.raw}: the ext filesystem at byte {self.offset} is unreadable ({result.stderr.strip()[-200:]})")
        fields = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields

    def free_bytes(self) -> int:
        """Bytes free for unprivileged users (free blocks minus the root reserve)."""
        sb = self.superblock()
        free = int(sb.get("Free blocks", 0)) - int(sb.get("Reserved block count", 0))
        return max(free, 0) * int(sb.get("Block size", 4096))

    def uuid(self) -> str:
        """The filesystem UUID."""
        return self.superblock().get("Filesystem UUID", "")


class _DebugfsError(WorkError):
    """debugfs reported an error (a missing path when reading, a failed edit when writing)."""
