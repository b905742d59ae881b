"""The kernel command line's ``root=`` and ``resume=`` by UUID, in grub.cfg and /etc/default/grub.

On a Nitro instance the root volume is an NVMe device (``/dev/nvme0n1``), so a command line that
names ``root=/dev/sda1`` leaves the initramfs waiting for a device that never appears
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/nvme-ebs-volumes.html: "EBS volumes are
exposed as NVMe block devices"; device names in the block device mapping are not the names the
guest sees). Every ``root=``/``resume=`` naming a partition of this disk is rewritten to
``UUID=<filesystem or swap UUID>``. ``/etc/default/grub`` gets the same change, and
``GRUB_DISABLE_LINUX_UUID=true`` (which makes update-grub write device names again) becomes
``false``, so the next update-grub inside the instance keeps the fix. initramfs-tools' resume
file (``/etc/initramfs-tools/conf.d/resume``) is rewritten likewise for the next update-initramfs.
"""

from __future__ import annotations

import re

from executor.image.items import CheckItem, Edit

ITEM = "kernel command line"
DEFAULTS = "/etc/default/grub"
RESUME_CONF = "/etc/initramfs-tools/conf.d/resume"
_ARG = re.compile(r"\b(root|resume)=(/dev/(?:sd|hd|vd|xvd)[a-z]\d+|/dev/nvme\d+n\d+p\d+)(?=\s|\"|'|$)")
_WHY = "EC2 shows the root volume as an NVMe device (nvme0n1), not by the name the VM used; the kernel finds it by UUID"


def device_names(uuids: dict[int, str]) -> dict[str, str]:
    """Every name the first disk's partition ``n`` may have had in the VM, mapped to its UUID."""
    names = {}
    for number, uuid in uuids.items():
        for prefix in ("/dev/sda", "/dev/hda", "/dev/vda", "/dev/xvda", "/dev/nvme0n1p"):
            names[f"{prefix}{number}"] = uuid
    return names


def _rewrite(text: str, names: dict[str, str], unknown: list[str]) -> str:
    def replace(match: re.Match) -> str:
        uuid = names.get(match.group(2))
        if uuid is None:
            unknown.append(f"{match.group(1)}={match.group(2)}")
            return match.group(0)
        return f"{match.group(1)}=UUID={uuid}"

    return _ARG.sub(replace, text)


def cmdline_item(files: dict[str, str | None], grub_cfg: str | None, uuids: dict[int, str]) -> CheckItem:
    """The checklist item for ``root=``/``resume=``; ``files`` maps guest paths to their text (None: absent)."""
    names = device_names(uuids)
    unknown: list[str] = []
    edits = []
    found = []
    targets = [p for p in (grub_cfg, DEFAULTS, RESUME_CONF) if p]
    for path in targets:
        text = files.get(path)
        if text is None:
            continue
        lines = []
        for line in text.splitlines(keepends=True):
            kernel_line = path != grub_cfg or re.match(r"\s*linux(16|efi)?\s", line)
            if path == RESUME_CONF:
                line = re.sub(r"^(RESUME=)(/dev/\S+)", lambda m: f"{m.group(1)}UUID={names[m.group(2)]}" if m.group(2) in names else m.group(0), line)
            elif kernel_line:
                found += [m.group(0) for m in _ARG.finditer(line)]
                line = _rewrite(line, names, unknown)
            if path == DEFAULTS:
                line = re.sub(r"^(\s*GRUB_DISABLE_LINUX_UUID\s*=\s*)[\"']?true[\"']?", r"\1false", line)
            lines.append(line)
        after = "".join(lines)
        if after != text:
            why = _WHY if path != DEFAULTS else _WHY + "; keeps it when update-grub runs later (GRUB_DISABLE_LINUX_UUID=false)"
            edits.append(Edit(path, text, after, why))
    if unknown:
        return CheckItem(ITEM, "fail", f"{', '.join(sorted(set(unknown)))} names a disk that is not this image's; boot the VM from its first disk or use root=UUID=")
    if edits:
        named = ", ".join(sorted(set(found))) or "GRUB_DISABLE_LINUX_UUID=true"
        return CheckItem(ITEM, "fix", f"{named} by device name; will use UUID=", tuple(edits))
    return CheckItem(ITEM, "pass", "root= by UUID (or left to the boot loader)")
