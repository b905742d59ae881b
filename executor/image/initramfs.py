"""What the kernel can load before the root is mounted: the members of an initramfs, and the drivers.

An initramfs is one or more cpio archives in the ``newc`` format (magic ``070701``, or ``070702``
with checksums) laid end to end, each optionally compressed; the kernel unpacks them in order
(https://docs.kernel.org/driver-api/early-userspace/buffer-format.html). Distributions put an
uncompressed archive with the CPU microcode first ("early microcode",
https://docs.kernel.org/arch/x86/microcode.html) and the main archive after it, compressed with
gzip, xz, zstd, lz4, bzip2 or lzma. Between archives and after the trailer there may be zero
padding. The names are read without unpacking anything to disk.

On a Nitro instance the root volume is an NVMe device, so the NVMe driver must be built into the
kernel (listed in ``modules.builtin``) or be in the initramfs the kernel boots with — a module on
the root filesystem is of no use before that filesystem is mounted
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/nvme-ebs-volumes.html). The ENA driver is
needed for the network only, after the root is mounted, so the module on the root filesystem is
enough (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/enhanced-networking-ena.html).
"""

from __future__ import annotations

import bz2
import lzma
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass

from executor.image.items import CheckItem

_NEWC = (b"070701", b"070702")
_HEADER = 110
_TRAILER = "TRAILER!!!"
_MAX_ARCHIVES = 64


class InitramfsError(ValueError):
    """The bytes are not an initramfs this module can read (unknown compression, torn archive)."""


@dataclass(frozen=True)
class BootEntry:
    """The kernel and initramfs the boot loader's first entry starts (paths as the loader sees them)."""

    kernel: str
    initrd: tuple[str, ...]

    @property
    def version(self) -> str:
        """The kernel release from the file name (``vmlinuz-6.1.0-18-amd64`` → ``6.1.0-18-amd64``)."""
        name = self.kernel.rsplit("/", 1)[-1]
        return re.sub(r"^(vmlinuz|vmlinux|bzImage|kernel)-?", "", name)


def default_entry(grub_cfg: str) -> BootEntry | None:
    """The first ``linux``/``initrd`` pair of a grub.cfg (the entry ``set default=0`` boots)."""
    kernel = re.search(r"^\s*linux(?:16|efi)?\s+(\S+)", grub_cfg, re.MULTILINE)
    if kernel is None:
        return None
    rest = grub_cfg[kernel.end():]
    initrd = re.search(r"^\s*initrd(?:16|efi)?\s+(.+)$", rest, re.MULTILINE)
    return BootEntry(kernel.group(1), tuple(initrd.group(1).split()) if initrd else ())


def _decompress(data: bytes) -> tuple[bytes, bytes]:
    """(decompressed stream, the bytes after it) for the compressed stream at the start of ``data``."""
    if data[:2] == b"\x1f\x8b":
        engine = zlib.decompressobj(31)
        return engine.decompress(data), engine.unused_data
    if data[:6] == b"\xfd7zXZ\x00":
        engine = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        return engine.decompress(data), engine.unused_data
    if data[:3] == b"\x5d\x00\x00":
        engine = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
        return engine.decompress(data), engine.unused_data
    if data[:3] == b"BZh":
        engine = bz2.BZ2Decompressor()
        return engine.decompress(data), engine.unused_data
    for magic, tool in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\x02\x21\x4c\x18", "lz4")):
        if data[:4] == magic:
            if shutil.which(tool) is None:
                raise InitramfsError(f"the initramfs is {tool}-compressed and the {tool} program is not installed")
            # The command-line tools stop at the end of the stream; what follows is the kernel's padding.
            result = subprocess.run([tool, "-dc", "-q"], input=data, capture_output=True)
            if not result.stdout:
                raise InitramfsError(f"{tool} could not read the initramfs ({result.stderr.decode(errors='replace').strip()[-200:]})")
            return result.stdout, b""
    raise InitramfsError(f"unknown initramfs compression (starts with {data[:6].hex()})")


def _read_cpio(data: bytes, pos: int, names: list[str]) -> int:
    """Append the names of the newc archive at ``pos`` to ``names``; return the position after its trailer."""
    while True:
        header = data[pos : pos + _HEADER]
        if len(header) < _HEADER or header[:6] not in _NEWC:
            raise InitramfsError(f"torn cpio archive at byte {pos}")
        size = int(header[54:62], 16)
        name_size = int(header[94:102], 16)
        name = data[pos + _HEADER : pos + _HEADER + name_size - 1].decode(errors="replace")
        pos = (pos + _HEADER + name_size + 3) & ~3
        pos = (pos + size + 3) & ~3
        if name == _TRAILER:
            return pos
        names.append(name)


def member_names(data: bytes) -> list[str]:
    """Every path in the initramfs ``data`` (all archives, compressed or not), in order."""
    names: list[str] = []
    pending = [data]
    archives = 0
    while pending:
        chunk = pending.pop(0)
        pos = 0
        while pos < len(chunk):
            while pos < len(chunk) and chunk[pos] == 0:
                pos += 1
            if pos >= len(chunk):
                break
            archives += 1
            if archives > _MAX_ARCHIVES:
                raise InitramfsError("more than 64 archives in one initramfs")
            if chunk[pos : pos + 6] in _NEWC:
                pos = _read_cpio(chunk, pos, names)
                continue
            inner, rest = _decompress(chunk[pos:])
            pending.insert(0, rest)
            pending.insert(0, inner)
            break
    return names


def has_module(names: list[str], module: str) -> bool:
    """True when a member is ``module`` (e.g. ``nvme/host/nvme.ko``), compressed or not."""
    pattern = re.compile(rf"(^|/){re.escape(module)}(\.xz|\.zst|\.gz)?$")
    return any(pattern.search(n) for n in names)


def driver_item(name: str, module: str, *, builtin: bool, in_initramfs: bool | None, on_disk: bool, kernel: str, initrd: str, needed_early: bool) -> CheckItem:
    """One driver's checklist line for the kernel the boot loader starts.

    ``in_initramfs`` is None when the kernel has no initramfs (then only a built-in driver works early).
    """
    short = module.rsplit("/", 1)[-1]
    if builtin:
        return CheckItem(name, "pass", f"built into {kernel}")
    if in_initramfs:
        return CheckItem(name, "pass", f"{short} in {initrd}")
    if on_disk and not needed_early:
        return CheckItem(name, "pass", f"{kernel} (module)")
    if on_disk:
        where = f"{initrd} lacks it" if in_initramfs is not None else f"{kernel} boots without an initramfs"
        return CheckItem(
            name, "fail",
            f"{short} is on the disk but {where}, so the kernel cannot mount its root from EC2's NVMe devices; "
            "in the VM add 'nvme' to /etc/initramfs-tools/modules (dracut: add_drivers+=\" nvme \") and rebuild the initramfs",
        )
    what = "EBS volumes on current instance types are NVMe devices" if needed_early else "current instance types network through ENA"
    return CheckItem(name, "fail", f"no kernel has it; {what} — install the distribution's cloud kernel (e.g. linux-aws)")
