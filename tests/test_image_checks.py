"""The EC2 checklist on real disk images: each planted problem is found with the right status and reason."""

from __future__ import annotations

import pytest

from d2c.errors import UsageError
from executor.image.disk import debugfs_quote
from executor.image.prepare import check_image, prepare_image
from tests.image_builder import Guest


def _items(report):
    return {item.name: item for item in report.items}


def test_a_virtualbox_ubuntu_needs_fixes_but_nothing_fails(ubuntu_ova):
    report = check_image(ubuntu_ova)
    items = _items(report)
    assert report.ok and report.arch == "x86_64" and report.boot_mode == "legacy-bios"
    assert {n for n, i in items.items() if i.status == "fix"} == {"fstab", "network (DHCP)", "MAC-pinned rules", "serial console"}
    assert items["root filesystem"].reason == "ext4 on partition 1 (dos table)"
    assert "64-bit x86_64" in items["64-bit"].reason
    assert "GRUB 2" in items["boot loader"].reason
    assert "static address" in items["network (DHCP)"].reason and "enp0s3" in items["network (DHCP)"].reason
    assert "70-persistent-net.rules" in items["MAC-pinned rules"].reason
    assert items["login user"].reason.startswith("alice (uid 1000")
    assert items["cloud-init"].status == "info" and items["cloud-init"].reason.startswith("absent")
    assert items["NVMe driver"].status == items["ENA driver"].status == "pass"
    assert report.login_user.home == "/home/alice"
    fstab_edit = items["fstab"].edits[0]
    assert "/dev/sda1 /" in fstab_edit.before and "UUID=3f5b9a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b / ext4" in fstab_edit.after


def test_gpt_disk_with_an_efi_partition_boots_uefi(ubuntu_gpt_ova):
    report = check_image(ubuntu_gpt_ova)
    assert report.boot_mode == "uefi"
    assert _items(report)["root filesystem"].reason == "ext4 on partition 2 (gpt table)"
    assert "UUID=" in _items(report)["fstab"].edits[0].after


@pytest.mark.parametrize(
    "name, options, item, status, phrase",
    [
        ("i386", dict(guest=Guest(bits=32), os_type="Ubuntu"), "64-bit", "fail", "32-bit program"),
        ("no-ssh-link", dict(guest=Guest(ssh_enabled=False)), "sshd", "fix", "not enabled"),
        ("no-user", dict(guest=Guest(login_user=False)), "login user", "fail", "no user with a login shell"),
        ("no-ena", dict(guest=Guest(ena=False)), "ENA driver", "fail", "no kernel has it"),
        ("no-nvme", dict(guest=Guest(nvme=False)), "NVMe driver", "fail", "NVMe devices"),
        ("no-grub", dict(guest=Guest(grub=False)), "boot loader", "fail", "no GRUB configuration"),
        ("small", dict(fs_mib=64), "free space", "fail", "EC2 needs 250 MiB"),
        ("ifupdown", dict(guest=Guest(netplan_static=False, ifupdown_static=True)), "network (DHCP)", "fix", "ifupdown binds eth0"),
        ("clean", dict(guest=Guest(fstab_by_device=False, netplan_static=False, persistent_net=False, serial_console=True, cloud_init=True)), "fstab", "pass", "UUID"),
    ],
)
def test_each_planted_problem_is_found(vm_image, name, options, item, status, phrase):
    report = check_image(vm_image(name, **options))
    found = _items(report)[item]
    assert (found.status, phrase in found.reason) == (status, True), found
    assert report.ok == (status != "fail")


def test_a_clean_guest_needs_no_edits(vm_image):
    guest = Guest(fstab_by_device=False, netplan_static=False, persistent_net=False, serial_console=True, cloud_init=True)
    report = check_image(vm_image("clean", guest=guest))
    assert report.edits() == []
    assert _items(report)["cloud-init"].reason.startswith("present")


@pytest.mark.parametrize(
    "container, phrase",
    [("lvm", "the root is on LVM"), ("luks", "the root is encrypted (LUKS)")],
)
def test_lvm_and_encrypted_roots_fail_with_the_reason(vm_image, container, phrase):
    report = check_image(vm_image(f"root-{container}", container=container))
    assert [i.name for i in report.failures] == ["root filesystem"]
    assert phrase in report.failures[0].reason


PIN_RULE = 'SUBSYSTEM=="net", ATTR{address}=="08:00:27:00:00:01", NAME="eth1"\n'


def test_a_guest_file_name_with_a_quote_is_refused_not_passed_to_debugfs(vm_image, tmp_path):
    name = '71-pin" "sif etc uid 7.rules'
    ova = vm_image("quote-name", guest=Guest(extra_files=((f"etc/udev/rules.d/{name}", PIN_RULE),)))
    message = rf"guest file '/etc/udev/rules\.d/{name}': its name holds a quote or control character"
    with pytest.raises(UsageError, match=message):
        check_image(ova)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=message):
        prepare_image(ova, out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("path", ['/etc/a"b', "/etc/a\nrm /etc/passwd", "/etc/a\rb", "/etc/a\x1bb", "/etc/a\x7fb", "/etc/a\tb"])
def test_debugfs_arguments_with_quotes_or_control_characters_are_refused(path):
    with pytest.raises(UsageError, match="cannot pass to debugfs safely"):
        debugfs_quote(path)


def test_ordinary_guest_paths_are_quoted_whole():
    assert debugfs_quote("/home/alice/My Files/naïve's.txt") == '"/home/alice/My Files/naïve\'s.txt"'
