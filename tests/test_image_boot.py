"""A real Debian 12 VirtualBox guest, checked, prepared and booted under QEMU the way a Nitro instance presents it.

The guest (tests/fixtures/guest.py) is built once per machine with debootstrap and carries the
usual VirtualBox leftovers. One prepared copy (the run's key, ``--deadman 3m``) serves most tests:
its edits are read back from the disk and the boot rehearsal logs in with the key as the login
user (root on ``nvme0n1p1``, a DHCP address on ``ens5``). A second copy prepared with
``--deadman 1m``, booted alongside the rehearsal so that the two overlap, must power itself off
after its minute. The original disk, booted the same way, must not answer SSH. Needs root, qemu-system-x86_64 and the image tools;
skips with the reason otherwise. KVM when /dev/kvm opens, TCG (slower) otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from executor.image.boot_test import boot_test, free_port, qemu_binary, qemu_command
from executor.image.checks import inspect_disk
from executor.image.prepare import check_image

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.timeout(1200)]

DEADMAN_S = 180
SHORT_DEADMAN_S = 60
# Generous: a Debian boot takes ~15 s under KVM and a few minutes under TCG on a loaded machine.
SSH_WAIT_S = 600


def _d2c(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "d2c", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def qemu():
    if qemu_binary("x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (see .ci/install)")


@pytest.fixture(scope="module")
def run_key(tmp_path_factory):
    """A fresh Ed25519 key pair as d2c makes one per run (private 0600, public one OpenSSH line)."""
    folder = tmp_path_factory.mktemp("run-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "d2c-run", "-f", str(folder / "id_d2c")], check=True)
    return folder / "id_d2c"


@pytest.fixture(scope="module")
def prepared(debian_guest, qemu, run_key, tmp_path_factory):
    """The guest's OVA prepared through the CLI with the run's key and a 3-minute dead-man timer."""
    out = tmp_path_factory.mktemp("prepared-debian")
    result = _d2c("image", "prepare", debian_guest.ova, "-o", out, "--public-key", f"{run_key}.pub", "--deadman", "3m")
    assert result.returncode == 0, result.stderr
    return out / "labvm.prepared.raw"


@pytest.fixture(scope="module")
def deadman_boot(debian_guest, qemu, run_key, tmp_path_factory):
    """A copy prepared with ``--deadman 1m``, booted and left alone: (QEMU, start time, serial log).
    Started before the rehearsal so that the two boots overlap, under the accelerator the session
    probed (``debian_guest``)."""
    out = tmp_path_factory.mktemp("deadman-1m")
    result = _d2c("image", "prepare", debian_guest.ova, "-o", out, "--public-key", f"{run_key}.pub", "--deadman", "1m")
    assert result.returncode == 0, result.stderr
    log = out / "serial.log"

    argv = qemu_command(out / "labvm.prepared.raw", arch="x86_64", boot_mode="legacy-bios", port=free_port(), serial_log=log,
                        accel=os.environ["D2C_BOOT_TEST_ACCEL"])
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    yield proc, started, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def login_report(prepared, run_key, deadman_boot):
    """``d2c image boot-test --key --json`` on the prepared disk, as a user runs it."""
    result = _d2c("image", "boot-test", prepared, "--key", run_key, "--timeout", f"{SSH_WAIT_S}s", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def test_check_finds_every_virtualbox_leftover_of_the_real_guest(debian_guest):
    items = {i.name: i for i in check_image(debian_guest.ova).items}
    fixes = {name for name, item in items.items() if item.status == "fix"}
    assert fixes == {"fstab", "network (DHCP)", "MAC-pinned rules", "kernel command line", "serial console"}
    assert "ifupdown binds enp0s3" in items["network (DHCP)"].reason
    assert "root=/dev/sda1" in items["kernel command line"].reason
    assert items["NVMe driver"].status == "pass" and "nvme.ko in /boot/initrd.img-6.1" in items["NVMe driver"].reason
    assert items["ENA driver"].status == "pass"
    assert items["login user"].reason.startswith("alice (uid 1000")


def test_the_prepared_guest_logs_in_with_the_runs_key_on_nvme_and_a_new_nic(prepared, login_report):
    report = login_report
    assert report["ok"] and report["logged_in"] and report["powered_off"], report
    assert report["root_device"] == "/dev/nvme0n1p1"
    assert report["interface"] == "ens5" and report["address"].startswith("10.0.2.15/")
    assert 0 < report["seconds"] < SSH_WAIT_S
    serial = (prepared.parent / "labvm.prepared.serial.log").read_text(errors="replace")
    assert report["serial_log"].endswith("labvm.prepared.serial.log") and "labvm login:" in serial


def test_the_original_disk_booted_as_nitro_does_not_answer_ssh(debian_guest, login_report, deadman_boot, tmp_path, monkeypatch):
    """Its console is on the screen, not ttyS0, so the login prompt never shows and the full wait
    applies: what its prepared copy needed (booting beside the dead-man copy, so under more load
    than this boot has) and 30 s more, under the same accelerator."""
    wait = round(login_report["seconds"] + 30)
    monkeypatch.setenv("D2C_BOOT_TEST_ACCEL", login_report["accel"])
    result = boot_test(debian_guest.raw, serial_log=tmp_path / "original.log", timeout_s=wait)
    assert not result.ok and not result.logged_in
    assert result.reason.startswith(f"SSH did not answer within {wait} s")


def test_the_edits_read_back_from_the_prepared_disk(prepared, debian_guest):
    fs = inspect_disk(prepared).fs
    assert fs.read_text("/etc/network/interfaces").endswith("auto /e*/1=primary\niface primary inet dhcp\n")
    assert "enp0s3" not in fs.read_text("/etc/network/interfaces")
    assert fs.stat("/etc/udev/rules.d/70-persistent-net.rules") is None
    fstab = fs.read_text("/etc/fstab")
    assert f"UUID={debian_guest.root_uuid} / ext4" in fstab and f"UUID={debian_guest.swap_uuid} none swap" in fstab
    grub = fs.read_text("/boot/grub/grub.cfg")
    assert f"root=UUID={debian_guest.root_uuid} ro quiet console=tty0 console=ttyS0,115200n8" in grub
    assert "GRUB_DISABLE_LINUX_UUID=false" in fs.read_text("/etc/default/grub")
    assert f"OnBootSec={DEADMAN_S}s" in fs.read_text("/etc/systemd/system/d2c-deadman.timer")
    link = fs.stat("/etc/systemd/system/timers.target.wants/d2c-deadman.timer")
    assert (link.kind, link.link_target) == ("symlink", "/etc/systemd/system/d2c-deadman.timer")
    keys = fs.stat("/home/alice/.ssh/authorized_keys")
    assert (keys.mode & 0o777, keys.uid) == (0o600, 1000)
    manifest = json.loads((prepared.parent / "manifest.json").read_text())
    assert "/etc/systemd/system/d2c-deadman.timer" in [e["file"] for e in manifest["edits"]]


def test_a_disk_prepared_with_deadman_1m_powers_itself_off(deadman_boot):
    proc, started, log = deadman_boot
    try:
        proc.wait(timeout=max(1.0, SHORT_DEADMAN_S + 420 - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"QEMU still running {time.monotonic() - started:.0f} s after boot; serial log tail: {log.read_text(errors='replace')[-500:]}")
    elapsed = time.monotonic() - started
    assert elapsed >= SHORT_DEADMAN_S, f"powered off after {elapsed:.0f} s, before its bound"
    serial = log.read_text(errors="replace")
    assert "reboot: Power down" in serial
