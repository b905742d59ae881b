"""Preparing a copy: every fix applied and recorded, read back from the converted disk; the original untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from d2c.errors import UsageError
from executor.image.checks import check_raw, inspect_disk
from executor.image.convert import convert
from executor.image.prepare import check_image, prepare_image
from executor.image.source import DiskRef
from tests.image_builder import Guest, build_disk, ovf_text

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd2Y3J1bnRlc3RrZXkwMTIzNDU2Nzg5YWJjZGVm d2c-run-test"


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def prepared(ubuntu_ova, tmp_path_factory):
    before = _sha256(ubuntu_ova)
    result = prepare_image(ubuntu_ova, tmp_path_factory.mktemp("prepared"), public_key=KEY)
    return before, result


def test_the_original_image_is_byte_identical_afterwards(ubuntu_ova, prepared):
    before, _ = prepared
    assert _sha256(ubuntu_ova) == before


def test_every_edit_is_in_the_manifest_with_before_and_after(prepared):
    _, result = prepared
    manifest = json.loads(result.manifest.read_text())
    by_file = {e["file"]: e for e in manifest["edits"]}
    assert manifest["version"] == 1
    assert set(by_file) == {
        "/etc/fstab", "/etc/netplan/00-installer-config.yaml", "/etc/udev/rules.d/70-persistent-net.rules",
        "/boot/grub/grub.cfg", "/etc/default/grub", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys",
    }
    assert by_file["/etc/udev/rules.d/70-persistent-net.rules"]["after"] is None
    assert "08:00:27:aa:bb:cc" in by_file["/etc/udev/rules.d/70-persistent-net.rules"]["before"]
    assert by_file["/home/alice/.ssh/authorized_keys"]["before"] is None
    assert by_file["/home/alice/.ssh/authorized_keys"]["after"] == KEY + "\n"
    assert "192.168.56.10/24" in by_file["/etc/netplan/00-installer-config.yaml"]["before"]
    assert all(e["reason"] for e in manifest["edits"])


def test_edits_read_back_from_the_converted_disk(prepared, tmp_path):
    _, result = prepared
    vmdk = convert(DiskRef(result.raw, "raw"), tmp_path / "disk.vmdk", fmt="vmdk")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vmdk)], capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vmdk" and info["format-specific"]["data"]["create-type"] == "streamOptimized"
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(back)], check=True)
    fs = inspect_disk(back).fs
    assert fs.read_text("/etc/fstab").splitlines()[1] == "UUID=3f5b9a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b / ext4 errors=remount-ro 0 1"
    netplan = fs.read_text("/etc/netplan/00-installer-config.yaml")
    assert "dhcp4: true" in netplan and "192.168.56.10" not in netplan
    assert fs.stat("/etc/udev/rules.d/70-persistent-net.rules") is None
    assert "console=ttyS0,115200n8" in fs.read_text("/boot/grub/grub.cfg")
    assert 'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"' in fs.read_text("/etc/default/grub")
    keys = fs.stat("/home/alice/.ssh/authorized_keys")
    ssh_dir = fs.stat("/home/alice/.ssh")
    assert fs.read_text("/home/alice/.ssh/authorized_keys") == KEY + "\n"
    assert (keys.mode & 0o7777, keys.uid, keys.gid) == (0o600, 1000, 1000)
    assert (ssh_dir.kind, ssh_dir.mode & 0o7777, ssh_dir.uid) == ("directory", 0o700, 1000)


def test_the_prepared_filesystem_is_clean_and_passes_every_check(prepared, ubuntu_ova):
    _, result = prepared
    insp = inspect_disk(result.raw)
    fsck = subprocess.run(["e2fsck", "-fn", f"{result.raw}?offset={insp.root.offset}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    report = check_raw(result.raw, ubuntu_ova)
    assert report.ok and report.edits() == []


def test_sshd_enabled_and_ifupdown_switched_to_dhcp(vm_image, tmp_path):
    guest = Guest(ssh_enabled=False, netplan_static=False, ifupdown_static=True)
    result = prepare_image(vm_image("ssh-off-ifupdown", guest=guest), tmp_path)
    fs = inspect_disk(result.raw).fs
    link = fs.stat("/etc/systemd/system/multi-user.target.wants/ssh.service")
    assert (link.kind, link.link_target) == ("symlink", "/lib/systemd/system/ssh.service")
    interfaces = fs.read_text("/etc/network/interfaces")
    assert interfaces == "auto lo\niface lo inet loopback\n\nauto /e*/1=primary\niface primary inet dhcp\n"


def test_prepare_into_the_images_own_folder_keeps_the_original(tmp_path):
    disk = build_disk(tmp_path, file_name="vm.raw")
    before = _sha256(disk)
    result = prepare_image(disk, tmp_path)
    assert result.raw == tmp_path / "vm.prepared.raw" and result.raw.is_file()
    assert _sha256(disk) == before
    assert inspect_disk(disk).fs.read_text("/etc/fstab").splitlines()[1].startswith("/dev/sda1 /")


def test_a_failing_image_in_its_own_folder_is_not_deleted(tmp_path):
    disk = build_disk(tmp_path, Guest(bits=32), file_name="vm.raw")
    before = _sha256(disk)
    with pytest.raises(UsageError, match="not ready for EC2 — 64-bit"):
        prepare_image(disk, tmp_path)
    assert _sha256(disk) == before
    assert not (tmp_path / "vm.prepared.raw").exists()


@pytest.mark.parametrize("kind, disk_name", [("ovf", "labvm.prepared.raw"), ("disk", "manifest.json")])
def test_an_output_that_is_one_of_the_images_files_is_refused_before_writing(tmp_path, kind, disk_name):
    disk = build_disk(tmp_path, file_name=disk_name)
    image = disk
    if kind == "ovf":
        image = tmp_path / "appliance.ovf"
        image.write_text(ovf_text(disk.name, disk.stat().st_size))
    before = _sha256(disk)
    with pytest.raises(UsageError, match=rf"{disk_name}: writing here would overwrite the image's own file"):
        prepare_image(image, tmp_path)
    assert _sha256(disk) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted({disk_name, image.name})


def test_checking_creates_no_state_folder(ubuntu_ova, tmp_path, monkeypatch):
    home = tmp_path / "project" / ".d2c"
    monkeypatch.setenv("D2C_HOME", str(home))
    assert check_image(ubuntu_ova).ok
    assert not (tmp_path / "project").exists()
    home.mkdir(parents=True)
    (home / "keep.txt").write_text("x")
    check_image(ubuntu_ova)
    assert [p.name for p in home.iterdir()] == ["keep.txt"]


def test_a_failing_image_is_refused_and_leaves_nothing(vm_image, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"labvm\.ova: not ready for EC2 — 64-bit: /bin/sh is a 32-bit program"):
        prepare_image(vm_image("i386", guest=Guest(bits=32), os_type="Ubuntu"), out)
    assert list(out.iterdir()) == []


@pytest.mark.root
def test_no_space_for_the_copy_is_a_usage_error_naming_the_image(ubuntu_ova, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.strip()}")
    try:
        with pytest.raises(UsageError, match=r"labvm\.ova: converting needs .* GiB free in .*small but only 0\.01 GiB is"):
            prepare_image(ubuntu_ova, small)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
