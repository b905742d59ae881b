"""Network, kernel command line and initramfs checks: each binding to a VirtualBox name is found and fixed on the disk."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess

import pytest

from executor.image.checks import inspect_disk
from executor.image.initramfs import InitramfsError, member_names
from executor.image.prepare import check_image, prepare_image
from tests.image_builder import Guest, newc_archive

INTERFACES_D = (
    ("etc/network/interfaces", "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n"),
    ("etc/network/interfaces.d/enp0s3", "# The primary network interface\nallow-hotplug enp0s3\niface enp0s3 inet dhcp\n"),
    ("usr/sbin/ifup", "#!/bin/sh\n"),
    ("usr/sbin/dhclient", "#!/bin/sh\n"),
)


def _items(report):
    return {item.name: item for item in report.items}


def test_netplan_without_match_is_fixed_to_match_any_e_name(vm_image, tmp_path):
    ova = vm_image("netplan-unmatched", guest=Guest(netplan_static=False, netplan_unmatched=True))
    item = _items(check_image(ova))["network (DHCP)"]
    assert item.status == "fix" and "enp0s3 has no match, so it binds the name enp0s3" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    text = fs.read_text("/etc/netplan/00-installer-config.yaml")
    assert "enp0s3" not in text and "match:\n        name: e*\n      dhcp4: true" in text


def test_a_literal_name_dhcp_stanza_in_interfaces_d_is_replaced_by_a_pattern(vm_image, tmp_path):
    guest = Guest(netplan_static=False, extra_files=INTERFACES_D)
    ova = vm_image("interfaces-d", guest=guest)
    item = _items(check_image(ova))["network (DHCP)"]
    assert item.status == "fix" and "ifupdown binds enp0s3" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    assert fs.read_text("/etc/network/interfaces.d/enp0s3") == "# The primary network interface\n"
    main = fs.read_text("/etc/network/interfaces")
    assert main.startswith("source /etc/network/interfaces.d/*\n") and main.endswith("auto /e*/1=primary\niface primary inet dhcp\n")


def test_ifupdown_without_a_dhcp_client_fails_naming_the_package(vm_image):
    ova = vm_image("no-dhclient", guest=Guest(netplan_static=False, ifupdown_static=True, dhcp_client=False))
    report = check_image(ova)
    item = _items(report)["network (DHCP)"]
    assert not report.ok and item.status == "fail" and "install isc-dhcp-client" in item.reason


def test_root_by_device_in_grub_cfg_and_default_grub_becomes_uuid(vm_image, tmp_path):
    ova = vm_image("grub-sda1", guest=Guest(grub_root_device=True))
    item = _items(check_image(ova))["kernel command line"]
    assert item.status == "fix" and "root=/dev/sda1" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    grub = fs.read_text("/boot/grub/grub.cfg")
    assert "root=UUID=3f5b9a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b ro quiet splash console=tty0 console=ttyS0,115200n8" in grub
    assert "/dev/sda1" not in grub
    assert "GRUB_DISABLE_LINUX_UUID=false" in fs.read_text("/etc/default/grub")


def test_fstab_root_is_found_by_mount_point_not_partition_number(vm_image, tmp_path):
    fstab = "/dev/sda3 / ext4 errors=remount-ro 0 1\n/dev/sdb1 /data ext4 defaults 0 2\n"
    ova = vm_image("fstab-sda3", guest=Guest(extra_files=(("etc/fstab", fstab),)))
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    assert fs.read_text("/etc/fstab") == "UUID=3f5b9a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b / ext4 errors=remount-ro 0 1\n/dev/sdb1 /data ext4 defaults,nofail 0 2\n"


def test_a_kernel_without_nvme_in_its_initramfs_fails_with_the_fix(vm_image):
    guest = Guest(nvme=False, extra_files=(("usr/lib/modules/5.15.0-91-generic/kernel/drivers/nvme/host/nvme.ko", "x"),))
    report = check_image(vm_image("nvme-not-in-initrd", guest=guest))
    item = _items(report)["NVMe driver"]
    assert item.status == "fail" and "/boot/initrd.img-5.15.0-91-generic lacks it" in item.reason
    assert "/etc/initramfs-tools/modules" in item.reason


def test_enabling_sshd_creates_the_missing_wants_folder(vm_image, tmp_path):
    ova = vm_image("no-ssh-link", guest=Guest(ssh_enabled=False))
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    assert fs.stat("/etc/systemd/system/multi-user.target.wants/ssh.service").kind == "symlink"


MODULE = "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/nvme/host/nvme.ko"


@pytest.mark.parametrize("compress", ["none", "gzip", "xz", "zstd"])
def test_initramfs_members_are_read_behind_an_early_microcode_archive(compress):
    early = newc_archive([("kernel/x86/microcode/AuthenticAMD.bin", b"\x01" * 37)])
    main = newc_archive([("init", b"#!/bin/sh\n"), (MODULE, b"\x7fELF")])
    if compress == "gzip":
        main = gzip.compress(main, mtime=0)
    elif compress == "xz":
        main = lzma.compress(main)
    elif compress == "zstd":
        if shutil.which("zstd") is None:
            pytest.skip("zstd not installed (see .ci/install)")
        main = subprocess.run(["zstd", "-q", "-c"], input=main, capture_output=True, check=True).stdout
    names = member_names(early + bytes(512) + main + bytes(100))
    assert names == ["kernel/x86/microcode/AuthenticAMD.bin", "init", MODULE]


def test_an_unknown_initramfs_compression_is_named():
    with pytest.raises(InitramfsError, match="unknown initramfs compression"):
        member_names(b"\x89PNG\r\n\x1a\n" + bytes(100))


NM_KEYFILE = (
    "[connection]\nid=Wired connection 1\nuuid=7b0c3c1e-2f61-4d3e-9d41-1a2b3c4d5e6f\ntype=ethernet\ninterface-name=enp0s3\n\n"
    "[ethernet]\nmac-address=08:00:27:3C:5D:7E\n\n[ipv4]\naddress1=192.168.56.10/24,192.168.56.1\ndns=192.168.56.1;\nmethod=manual\n\n"
    "[ipv6]\nmethod=auto\n"
)
NETWORKD_UNIT = "[Match]\nName=enp0s3\n\n[Network]\nAddress=192.168.56.10/24\nGateway=192.168.56.1\n"


def test_a_networkmanager_keyfile_bound_to_enp0s3_is_unbound_and_takes_dhcp(vm_image, tmp_path):
    guest = Guest(netplan_static=False, extra_files=(
        ("etc/netplan/50-cloud-init.yaml", "network:\n  version: 2\n  renderer: NetworkManager\n"),
        ("etc/NetworkManager/NetworkManager.conf", "[main]\nplugins=keyfile\n"),
        ("etc/NetworkManager/system-connections/Wired connection 1.nmconnection", NM_KEYFILE),
    ))
    ova = vm_image("nm-keyfile", guest=guest)
    item = _items(check_image(ova))["network (DHCP)"]
    assert item.status == "fix" and "NetworkManager connection Wired connection 1.nmconnection" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    text = fs.read_text("/etc/NetworkManager/system-connections/Wired connection 1.nmconnection")
    assert "interface-name" not in text and "mac-address" not in text and "address1" not in text
    assert "[ipv4]\nmethod=auto\n" in text and "id=Wired connection 1\n" in text


def test_a_networkd_unit_matching_enp0s3_matches_any_e_name_with_dhcp(vm_image, tmp_path):
    guest = Guest(netplan_static=False, extra_files=(("etc/systemd/network/10-enp0s3.network", NETWORKD_UNIT),))
    ova = vm_image("networkd-literal", guest=guest)
    item = _items(check_image(ova))["network (DHCP)"]
    assert item.status == "fix" and "systemd-networkd 10-enp0s3.network" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    assert fs.read_text("/etc/systemd/network/10-enp0s3.network") == "[Match]\nName=e*\n\n[Network]\nDHCP=ipv4\n"


def test_an_allow_hotplug_pattern_becomes_auto(vm_image, tmp_path):
    interfaces = "auto lo\niface lo inet loopback\n\nallow-hotplug /e*/1=primary\niface primary inet dhcp\n"
    guest = Guest(netplan_static=False, extra_files=(("etc/network/interfaces", interfaces), ("usr/sbin/ifup", ""), ("usr/sbin/dhclient", "")))
    ova = vm_image("hotplug-pattern", guest=guest)
    item = _items(check_image(ova))["network (DHCP)"]
    assert item.status == "fix" and "on hotplug only" in item.reason
    fs = inspect_disk(prepare_image(ova, tmp_path).raw).fs
    assert fs.read_text("/etc/network/interfaces") == "auto lo\niface lo inet loopback\n\nauto /e*/1=primary\niface primary inet dhcp\n"
