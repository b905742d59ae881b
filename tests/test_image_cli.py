"""``d2c image check | prepare | import`` as a user runs them: exit codes, one-line errors, tables, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.image_builder import Guest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd2Y3J1bnRlc3RrZXkwMTIzNDU2Nzg5YWJjZGVm d2c-run-test"


def _d2c(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "d2c", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def _one_error_line(result, phrase):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], result.stderr


def test_check_prints_the_checklist_and_exits_0_when_only_fixes_are_needed(ubuntu_ova):
    result = _d2c("image", "check", ubuntu_ova)
    assert result.returncode == 0, result.stderr
    assert "EC2 readiness" in result.stdout and "fstab" in result.stdout and "fix" in result.stdout
    assert "4 item(s) marked fix" in result.stderr


def test_check_json_is_stable(ubuntu_gpt_ova):
    result = _d2c("image", "check", ubuntu_gpt_ova, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["version"], data["ok"], data["arch"], data["boot_mode"]) == (1, True, "x86_64", "uefi")
    assert {"name": "MAC-pinned rules", "status": "fix"}.items() <= next(i for i in data["items"] if i["name"] == "MAC-pinned rules").items()


def test_check_exits_2_naming_the_failing_checks(vm_image):
    ova = vm_image("i386", guest=Guest(bits=32), os_type="Ubuntu")
    result = _d2c("image", "check", ova)
    _one_error_line(result, f"{ova}: 1 check(s) fail (64-bit)")
    assert "32-bit program" in result.stdout


@pytest.mark.parametrize("command", ["check", "import"])
def test_not_a_disk_image_is_one_line_and_exit_2(tmp_path, command):
    notes = tmp_path / "notes.vdi"
    notes.write_text("hello\n" * 200)
    _one_error_line(_d2c("image", command, notes), f"{notes}: not a disk image")


def test_prepare_writes_the_disk_and_manifest(ubuntu_ova, tmp_path):
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    out = tmp_path / "out"
    result = _d2c("image", "prepare", ubuntu_ova, "-o", out, "--public-key", key)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert "/home/alice/.ssh/authorized_keys" in [e["file"] for e in manifest["edits"]]
    assert (out / "labvm.prepared.raw").is_file() and "manifest:" in result.stderr


def test_prepare_refuses_a_file_that_is_not_a_public_key(ubuntu_ova, tmp_path):
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    result = _d2c("image", "prepare", ubuntu_ova, "-o", tmp_path / "out", "--public-key", key)
    _one_error_line(result, "not an OpenSSH public key")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["ssh-rsa garbage", "ssh-ed25519 AAAAC3NzaC1yc2E= not-the-type-it-says"])
def test_prepare_refuses_a_malformed_public_key(ubuntu_ova, tmp_path, text):
    key = tmp_path / "id.pub"
    key.write_text(text + "\n")
    result = _d2c("image", "prepare", ubuntu_ova, "-o", tmp_path / "out", "--public-key", key)
    _one_error_line(result, f"--public-key {key}: not an OpenSSH public key")
    assert not (tmp_path / "out").exists()


def test_check_leaves_no_state_folder_in_the_working_folder(ubuntu_ova, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "D2C_HOME"}
    result = _d2c("image", "check", ubuntu_ova, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_vm_chooses_the_vm_of_a_two_vm_appliance(cluster_ova, tmp_path):
    _one_error_line(_d2c("image", "check", cluster_ova), "the appliance holds 2 VMs ('head', 'worker'); choose one with 'vm:' in the role (or --vm NAME)")
    _one_error_line(_d2c("image", "check", cluster_ova, "--vm", "db"), "no VM named 'db'; its VMs are 'head', 'worker'")
    assert _d2c("image", "check", cluster_ova, "--vm", "head").returncode == 0
    result = _d2c("image", "prepare", cluster_ova, "--vm", "worker", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "worker.prepared.raw"]


@pytest.mark.integration
def test_import_prints_the_ami_and_reuses_it(ubuntu_ova, aws):
    # The Ubuntu-shaped test image has no real kernel to boot; the rehearsal is tested on a real guest (test_image_boot.py).
    first = _d2c("image", "import", ubuntu_ova, "--region", "us-east-1", "--no-boot-test")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("ami-")
    second = _d2c("image", "import", ubuntu_ova, "--no-boot-test")
    assert second.returncode == 0 and second.stdout == first.stdout


def test_import_with_an_unknown_method_is_a_usage_error(ubuntu_ova):
    result = _d2c("image", "import", ubuntu_ova, "--method", "ftp")
    _one_error_line(result, "--method")


def test_a_bad_deadman_duration_is_one_line_and_writes_nothing(ubuntu_ova, tmp_path):
    out = tmp_path / "out"
    _one_error_line(_d2c("image", "prepare", ubuntu_ova, "-o", out, "--deadman", "3x"), "--deadman: '3x' is not a duration")
    assert not out.exists()


def test_boot_test_of_a_missing_disk_is_one_line(tmp_path):
    _one_error_line(_d2c("image", "boot-test", tmp_path / "vm.prepared.raw"), "no such disk")


def test_prepare_with_deadman_records_the_timer_in_the_manifest(ubuntu_ova, tmp_path):
    result = _d2c("image", "prepare", ubuntu_ova, "-o", tmp_path / "out", "--deadman", "90m")
    assert result.returncode == 0, result.stderr
    edits = {e["file"]: e for e in json.loads((tmp_path / "out" / "manifest.json").read_text())["edits"]}
    assert "OnBootSec=5400s" in edits["/etc/systemd/system/d2c-deadman.timer"]["after"]
    assert edits["/etc/systemd/system/timers.target.wants"]["kind"] == "dir"
    assert edits["/etc/systemd/system/timers.target.wants/d2c-deadman.timer"]["after"] == "/etc/systemd/system/d2c-deadman.timer"
    assert "--no-block poweroff" in edits["/etc/systemd/system/d2c-deadman.service"]["after"]


def test_deadman_on_a_guest_without_systemd_is_refused(vm_image, tmp_path):
    ova = vm_image("no-systemd", guest=Guest(systemd=False))
    _one_error_line(_d2c("image", "prepare", ova, "-o", tmp_path / "out", "--deadman", "1h"), "does not boot with systemd")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_rehearsal_stops_soon_after_a_login_prompt_that_ssh_never_follows(tmp_path, monkeypatch):
    """A guest at its login prompt has booted; SSH silent past the grace means no network, not a slow boot.
    A real process stands in for QEMU's lifetime and nothing listens on the forwarded port."""
    from executor.image import boot_test as rehearsal

    monkeypatch.setattr(rehearsal, "LOGIN_GRACE_S", 2.0)
    serial = tmp_path / "serial.log"
    serial.write_bytes(b"[  OK  ] Reached target multi-user.target\r\n\r\nDebian GNU/Linux 12 labvm ttyS0\r\n\r\nlabvm login: ")
    guest = subprocess.Popen(["sleep", "120"])
    try:
        started = time.monotonic()
        result = rehearsal._watch(guest, started, 600, rehearsal.free_port(), None, None, tmp_path / "known_hosts", serial, "tcg", True)
    finally:
        guest.kill()
        guest.wait()
    assert not result.ok and time.monotonic() - started < 30, "stopped at the grace, not the 600 s wait"
    assert result.reason.startswith("SSH did not answer ") and " s after the guest's login prompt" in result.reason
    assert "reached its login prompt but SSH did not answer (its network did not come up by DHCP)" in result.reason


def test_a_kvm_stall_is_remembered_for_this_host_so_later_boots_go_straight_to_tcg():
    from executor.image import boot_test as rehearsal

    rehearsal._remember_kvm_stall()
    assert not rehearsal.kvm_usable(), "a host whose KVM stalled a guest is not offered KVM again"
    marker, _key = rehearsal._kvm_marker()
    marker.write_text("4.19.0-old /usr/bin/qemu-system-x86_64 1:1\n")
    assert rehearsal.kvm_usable() == os.access("/dev/kvm", os.R_OK | os.W_OK), "a new kernel or QEMU build is tried again"
