"""The in-guest dead-man switch: a systemd timer that powers the instance off when the run's bound is reached.

The bound (seconds after boot) is computed by the provider from the budget and the deadline and
baked into the image as two units, ``d2c-deadman.timer`` (``OnBootSec=`` the bound, enabled in
``timers.target.wants``) and ``d2c-deadman.service`` (``systemctl poweroff``). It needs nothing
from the network and nothing from the desktop: if d2c's laptop is closed, the instance still
stops. Launched with ``InstanceInitiatedShutdownBehavior=terminate``, powering off from inside
terminates the instance ("If you shut down the instance from within the instance ... the instance
is terminated", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_ChangingInstanceInitiatedShutdownBehavior.html),
so billing for compute stops there.

``OnBootSec=`` counts on the monotonic clock from when the machine booted, so a wrong wall clock
cannot move it (systemd.timer(5), https://www.freedesktop.org/software/systemd/man/latest/systemd.timer.html).
``AccuracySec=1s`` keeps systemd from delaying it by its default minute of coalescing.

The units are edits like any other (recorded in the manifest with their text), so the bound is
part of the prepared image's content: importing the same VM with another bound gives another
AMI digest (see ``executor.image.digest``).
"""

from __future__ import annotations

from d2c.durations import format_duration
from d2c.errors import UsageError
from executor.image.checks import missing_parents
from executor.image.disk import ExtFilesystem
from executor.image.items import Edit

UNIT = "d2c-deadman"
UNIT_DIR = "/etc/systemd/system"
WANTS = f"{UNIT_DIR}/timers.target.wants"
_SYSTEMCTL = ("/usr/bin/systemctl", "/bin/systemctl")
_SYSTEMD = ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")


def timer_text(seconds: int) -> str:
    """The timer unit: fire ``seconds`` after boot, once, to the second."""
    return (
        "[Unit]\n"
        f"Description=d2c dead-man switch: power off {format_duration(seconds)} after boot\n\n"
        "[Timer]\n"
        f"OnBootSec={seconds}s\n"
        "AccuracySec=1s\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def service_text(systemctl: str) -> str:
    """The service the timer starts: a clean poweroff (systemd bounds a stuck stop with its own timeouts)."""
    return (
        "[Unit]\n"
        "Description=d2c dead-man switch: the run's time or budget bound is reached\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={systemctl} --no-block poweroff\n"
    )


def deadman_edits(fs: ExtFilesystem, seconds: int) -> list[Edit]:
    """The edits installing and enabling the dead-man units with a bound of ``seconds`` after boot.

    UsageError when the guest does not boot with systemd (the switch would not run).
    """
    if seconds <= 0:
        raise UsageError(f"--deadman: {seconds} s is not a bound; give a duration longer than zero, like 90m")
    if not any(fs.exists(p) for p in _SYSTEMD):
        raise UsageError("the image does not boot with systemd, which d2c's dead-man timer needs; install systemd-sysv in the VM")
    systemctl = next((p for p in _SYSTEMCTL if fs.exists(p)), _SYSTEMCTL[-1])
    why = f"powers the instance off {format_duration(seconds)} after boot even if d2c is gone (the run's bound)"
    timer, service, link = f"{UNIT_DIR}/{UNIT}.timer", f"{UNIT_DIR}/{UNIT}.service", f"{WANTS}/{UNIT}.timer"
    edits = missing_parents(fs, link, why)
    edits.append(Edit(service, fs.read_text(service), service_text(systemctl), why, mode=0o644))
    edits.append(Edit(timer, fs.read_text(timer), timer_text(seconds), why, mode=0o644))
    if fs.stat(link) is None:
        edits.append(Edit(link, None, timer, f"enables {UNIT}.timer at boot", kind="symlink"))
    return edits
