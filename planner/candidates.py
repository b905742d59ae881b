"""Catalog offers as planning candidates: one row per (instance type, region, market).

A candidate carries what the integer program needs: its price in that market, its capacity in
the profile model's effective workers (``profiler.fleet.instance_capacity``), its memory and its
spot interruption rate. :class:`Limits` are the user's constraints; the filters here
(regions, market, architecture, include/exclude) drop offers before any arithmetic.

Burstable families (t2, t3, t3a, t4g) are left out unless ``include_burstable`` is set or the
user names them in ``include``, as AWS's own attribute-based instance type selection does
("BurstablePerformance: excluded" by default,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceRequirements.html). When in,
each burstable offer is a candidate twice: in ``standard`` credit mode, at its list price and its
per-size baseline speed, and in ``unlimited`` mode, at full speed with the surplus credits of a
CPU-bound app added to its price (``planner.billing.surplus_credit_usd_h``). The candidate's
``cpu_credits`` is carried into the plan, and the launch asks for that mode.

Spot prices differ by Availability Zone, and a plan's hosts all launch in one zone (one subnet;
"a cluster placement group is a logical grouping of instances within a single Availability
Zone", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-strategies.html). So a spot offer
whose catalog keeps zone prices is a candidate once per zone, at that zone's price, and the
planner keeps each plan in one zone (``planner.problem``): the cheapest zone of each type taken
apart would price a mix that no single zone sells. An offer with only the region's summary is
one candidate at its lowest price, zone unnamed (the launch picks the cheapest zone). Local Zones
are left out (``planner.catalog.is_local_zone``: they need an opt-in and a subnet of their own).

Capacity is counted in whole *units* of 1/``UNITS_PER_WORKER`` of a desktop-core worker, so
that capacity sums are exact integers for the solver and the brute-force check alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from d2c.errors import UsageError
from planner.billing import CREDIT_MODES, is_burstable, interruption_rate_per_s, surplus_credit_usd_h
from planner.catalog import Catalog, InstanceOffer, is_local_zone
from profiler.fleet import family_speed, instance_capacity

UNITS_PER_WORKER = 100
MARKET_CHOICES = ("on-demand", "spot", "any")
ASSUMED_SPEED = 1.0
"""Per-core speed (c5 core = 1.0) of a family with no speed basis that the user names in ``--families``."""
DEFAULT_MAX_TYPES = 2
"""Worker types per plan unless ``--max-types`` says otherwise: a fleet of two sizes is easy to
run and reason about, and seven-type mixes save little. Static balance also keeps one family."""


@dataclass(frozen=True)
class Limits:
    """The user's constraints on a plan."""

    budget_usd: float
    """The whole run, overheads included; a plan's p90 cost must fit."""
    deadline_s: float | None = None
    """A plan's p90 time must meet it."""
    regions: tuple[str, ...] = ()
    """Empty: every region in the catalog."""
    market: str = "any"
    include: tuple[str, ...] = ()
    """Families (``c6i``) or types (``c6i.xlarge``) to choose from; empty: all."""
    exclude: tuple[str, ...] = ()
    max_instances: int | None = None
    homogeneous: bool = False
    """One instance type per role (``max_types=1``)."""
    max_types: int | None = None
    """Most worker types in a plan; None: ``DEFAULT_MAX_TYPES``."""
    balance: str = "static"
    """How the app shares work (``d2c.yaml``'s ``balance``): ``static`` or ``dynamic``."""
    arch: str | None = None
    """``x86_64`` or ``arm64`` when the images fix it; None: either."""
    include_burstable: bool = False
    """Plan burstable families too (they are in anyway when named in ``include``)."""


@dataclass(frozen=True)
class Candidate:
    """One instance type in one region and market, priced and sized for this app."""

    offer: InstanceOffer
    market: str
    price_usd_h: float
    capacity_units: int
    """Effective desktop-core workers of one instance, in 1/UNITS_PER_WORKER units."""
    workers_per_instance: int
    rate_per_s: float
    """Spot interruption rate; 0 on demand."""
    cpu_credits: str | None = None
    """``standard`` or ``unlimited`` for a burstable type, None for the others."""
    credit_usd_h: float = 0.0
    """Surplus-credit charge per hour included in ``price_usd_h`` (unlimited mode only)."""
    zone: str | None = None
    """The zone whose spot price this is; None on demand, or when the catalog has no zone prices."""

    @property
    def instance_type(self) -> str:
        return self.offer.instance_type

    @property
    def region(self) -> str:
        return self.offer.region

    @property
    def vcpus(self) -> int:
        return self.offer.vcpus

    @property
    def memory_mb(self) -> float:
        return self.offer.memory_gib * 1024.0


