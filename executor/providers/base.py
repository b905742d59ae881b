"""The small interface every provider implements, and the launched-host record they return.

A provider turns a plan into running hosts and back into nothing: ``provision`` launches and
journals, ``open_host`` gives a transport to one host, ``states`` tells which hosts still exist,
``teardown`` deletes everything a run created (found in the journal and, for clouds, by the
``d2c:run`` tag), and ``leftovers`` lists what crashed runs left behind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from d2c.descriptor import Role
from d2c.errors import WorkError
from d2c.transport.base import Host
from executor.journal import Journal
from planner.plans import RoleAllocation

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(what, done, total)`` while a provider works through a batch (e.g. launches)."""

BILLING_MINIMUM_S = 60.0
"""EC2 bills Linux instances per second with a one-minute minimum."""


class CapacityError(WorkError):
    """The cloud has no capacity or quota for the plan's instances; another plan may still fit."""


@dataclass(frozen=True)
class Machine:
    """One launched host of a run, with the price recorded at launch."""

    run_id: str
    instance_id: str
    role: str
    name: str
    """``<role>-<n>``, n from 1 within the role."""
    instance_type: str
    market: str
    price_usd_h: float
    private_address: str
    connect_address: str
    launched_at: float
    user: str
    slots: int
    """Workers this host runs (the plan's workers per instance)."""
    host_key: str | None = None
    """The pinned SSH host key line (``<type> <base64>``), when known."""

    def to_details(self) -> dict:
        """The journal form of this record."""
        return asdict(self)

    @classmethod
    def from_details(cls, details: dict) -> "Machine":
        """Rebuild a record from its journal form."""
        return cls(**{key: details[key] for key in cls.__dataclass_fields__ if key in details})

    def accrued_usd(self, until: float) -> float:
        """What this host has cost from launch until ``until`` (epoch seconds)."""
        billed = max(until - self.launched_at, BILLING_MINIMUM_S)
        return self.price_usd_h * billed / 3600.0


@dataclass(frozen=True)
class ProvisionRequest:
    """What to launch for a run."""

    run_id: str
    run_dir: Path
    region: str
    allocations: tuple[RoleAllocation, ...]
    roles: dict[str, Role]
    deadman_minutes: int
    """Each instance shuts itself down (and is terminated) this many minutes after boot."""
    progress: ProgressCallback | None = None
    first_index: dict[str, int] = field(default_factory=dict)
    """Per role, the number of its first new host (replacements continue after the lost ones)."""


class Provider(Protocol):
    """A source of hosts for a run."""

    name: str
    simulated: bool
    """True when costs are computed at plan prices for a rehearsal, not billed."""

    def provision(self, request: ProvisionRequest, journal: Journal) -> list[Machine]:
        """Launch the plan's hosts, journaling each resource as soon as its id is known."""

    def open_host(self, machine: Machine) -> Host:
        """A new connection to ``machine`` (callers close it)."""

    def workdir(self, machine: Machine, workdir: str) -> str:
        """Where the descriptor's ``workdir`` is on ``machine`` (relative paths: from the login home)."""

    def cluster_key(self, run_id: str) -> str | None:
        """The private key hosts use to reach each other over SSH, or None when they need none."""

    def states(self, run_id: str, journal: Journal) -> dict[str, str]:
        """The state of each of the run's instances by id (``running``, ``terminated``, …)."""

    def teardown(self, run_id: str, journal: Journal) -> list[str]:
        """Delete everything the run created; returns one line per deletion."""

    def leftovers(self, journal: Journal) -> dict[str, list[str]]:
        """Resources of any run still existing, by run id (for ``d2c down --all``)."""


def machines_from_journal(journal: Journal, run_id: str, *, live_only: bool = True) -> list[Machine]:
    """The run's launched hosts as journaled (addresses and host keys included once known)."""
    machines = []
    for resource in journal.resources(run_id, "instance", live_only=live_only):
        if "name" in resource.details:
            machines.append(Machine.from_details(resource.details))
    return machines


def deadman_minutes(*, budget_usd: float, hourly_usd: float, deadline_s: float | None, fixed_usd: float = 0.0) -> int:
    """Minutes after which every instance must be gone so that the fleet cannot outspend the budget.

    The controller's watchdog stops the run earlier (it keeps a reserve for fetching and
    teardown); this is the backstop for a controller that is gone. Bounded by the deadline when
    one is set, and never below one minute.
    """
    minutes = math.floor((budget_usd - fixed_usd) / hourly_usd * 60.0) if hourly_usd > 0 else 24 * 60
    if deadline_s is not None:
        minutes = min(minutes, math.ceil(deadline_s / 60.0))
    return max(1, minutes)
