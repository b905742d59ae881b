"""What every host is told about the cluster: host list, MPI hostfile, environment, SSH mesh.

Files written into ``<workdir>/.d2c/`` on every host:

* ``hosts``: one line per host, ``<private address> <role> <name> <slots>``, master first;
* ``hostfile``: an OpenMPI hostfile, ``<private address> slots=<n>`` (hosts sharing an address,
  as in a rehearsal, are merged into one line; a service role's hosts, with no slots, are left out);
* ``env.sh``: ``export`` lines for ``D2C_RUN``, ``D2C_ROLE``, ``D2C_NAME``, ``D2C_HOSTS``,
  ``D2C_MPI_HOSTFILE``, ``D2C_WORKER_COUNT`` (the total slots of the fleet), then the descriptor's
  ``env:`` in its order, sourced before any role command runs.

For SSH between hosts (``mpirun`` starts its daemons that way) each host gets the run's key as
``~/.ssh/id_d2c`` and an ``~/.ssh/config`` that uses it for the run's private addresses, with the
hosts' pinned keys in ``~/.ssh/known_hosts`` (``accept-new`` for any not yet pinned). The key is
the per-run key the instances already trust; it dies with the run.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from executor.providers.base import Machine

STATE_FOLDER = ".d2c"


@dataclass(frozen=True)
class HostFiles:
    """The files and environment one host receives."""

    files: dict[str, str]
    """Remote path (relative to the workdir) -> content."""
    env: dict[str, str]


def ordered(machines: list[Machine], master_role: str) -> list[Machine]:
    """The master first, then the other hosts by role and name."""
    return sorted(machines, key=lambda m: (m.role != master_role, m.role, _index(m.name)))


def _index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def hosts_text(machines: list[Machine]) -> str:
    """The ``hosts`` file: address, role, name and slots of every host."""
    return "".join(f"{m.private_address} {m.role} {m.name} {m.slots}\n" for m in machines)


def hostfile_text(machines: list[Machine]) -> str:
    """An OpenMPI hostfile; hosts that share an address are one line with their slots summed."""
    slots: dict[str, int] = {}
    for machine in machines:
        slots[machine.private_address] = slots.get(machine.private_address, 0) + machine.slots
    # A service role's hosts have no slots: mpirun must not start ranks there.
    return "".join(f"{address} slots={count}\n" for address, count in slots.items() if count > 0)


def host_files(
    machines: list[Machine], machine: Machine, *, run_id: str, workdir_abs: str, app_env: tuple[tuple[str, str], ...] = ()
) -> HostFiles:
    """Everything ``machine`` is told, given the fleet in master-first order; ``app_env`` is the descriptor's ``env:``."""
    state = posixpath.join(workdir_abs, STATE_FOLDER)
    env = {
        "D2C_RUN": run_id,
        "D2C_ROLE": machine.role,
        "D2C_NAME": machine.name,
        "D2C_HOSTS": posixpath.join(state, "hosts"),
        "D2C_MPI_HOSTFILE": posixpath.join(state, "hostfile"),
        "D2C_WORKER_COUNT": str(sum(m.slots for m in machines)),
    }
    env.update(dict(app_env))
    env_sh = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    files = {
        posixpath.join(STATE_FOLDER, "hosts"): hosts_text(machines),
        posixpath.join(STATE_FOLDER, "hostfile"): hostfile_text(machines),
        posixpath.join(STATE_FOLDER, "env.sh"): env_sh,
    }
    return HostFiles(files=files, env=env)


def ssh_config_text(machines: list[Machine]) -> str:
    """``~/.ssh/config`` for SSH from one host of the run to another by private address."""
    addresses = " ".join(sorted({m.private_address for m in machines}))
    return (
        f"Host {addresses}\n"
        "    IdentityFile ~/.ssh/id_d2c\n"
        "    IdentitiesOnly yes\n"
        "    StrictHostKeyChecking accept-new\n"
        "    UserKnownHostsFile ~/.ssh/known_hosts\n"
        "    ConnectTimeout 10\n"
    )


def known_hosts_text(machines: list[Machine]) -> str:
    """known_hosts lines for the hosts whose keys were pinned by the controller."""
    return "".join(f"{m.private_address} {m.host_key}\n" for m in machines if m.host_key)


def ssh_mesh_script(machines: list[Machine], private_key: str) -> str:
    """A shell script that installs the run key, config and known hosts in ``~/.ssh``."""
    parts = [
        "set -e",
        "umask 077",
        "mkdir -p ~/.ssh",
        f"printf %s {shlex.quote(private_key)} > ~/.ssh/id_d2c",
        "chmod 600 ~/.ssh/id_d2c",
        f"printf %s {shlex.quote(ssh_config_text(machines))} >> ~/.ssh/config",
        "chmod 600 ~/.ssh/config",
    ]
    known = known_hosts_text(machines)
    if known:
        parts.append(f"printf %s {shlex.quote(known)} >> ~/.ssh/known_hosts")
    return "\n".join(parts) + "\n"