def _matches(offer: InstanceOffer, names: tuple[str, ...]) -> bool:
    return offer.instance_type in names or offer.family in names


def check_burstable_named(limits: Limits, option: str = "--types") -> None:
    """A burstable family or type named without ``--include-burstable`` is bad input (exit 2)."""
    named = [name for name in limits.include if is_burstable(name)]
    if named and not limits.include_burstable:
        raise UsageError(
            f"{option}: {', '.join(named)} {'is a burstable type' if len(named) == 1 else 'are burstable types'} "
            "(CPU credits: throttled to a baseline or billed per vCPU-hour under load), left out of plans by default; "
            "add --include-burstable to plan with them"
        )


def build_candidates(catalog: Catalog, limits: Limits, host_speed: float = 1.0) -> list[Candidate]:
    """Every (type, region, market, credit mode) row the limits allow, with a price and some capacity."""
    markets = ("on-demand", "spot") if limits.market == "any" else (limits.market,)
    regions = set(limits.regions)
    rows: list[Candidate] = []
    for offer in catalog.offers:
        if regions and offer.region not in regions:
            continue
        if limits.arch and offer.arch != limits.arch:
            continue
        if limits.include and not _matches(offer, limits.include):
            continue
        if limits.exclude and _matches(offer, limits.exclude):
            continue
        burstable = is_burstable(offer.instance_type)
        if burstable and not limits.include_burstable:
            continue
        # A family with no speed basis is planned only when named, at an assumed speed said aloud (speedless_families).
        assumed = ASSUMED_SPEED if limits.include and not has_speed_basis(offer.instance_type) else None
        for credits in CREDIT_MODES if burstable else (None,):
            capacity = instance_capacity(offer.instance_type, offer.arch, offer.vcpus, host_speed, cpu_credits=credits or "standard", assume_speed=assumed)
            units = round(capacity.effective_workers * UNITS_PER_WORKER)
            if units < 1 or capacity.workers_per_instance < 1:
                continue
            surplus = surplus_credit_usd_h(offer.instance_type, offer.vcpus) if credits == "unlimited" else 0.0
            for market in markets:
                rate = interruption_rate_per_s(offer.interruption_bucket) if market == "spot" else 0.0
                for zone, price in _prices(offer, market):
                    if price is None or price <= 0:
                        continue
                    rows.append(Candidate(offer, market, float(price) + surplus, units, capacity.workers_per_instance, rate, credits, surplus, zone))
    return rows


def _prices(offer: InstanceOffer, market: str) -> tuple[tuple[str | None, float | None], ...]:
    """``(zone, price)`` to plan ``offer`` with in ``market``: one per zone for spot when known."""
    if market == "on-demand":
        return ((None, offer.on_demand_usd_h),)
    if not offer.spot_zones:
        return ((None, offer.spot_usd_h),)
    return tuple((zone, price) for zone, price in offer.spot_zones if not is_local_zone(zone))


def has_speed_basis(instance_type: str) -> bool:
    """True when the family's per-core speed comes from the family table or its processor facts."""
    return family_speed(instance_type.split(".", 1)[0]) is not None


def speedless_families(catalog: Catalog, limits: Limits) -> tuple[list[str], list[str]]:
    """Families the limits allow that have no speed basis: (left out of plans, planned at ``ASSUMED_SPEED``
    because ``--families``/``--types`` names them)."""
    left, assumed = set(), set()
    regions = set(limits.regions)
    for offer in catalog.offers:
        if (regions and offer.region not in regions) or (limits.arch and offer.arch != limits.arch):
            continue
        if (limits.exclude and _matches(offer, limits.exclude)) or has_speed_basis(offer.instance_type):
            continue
        if is_burstable(offer.instance_type) and not limits.include_burstable:
            continue
        if limits.include:
            if _matches(offer, limits.include):
                assumed.add(offer.family)
        else:
            left.add(offer.family)
    return sorted(left), sorted(assumed)


def describe_filters(limits: Limits) -> str:
    """The filters in force, for a message saying that nothing matched them."""
    parts = [f"market {limits.market}"]
    if limits.regions:
        parts.append("regions " + ",".join(limits.regions))
    if limits.arch:
        parts.append(f"architecture {limits.arch}")
    if limits.include:
        parts.append("types " + ",".join(limits.include))
    if limits.exclude:
        parts.append("excluding " + ",".join(limits.exclude))
    if not limits.include_burstable:
        parts.append("burstable types left out (--include-burstable)")
    return ", ".join(parts)
