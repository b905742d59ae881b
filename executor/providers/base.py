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
from planner.billing import MIN_BILLED_S, BillingRules
from planner.plans import RoleAllocation

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(what, done, total)`` while a provider works through a batch (e.g. launches)."""

BOOT_ALLOWANCE_S = BillingRules().boot_setup_s
"""Billing starts at launch, but an instance's dead-man timer only once its first-boot script runs."""


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
        billed = max(until - self.launched_at, MIN_BILLED_S)
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
    base_image: str = "ubuntu-24.04"
    """What folder apps boot (the descriptor's ``base_image``)."""
    placement: str = "none"
    """The descriptor's ``placement``: ``cluster``, ``spread`` or ``none``."""


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

    def refresh_access(self, run_id: str, journal: Journal) -> str | None:
        """Open SSH again to the caller's address if it moved since launch; what changed, or None."""


LAUNCH_FIELDS = ("run_id", "instance_id", "role", "name", "instance_type", "market", "price_usd_h", "launched_at", "user", "slots")
"""What a provider journals the moment an instance exists: enough to price it and delete it."""


def machines_from_journal(journal: Journal, run_id: str, *, live_only: bool = True, reachable_only: bool = False) -> list[Machine]:
    """The run's launched hosts as journaled.

    A controller killed while provisioning leaves rows without addresses (the instance was
    launched, never seen running): they are priced and deleted like the others, with empty
    addresses, unless ``reachable_only``. A row without even its launch fields (older journals)
    is left to the provider's teardown, which deletes by id and tag.
    """
    machines = []
    for resource in journal.resources(run_id, "instance", live_only=live_only):
        details = resource.details
        if not all(key in details for key in LAUNCH_FIELDS):
            continue
        reachable = bool(details.get("connect_address"))
        if reachable_only and not reachable:
            continue
        machines.append(Machine.from_details({"private_address": "", "connect_address": "", **details}))
    return machines


def deadman_minutes(
    *,
    budget_usd: float,
    hourly_usd: float,
    deadline_s: float | None,
    fixed_usd: float = 0.0,
    boot_s: float = BOOT_ALLOWANCE_S,
) -> int:
    """Minutes after which every instance must be gone so that the fleet cannot outspend the budget.

    The controller's watchdog stops the run earlier (it keeps a reserve for fetching and
    teardown); this is the backstop for a controller that is gone. ``fixed_usd`` (output egress)
    is kept back from the budget. The timer starts when the first-boot script runs, ``boot_s``
    after billing started, so that allowance is taken off. Bounded by the deadline when one is
    set, and never below one minute.
    """
    limit_s = (budget_usd - fixed_usd) / hourly_usd * 3600.0 if hourly_usd > 0 else 24 * 3600.0
    if deadline_s is not None:
        limit_s = min(limit_s, deadline_s)
    return max(1, math.floor((limit_s - boot_s) / 60.0))
