"""The rehearsal provider: every "instance" of the plan is a folder on this machine.

Each host is a :class:`d2c.transport.LocalHost` rooted in ``<run folder>/hosts/<name>``, so the
same orchestration (contextualization, uploads, nohup'd master, log streaming, fetching, teardown)
runs without an AWS account. Cost accrues at the plan's prices and every report labels it
simulated. Teardown kills whatever the run left running in those folders and removes them.

The app runs as the user, on the user's machine, but it is handed only what an instance would
give it: a minimal environment (``PATH``, ``HOME`` set to the host's folder, ``USER``,
``LOGNAME``, ``SHELL``, and the locale and time zone if set), plus the run's ``.d2c/env.sh``
(the cluster and the descriptor's ``env:``). The controller's own environment — AWS keys, tokens,
agent sockets — never reaches it.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Mapping

from d2c.state import private_dir
from d2c.transport.local import LocalHost
from executor.journal import Journal, Resource
from executor.providers.base import Machine, ProvisionRequest

LOOPBACK = "127.0.0.1"
PASSED_THROUGH = ("PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")
"""The controller's variables a rehearsal host keeps (none of them a secret)."""


class RehearsalHost(LocalHost):
    """A LocalHost whose commands start in a minimal environment, as on a fresh instance."""

    def start(self, command: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None, on_stdout=None, on_stderr=None):
        base = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        base.setdefault("PATH", os.defpath)
        base.update({"HOME": str(self.root), "SHELL": "/bin/bash"})
        base.update(env or {})
        assignments = " ".join(shlex.quote(f"{key}={value}") for key, value in base.items())
        clean = f"exec env -i {assignments} /bin/bash -c {shlex.quote(command)}"
        return super().start(clean, cwd=cwd, on_stdout=on_stdout, on_stderr=on_stderr)


class LocalProvider:
    """Hosts as folders under the run folder; nothing is billed."""

    name = "local"
    simulated = True

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock

    def provision(self, request: ProvisionRequest, journal: Journal) -> list[Machine]:
        """Create one folder per instance of the plan and journal it as an instance."""
        machines: list[Machine] = []
        total = sum(a.count for a in request.allocations)
        for allocation in request.allocations:
            role = request.roles[allocation.role]
            first = request.first_index.get(allocation.role, 1)
            for index in range(first, first + allocation.count):
                name = f"{allocation.role}-{index}"
                root = host_root(request.run_dir, name)
                # Unique per launch, as EC2's ids are: a host provisioned again after a resume is a new instance.
                instance_id = f"local-{request.run_id}-{name}-{secrets.token_hex(3)}"
                machine = Machine(
                    run_id=request.run_id,
                    instance_id=instance_id,
                    role=allocation.role,
                    name=name,
                    instance_type=allocation.instance_type,
                    market=allocation.market,
                    price_usd_h=allocation.price_usd_h,
                    private_address=LOOPBACK,
                    connect_address=LOOPBACK,
                    launched_at=self.clock(),
                    user=role.user,
                    slots=allocation.workers_per_instance,
                )
                journal.add_resource(
                    Resource(request.run_id, "instance", instance_id, request.region, allocation.role, time.time(), details={"root": str(root), **machine.to_details()})
                )
                private_dir(root.parent)
                root.mkdir(exist_ok=True)
                machines.append(machine)
                if request.progress:
                    request.progress("launching", len(machines), total)
        return machines

    def open_host(self, machine: Machine) -> LocalHost:
        """The host's folder as a LocalHost (relative paths resolve inside it), in a minimal environment."""
        return RehearsalHost(root=_root_of(machine), name=machine.name)

    def workdir(self, machine: Machine, workdir: str) -> str:
        """An absolute descriptor workdir is re-rooted inside the host's folder."""
        return posixpath.join(str(_root_of(machine)), workdir.lstrip("/"))

    def cluster_key(self, run_id: str) -> str | None:
        """Rehearsal hosts share this machine; they need no SSH between them."""
        return None

    def states(self, run_id: str, journal: Journal) -> dict[str, str]:
        """A rehearsal host exists while its folder does."""
        states = {}
        for resource in journal.resources(run_id, "instance", live_only=True):
            root = Path(resource.details.get("root", ""))
            states[resource.resource_id] = "running" if root.is_dir() else "terminated"
        return states

    def teardown(self, run_id: str, journal: Journal) -> list[str]:
        """Kill what runs in the run's host folders, then remove them."""
        lines = []
        for resource in journal.resources(run_id, "instance", live_only=True):
            root = Path(resource.details.get("root", ""))
            if root.is_dir():
                _kill_started_commands(root)
                shutil.rmtree(root, ignore_errors=True)
            journal.mark_deleted(run_id, "instance", resource.resource_id)
            lines.append(f"removed rehearsal host {resource.details.get('name', resource.resource_id)}")
        return lines

    def refresh_access(self, run_id: str, journal: Journal) -> str | None:
        """Rehearsal hosts are on this machine: no address rule to follow."""
        return None

    def leftovers(self, journal: Journal) -> dict[str, list[str]]:
        """Host folders of runs whose journal says they still exist."""
        found: dict[str, list[str]] = {}
        for run in journal.runs():
            live = [r.resource_id for r in journal.resources(run.run_id, live_only=True)]
            if live:
                found[run.run_id] = live
        return found


def host_root(run_dir: Path, name: str) -> Path:
    """The folder standing in for host ``name``'s home directory."""
    return Path(run_dir) / "hosts" / name


def _root_of(machine: Machine) -> Path:
    from d2c.state import runs_dir

    return host_root(runs_dir() / machine.run_id, machine.name)


def _kill_started_commands(root: Path) -> None:
    """Commands started by the run record their process group in ``*.pid`` files.

    A group is killed only while one of its processes still works inside ``root``: the pid file
    may be days old, and its number may since belong to another program of the user.
    """
    for pid_file in root.rglob(".d2c/*.pid"):
        try:
            group = int(pid_file.read_text().strip())
        except (ValueError, OSError):
            continue
        if not _group_works_in(group, root):
            continue
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _group_works_in(group: int, root: Path) -> bool:
    """True when a live process of process group ``group`` has its working folder inside ``root``."""
    import psutil

    root = root.resolve()
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != group:
                continue
            cwd = Path(process.cwd()).resolve()
        except (psutil.Error, OSError):
            continue
        if cwd == root or root in cwd.parents:
            return True
    return False

