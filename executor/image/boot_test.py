"""The boot rehearsal: boot a prepared disk the way a Nitro instance presents it, before anything is uploaded.

What EC2 changes under a VM, and how QEMU reproduces it here:

- the root volume is an NVMe device (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/nvme-ebs-volumes.html):
  the disk is attached as ``-device nvme`` and is the only disk, booted by the firmware
  (SeaBIOS for legacy BIOS images, OVMF for UEFI ones, as the AMI's boot mode says);
- the NIC is a new device at a new PCI slot (ENA on slot 5, named ``ens5`` by systemd's
  predictable names): a ``virtio-net-pci`` NIC at ``addr=0x5`` on QEMU's ``pc`` machine, whose
  ACPI slot numbers give it the same ``ens5`` name, and a MAC address VirtualBox never used;
- the address comes from DHCP: QEMU's user network answers DHCP, with ``restrict=on`` so the
  guest reaches nothing outside, and only the guest's port 22 forwarded to 127.0.0.1.

The disk is attached with ``snapshot=on``: the guest's writes go to a temporary overlay, so the
disk that is uploaded is exactly the one prepared (no journal replay, no logs from the rehearsal).
With the run's private key, d2c logs in as the login user over real SSH (``SSHHost``), reads the
root device and the interface's name and address, and powers the guest off; without one, SSH
answering with its banner is the proof. The serial console (``console=ttyS0``, which prepare
turns on) is kept as a file; when the guest does not answer, the error names what it shows.
KVM is used when ``/dev/kvm`` can be opened, TCG otherwise (slower, same result). Some hosts
open /dev/kvm yet cannot run a guest's boot loader (nested virtualization without the CPU's
virtualization flags: GRUB stops after "Welcome to GRUB!"); when the serial console stays empty
for ``KVM_SILENCE_S`` under KVM, the boot is started again under TCG, and later boots on the same
host (kernel and QEMU build) go straight to TCG: the stall is remembered in the cache folder. ``D2C_BOOT_TEST_ACCEL=kvm|tcg`` forces one. The wait for SSH is
3 minutes with KVM and 10 without, or ``D2C_BOOT_TEST_TIMEOUT`` seconds when set. A guest that
shows its login prompt on the serial console has finished booting (getty and sshd both start
after ``network.target``), so once SSH has stayed silent for ``LOGIN_GRACE_S`` after that prompt
the rehearsal stops there rather than at the full wait: its network never came up.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from d2c.errors import UsageError, WorkError

QEMU = {"x86_64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
DEFAULT_TIMEOUT_S = {"kvm": 180.0, "tcg": 600.0}
KVM_SILENCE_S = 60.0
LOGIN_GRACE_S = 45.0
_LOGIN_PROMPT = re.compile(rb"\blogin: ")
NIC_SLOT = 5
NIC_MAC = "0e:d2:c0:00:00:05"
OVMF = ("/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/qemu/OVMF.fd")
AAVMF = ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
_FACTS = "findmnt -no SOURCE /; ip -o -4 addr show scope global | awk '{print $2, $4; exit}'"
# Lines of a serial log that say why a boot stopped, most telling first.
_SIGNS = (
    re.compile(r"Kernel panic.*"),
    re.compile(r"ALERT!.*does not exist.*"),
    re.compile(r"Gave up waiting for (root|suspend/resume) .*"),
    re.compile(r"(Failed to start|\[FAILED\]).*"),
    re.compile(r"Dependency failed for .*"),
    re.compile(r"error: .*"),
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class BootResult:
    """What the rehearsal saw: whether SSH answered, after how long, and what the guest reported."""

    ok: bool
    accel: str
    seconds: float
    serial_log: Path
    logged_in: bool = False
    root_device: str = ""
    interface: str = ""
    address: str = ""
    powered_off: bool = False
    reason: str = ""

    def as_dict(self) -> dict:
        """JSON-ready fields (the serial log as a string)."""
        return {**asdict(self), "serial_log": str(self.serial_log)}


def qemu_binary(arch: str) -> str | None:
    """The QEMU system emulator for ``arch`` images, if installed."""
    return shutil.which(QEMU.get(arch, ""))


def _kvm_marker() -> tuple[Path, str]:
    """Where a KVM stall is remembered, and for which host: its kernel release and QEMU build
    (an upgrade of either may fix it, so the marker then no longer applies)."""
    from d2c.state import cache_dir

    binary = qemu_binary("x86_64") or ""
    build = f"{os.stat(binary).st_size}:{int(os.stat(binary).st_mtime)}" if binary else "none"
    return cache_dir() / "kvm-stalled", f"{os.uname().release} {binary} {build}"


def _remember_kvm_stall() -> None:
    marker, key = _kvm_marker()
    try:
        marker.write_text(key + "\n")
    except OSError:
        pass  # only a cache: the next boot pays the probe again


def kvm_usable() -> bool:
    """True when /dev/kvm exists and this user can open it, and no boot on this host stalled under it
    (remembered in the cache folder, so a host whose KVM cannot run a guest pays the wait once)."""
    marker, key = _kvm_marker()
    try:
        if marker.read_text().strip() == key:
            return False
    except OSError:
        pass
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def qemu_command(
    raw: Path, *, arch: str, boot_mode: str, port: int, serial_log: Path, accel: str, memory_mib: int = 1024,
    snapshot: bool = True,
) -> list[str]:
    """The QEMU command line of the rehearsal (see the module docstring for what each device stands for).

    The guest's port 22 is forwarded from 127.0.0.1:``port`` (libslirp shows the guest a loopback
    peer as 10.0.2.2, the only peer ``restrict=on`` lets it answer); ``snapshot`` False lets the
    guest write to ``raw`` itself.
    """
    binary = qemu_binary(arch)
    if binary is None:
        raise WorkError(f"{QEMU.get(arch, 'qemu')} is not installed; install qemu-system-x86 (or --no-boot-test)")
    disk = f"file={raw},if=none,id=root,format=raw,cache=unsafe" + (",snapshot=on" if snapshot else "")
    argv = [binary, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-m", str(memory_mib), "-smp", "2"]
    # Under KVM the default CPU model: "host" and "max" pass through MSRs that nested KVM hosts refuse.
    if arch == "arm64":
        argv += ["-machine", f"virt,accel={accel}", "-cpu", "host" if accel == "kvm" else "max"]
    else:
        argv += ["-machine", f"pc,accel={accel}"] + ([] if accel == "kvm" else ["-cpu", "max"])
    if boot_mode == "uefi" or arch == "arm64":
        firmware = next((p for p in (AAVMF if arch == "arm64" else OVMF) if Path(p).is_file()), None)
        if firmware is None:
            raise WorkError("the image boots with UEFI and no UEFI firmware for QEMU is installed; install ovmf (or --no-boot-test)")
        argv += ["-bios", firmware]
    argv += [
        "-drive", disk, "-device", "nvme,drive=root,serial=vol0d2cboottest,bootindex=0",
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", f"virtio-net-pci,netdev=net0,addr={NIC_SLOT:#x},mac={NIC_MAC}",
        "-serial", f"file:{serial_log}", "-monitor", "none",
    ]
    return argv


def serial_summary(serial_log: Path) -> str:
    """The line of the serial log that best says why a boot stopped (or that there is nothing to read)."""
    try:
        text = _ANSI.sub("", serial_log.read_text(errors="replace"))
    except OSError:
        text = ""
    lines = [l.strip() for l in text.replace("\r", "\n").splitlines() if l.strip()]
    if not lines:
        return "the serial console stayed empty (the boot loader did not start a kernel that writes to ttyS0)"
    for sign in _SIGNS:
        for line in lines:
            found = sign.search(line)
            if found:
                return found.group(0)[:200]
    if any(re.search(r"\blogin:", l) for l in lines):
        return "the guest reached its login prompt but SSH did not answer (its network did not come up by DHCP)"
    return f"its last line: {lines[-1][:200]}"


def _ssh_banner(port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _try_login(port: int, user: str, key_path: Path, known_hosts: Path):
    from d2c.transport.ssh import SSHHost

    host = SSHHost("127.0.0.1", port, user=user, key_path=key_path, known_hosts=known_hosts, connect_timeout=5, retries=1, name="boot test")
    try:
        host.connect()
    except Exception:
        host.close()
        return None
    return host


def boot_test(
    raw: Path,
    *,
    serial_log: Path,
    arch: str = "x86_64",
    boot_mode: str = "legacy-bios",
    user: str | None = None,
    key_path: Path | None = None,
    timeout_s: float | None = None,
    power_off: bool = True,
) -> BootResult:
    """Boot ``raw`` as Nitro presents it and wait for SSH; the result says what answered and what the guest reported.

    ``user`` and ``key_path`` (the run's private key, authorized in the image) make it log in;
    without them an SSH banner is the proof. The serial console is written to ``serial_log``.
    Never raises for a guest that does not answer (``ok`` is False, ``reason`` names what the
    serial log shows); WorkError when QEMU cannot run at all.
    """
    forced = os.environ.get("D2C_BOOT_TEST_ACCEL")
    accels = [forced] if forced in ("kvm", "tcg") else ["kvm", "tcg"] if kvm_usable() else ["tcg"]
    serial_log = Path(serial_log)
    serial_log.parent.mkdir(parents=True, exist_ok=True)
    reason = ""
    for accel in accels:
        limit = timeout_s or float(os.environ.get("D2C_BOOT_TEST_TIMEOUT") or DEFAULT_TIMEOUT_S[accel])
        serial_log.write_bytes(b"")
        port = free_port()
        argv = qemu_command(Path(raw).resolve(), arch=arch, boot_mode=boot_mode, port=port, serial_log=serial_log, accel=accel)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="d2c-boot-test-") as work:
            qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=work)
            try:
                return _watch(qemu, started, limit, port, user, key_path, Path(work) / "known_hosts", serial_log, accel, power_off)
            except _KvmRefused as refused:
                _remember_kvm_stall()
                reason = str(refused).strip().splitlines()[-1][:300]
                continue
            finally:
                stop(qemu)
    raise WorkError(f"QEMU could not boot the image under KVM ({reason}) and TCG was not allowed (D2C_BOOT_TEST_ACCEL=kvm)")


class _KvmRefused(WorkError):
    """QEMU stopped at once, or the guest stayed silent, under KVM (a host that cannot run the guest): try TCG."""


def stop(qemu: subprocess.Popen) -> None:
    """End the QEMU process ``qemu`` if it still runs (its disk is a throwaway overlay)."""
    if qemu.poll() is None:
        qemu.terminate()
        try:
            qemu.wait(10)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


def _login_prompt_seen(serial_log: Path) -> bool:
    try:
        return bool(_LOGIN_PROMPT.search(serial_log.read_bytes()[-4096:]))
    except OSError:
        return False


def _watch(qemu, started, timeout_s, port, user, key_path, known_hosts, serial_log, accel, power_off) -> BootResult:
    login = bool(user and key_path)
    prompt_at: float | None = None
    while True:
        elapsed = time.monotonic() - started
        if prompt_at is None and _login_prompt_seen(serial_log):
            prompt_at = elapsed
        if prompt_at is not None and elapsed - prompt_at > LOGIN_GRACE_S:
            return BootResult(False, accel, elapsed, serial_log, reason=(
                f"SSH did not answer {elapsed - prompt_at:.0f} s after the guest's login prompt ({elapsed:.0f} s after start); "
                f"{serial_summary(serial_log)}"))
        if qemu.poll() is not None:
            stderr = qemu.stderr.read().decode(errors="replace").strip() if qemu.stderr else ""
            if qemu.returncode != 0 and stderr:
                if accel == "kvm" and elapsed < 15:
                    raise _KvmRefused(stderr)
                raise WorkError(f"QEMU could not boot the image: {stderr.splitlines()[-1][:300]}")
            return BootResult(False, accel, elapsed, serial_log, reason=f"the guest powered off after {elapsed:.0f} s without SSH answering; {serial_summary(serial_log)}")
        if accel == "kvm" and elapsed > KVM_SILENCE_S and not serial_log.stat().st_size:
            raise _KvmRefused(f"the serial console stayed empty for {KVM_SILENCE_S:.0f} s")
        if elapsed > timeout_s:
            return BootResult(False, accel, elapsed, serial_log, reason=f"SSH did not answer within {timeout_s:.0f} s; {serial_summary(serial_log)}")
        if login:
            host = _try_login(port, user, key_path, known_hosts)
            if host is not None:
                return _report(host, qemu, time.monotonic() - started, serial_log, accel, power_off)
        elif _ssh_banner(port):
            return BootResult(True, accel, time.monotonic() - started, serial_log)
        time.sleep(1.0)


def _report(host, qemu, seconds: float, serial_log: Path, accel: str, power_off: bool) -> BootResult:
    """Read the root device and the network from the logged-in guest, then power it off."""
    with host:
        facts = host.run(_FACTS, timeout=30).stdout_tail.split()
        if power_off:
            host.run("sudo -n systemctl --no-block poweroff", timeout=30)
    root, interface, address = (facts + ["", "", ""])[:3]
    stopped = False
    if power_off:
        try:
            qemu.wait(60)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
    return BootResult(True, accel, seconds, serial_log, logged_in=True, root_device=root, interface=interface, address=address, powered_off=stopped)


def require_boot(result: BootResult, image: Path) -> BootResult:
    """``result`` when the guest answered; else the UsageError that refuses the image (nothing is uploaded)."""
    if result.ok:
        return result
    raise UsageError(
        f"{image}: the prepared disk does not boot as EC2 (Nitro) presents it — {result.reason}; "
        f"serial log: {result.serial_log} (--no-boot-test skips this rehearsal)"
    )
