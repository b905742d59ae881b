"""Ranked plans and the ``plans.json`` file that ``d2c run --plan N`` reads.

Format (``version`` 1)::

    {"version": 1, "created_at": ISO-8601, "descriptor": "<name>",
     "inputs": {"budget_usd": 50.0, "deadline_s": 10800 | null, "scale": 1.0,
                "profile_digest": "sha256:…", "catalog_source": "snapshot",
                "catalog_fetched_at": ISO-8601, "market": "any", "regions": [...],
                "output_gb": 0.0},
     "plans": [{"rank": 1, "region": "us-east-1", "why": "…", "on_frontier": true,
                "time_s": {"p50": …, "p90": …}, "cost_usd": {"p50": …, "p90": …},
                "also_in": [{"region": "us-east-2", "zone": "use2-az1" | null,
                             "cost_usd": {"p50": …, "p90": …}}, …],
                "zone": "use1-az4" | "us-east-1a" | null,
                "cost_breakdown": {"compute": …, "ebs": …, "public_ipv4": …, "egress": …,
                                   "snapshots": …, "cpu_credits": …},
                "roles": [{"role": "master", "instance_type": "c6i.xlarge", "count": 1,
                           "market": "on-demand", "region": "us-east-1", "vcpus": 4,
                           "memory_gib": 8.0, "arch": "x86_64", "price_usd_h": 0.17,
                           "workers_per_instance": 4, "on_demand_usd_h": 0.17,
                           "cpu_credits": null, "zone": null, "root_gb": 8.0}, …]}, …]}

``cost_breakdown`` is the p50 cost by what AWS bills (``planner.billing``); its items add up to
``cost_usd.p50``. ``zone`` is the Availability Zone a spot plan was priced in and launches in:
an AZ ID (``use1-az4``, the same zone in every account) or a zone name, as the catalog named it
(null: the launch picks the zone). ``cpu_credits`` is the credit mode a burstable type was priced with and is
launched in; ``price_usd_h`` includes its surplus credits in ``unlimited`` mode.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from d2c.errors import UsageError
from planner.billing import CREDIT_MODES, CostBreakdown
from planner.catalog import zone_in_region
from profiler.prediction import Estimate

PLANS_VERSION = 1
MARKETS = ("on-demand", "spot")


@dataclass(frozen=True)
class RoleAllocation:
    """How many instances of one type serve one role, and at what price."""

    role: str
    instance_type: str
    count: int
    market: str
    region: str
    vcpus: int
    memory_gib: float
    arch: str
    price_usd_h: float
    workers_per_instance: int
    on_demand_usd_h: float | None = None
    """The type's on-demand price: a spot launch's ``MaxPrice``."""
    cpu_credits: str | None = None
    """``standard`` or ``unlimited`` for a burstable type (what the launch asks for)."""
    zone: str | None = None
    """The Availability Zone whose spot price was planned with; None: any zone of the region."""
    root_gb: float | None = None
    """Root volume per instance, GB, from the role's image (None: the default)."""


@dataclass(frozen=True)
class Alternative:
    """The same worker mix in another region or zone (or with another master type), at its own cost."""

    region: str
    cost_usd: Estimate
    zone: str | None = None
    """The zone, for a spot plan priced per zone."""


@dataclass(frozen=True)
class Plan:
    """One way to run the app: the instances per role, predicted time and cost, and its rank."""

    rank: int
    region: str
    roles: tuple[RoleAllocation, ...]
    time_s: Estimate
    cost_usd: Estimate
    why: str
    on_frontier: bool = False
    also_in: tuple[Alternative, ...] = ()
    """Where else the same worker mix runs, cheapest first."""
    breakdown: CostBreakdown | None = None
    """The p50 cost by item; None in plans made before it was recorded."""

    @property
    def zone(self) -> str | None:
        """The one zone the plan was priced in, when its spot prices came from one."""
        zones = {a.zone for a in self.roles if a.zone}
        return zones.pop() if len(zones) == 1 else None

    @property
    def instance_count(self) -> int:
        """Total instances the plan launches."""
        return sum(a.count for a in self.roles)

    @property
    def hourly_usd(self) -> float:
        """The fleet's price per hour at the prices the plan was made with."""
        return sum(a.count * a.price_usd_h for a in self.roles)


@dataclass(frozen=True)
class PlanSet:
    """Everything ``d2c recommend`` decided, with the inputs it decided from."""

    descriptor: str
    created_at: str
    budget_usd: float
    deadline_s: float | None
    scale: float
    profile_digest: str
    catalog_source: str
    catalog_fetched_at: str
    market: str
    regions: tuple[str, ...]
    plans: tuple[Plan, ...] = field(default_factory=tuple)
    output_gb: float = 0.0
    """Expected size of the outputs brought back, GB (priced as egress)."""

    def plan(self, rank: int) -> Plan:
        """The plan ranked ``rank`` (1-based)."""
        for plan in self.plans:
            if plan.rank == rank:
                return plan
        raise UsageError(f"plans.json: no plan ranked {rank}; ranks are 1..{len(self.plans)}")

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form."""
        return {
            "version": PLANS_VERSION,
            "created_at": self.created_at,
            "descriptor": self.descriptor,
            "inputs": {
                "budget_usd": self.budget_usd,
                "deadline_s": self.deadline_s,
                "scale": self.scale,
                "profile_digest": self.profile_digest,
                "catalog_source": self.catalog_source,
                "catalog_fetched_at": self.catalog_fetched_at,
                "market": self.market,
                "regions": list(self.regions),
                "output_gb": self.output_gb,
            },
            "plans": [
                {
                    "rank": p.rank,
                    "region": p.region,
                    "why": p.why,
                    "on_frontier": p.on_frontier,
                    "time_s": asdict(p.time_s),
                    "cost_usd": asdict(p.cost_usd),
                    "zone": p.zone,
                    "cost_breakdown": p.breakdown.to_dict() if p.breakdown is not None else None,
                    "roles": [asdict(a) for a in p.roles],
                    "also_in": [{"region": a.region, "zone": a.zone, "cost_usd": asdict(a.cost_usd)} for a in p.also_in],
                }
                for p in self.plans
            ],
        }

    def save(self, path: Path) -> None:
        """Write plans.json atomically."""
        from d2c.files import atomic_write_json

        atomic_write_json(path, self.to_dict())


MAX_COUNT = 1000
"""The most instances of one role a plan may name (the descriptor's own limit)."""
MAX_WORKERS_PER_INSTANCE = 4096
MAX_VCPUS = 1024
REGION_RE = re.compile(r"^(us|ca|mx|sa|eu|af|ap|me|il|cn)(-gov)?-(north|south|east|west|central|northeast|southeast|northwest|southwest)-\d{1,2}$")
"""The shape of an AWS Region code (``us-east-1``, ``ap-southeast-7``, ``us-gov-west-1``), as AWS
lists them: https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-region-billing-codes.html"""
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
"""``family.size`` as EC2 names instance types: https://docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html"""
ARCHES = ("x86_64", "arm64")
PLAN_MARKETS = MARKETS + ("any",)


class _Fields:
    """Reads one value of plans.json after another; every refusal names the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: {where}: {problem}; run 'd2c recommend' again")

    def get(self, mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict):
            raise self.fail(where or "(top level)", "must be a JSON object")
        if key not in mapping:
            raise self.fail(f"{where}.{key}" if where else key, "missing")
        return mapping[key]

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty string, got {value!r}")
        return value

    def whole(self, value: Any, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(where, f"must be between {low} and {high}, got {value}")
        return value

    def amount(self, value: Any, where: str, *, zero_ok: bool = False) -> float:
        """A finite number above zero (or at least zero with ``zero_ok``); NaN, inf and strings refused."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
            raise self.fail(where, f"{value!r} is not a usable amount (a finite number {'>= 0' if zero_ok else '> 0'})")
        return number

    def choice(self, value: Any, where: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(where, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def region(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not REGION_RE.match(value):
            raise self.fail(where, f"{value!r} is not an AWS region code such as 'us-east-1'")
        return value

    def zone(self, value: Any, where: str, region: str) -> str:
        if not isinstance(value, str) or not zone_in_region(value, region):
            raise self.fail(where, f"{value!r} is not an Availability Zone of {region} such as '{region}a' or an AZ ID such as 'use1-az2'")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {value!r}")
        return value

    def estimate(self, value: Any, where: str) -> Estimate:
        p50 = self.amount(self.get(value, "p50", where), f"{where}.p50", zero_ok=True)
        p90 = self.amount(self.get(value, "p90", where), f"{where}.p90", zero_ok=True)
        if p90 < p50:
            raise self.fail(f"{where}.p90", f"{p90} is below p50 {p50}")
        return Estimate(p50, p90)

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, "must be a non-empty list")
        return value


def _allocation(f: _Fields, raw: Any, where: str, plan_region: str) -> RoleAllocation:
    get = lambda key: f.get(raw, key, where)  # noqa: E731 - a local shorthand
    region = f.region(get("region"), f"{where}.region")
    if region != plan_region:
        raise f.fail(f"{where}.region", f"{region!r} differs from the plan's region {plan_region!r}")
    instance_type = f.text(get("instance_type"), f"{where}.instance_type")
    if not INSTANCE_TYPE_RE.match(instance_type):
        raise f.fail(f"{where}.instance_type", f"{instance_type!r} is not an EC2 instance type such as 'c6i.xlarge'")
    vcpus = f.whole(get("vcpus"), f"{where}.vcpus", 1, MAX_VCPUS)
    return RoleAllocation(
        role=f.text(get("role"), f"{where}.role"),
        instance_type=instance_type,
        count=f.whole(get("count"), f"{where}.count", 1, MAX_COUNT),
        market=f.choice(get("market"), f"{where}.market", MARKETS),
        region=region,
        vcpus=vcpus,
        memory_gib=f.amount(get("memory_gib"), f"{where}.memory_gib"),
        arch=f.choice(get("arch"), f"{where}.arch", ARCHES),
        price_usd_h=f.amount(get("price_usd_h"), f"{where}.price_usd_h"),
        # 0 for a service role's hosts, which run no ranks.
        workers_per_instance=f.whole(get("workers_per_instance"), f"{where}.workers_per_instance", 0, MAX_WORKERS_PER_INSTANCE),
        on_demand_usd_h=_optional(raw, "on_demand_usd_h", lambda v: f.amount(v, f"{where}.on_demand_usd_h")),
        cpu_credits=_optional(raw, "cpu_credits", lambda v: f.choice(v, f"{where}.cpu_credits", CREDIT_MODES)),
        zone=_optional(raw, "zone", lambda v: f.zone(v, f"{where}.zone", region)),
        root_gb=_optional(raw, "root_gb", lambda v: f.amount(v, f"{where}.root_gb")),
    )


def _plan(f: _Fields, raw: Any, where: str) -> Plan:
    region = f.region(f.get(raw, "region", where), f"{where}.region")
    roles = tuple(_allocation(f, a, f"{where}.roles[{i}]", region) for i, a in enumerate(f.items(f.get(raw, "roles", where), f"{where}.roles")))
    return Plan(
        rank=f.whole(f.get(raw, "rank", where), f"{where}.rank", 1, 10_000),
        region=region,
        why=f.text(f.get(raw, "why", where), f"{where}.why"),
        on_frontier=f.flag(raw.get("on_frontier", False), f"{where}.on_frontier"),
        time_s=f.estimate(f.get(raw, "time_s", where), f"{where}.time_s"),
        cost_usd=f.estimate(f.get(raw, "cost_usd", where), f"{where}.cost_usd"),
        roles=roles,
        breakdown=_breakdown(f, raw.get("cost_breakdown"), f"{where}.cost_breakdown"),
        also_in=tuple(_alternative(f, a, f"{where}.also_in[{i}]") for i, a in enumerate(_list(f, raw.get("also_in", []), f"{where}.also_in"))),
    )


def _breakdown(f: _Fields, raw: Any, where: str) -> CostBreakdown | None:
    """A plan's cost by item (absent in plans made before it was recorded)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - set(CostBreakdown.__dataclass_fields__):
        raise f.fail(where, f"must be an object with the items {', '.join(CostBreakdown.__dataclass_fields__)}")
    return CostBreakdown(**{key: f.amount(value, f"{where}.{key}", zero_ok=True) for key, value in raw.items()})


def _optional(raw: Any, key: str, read: Callable[[Any], Any]) -> Any:
    value = raw.get(key) if isinstance(raw, dict) else None
    return None if value is None else read(value)


def _list(f: _Fields, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise f.fail(where, "must be a list")
    return value


def _alternative(f: _Fields, raw: Any, where: str) -> Alternative:
    region = f.region(f.get(raw, "region", where), f"{where}.region")
    return Alternative(
        region=region,
        cost_usd=f.estimate(f.get(raw, "cost_usd", where), f"{where}.cost_usd"),
        zone=_optional(raw, "zone", lambda v: f.zone(v, f"{where}.zone", region)),
    )


def load_plans(path: Path) -> PlanSet:
    """Read plans.json and check every field: typed, finite, in range; UsageError naming the field.

    A plans file is a text file anyone can edit; nothing in it is trusted before it is checked
    (a count of 1.5, a price of NaN or 0, a market ``reserved`` are refused here, before any
    run folder or journal entry exists).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such plans file; run 'd2c recommend -o {path}' first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda name: float(name))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: not a valid plans file ({type(exc).__name__}: {exc}); run 'd2c recommend' again") from None
    f = _Fields(path)
    if not isinstance(raw, dict):
        raise f.fail("(top level)", "must be a JSON object")
    if raw.get("version") != PLANS_VERSION:
        raise UsageError(f"{path}: version {raw.get('version')!r} is not supported (expected {PLANS_VERSION}); run 'd2c recommend' again")
    inputs = f.get(raw, "inputs", "")
    deadline = f.get(inputs, "deadline_s", "inputs")
    plans = tuple(_plan(f, p, f"plans[{i}]") for i, p in enumerate(f.items(f.get(raw, "plans", ""), "plans")))
    ranks = [p.rank for p in plans]
    for index, rank in enumerate(ranks):
        if rank in ranks[:index]:
            raise f.fail(f"plans[{index}].rank", f"rank {rank} appears twice")
    regions = f.get(inputs, "regions", "inputs")
    if not isinstance(regions, list):
        raise f.fail("inputs.regions", "must be a list of region codes")
    return PlanSet(
        descriptor=f.text(f.get(raw, "descriptor", ""), "descriptor"),
        created_at=f.text(f.get(raw, "created_at", ""), "created_at"),
        budget_usd=f.amount(f.get(inputs, "budget_usd", "inputs"), "inputs.budget_usd"),
        deadline_s=None if deadline is None else f.amount(deadline, "inputs.deadline_s"),
        scale=f.amount(f.get(inputs, "scale", "inputs"), "inputs.scale"),
        profile_digest=f.text(f.get(inputs, "profile_digest", "inputs"), "inputs.profile_digest"),
        catalog_source=f.text(f.get(inputs, "catalog_source", "inputs"), "inputs.catalog_source"),
        catalog_fetched_at=f.text(f.get(inputs, "catalog_fetched_at", "inputs"), "inputs.catalog_fetched_at"),
        market=f.choice(f.get(inputs, "market", "inputs"), "inputs.market", PLAN_MARKETS),
        regions=tuple(f.region(r, f"inputs.regions[{i}]") for i, r in enumerate(regions)),
        output_gb=f.amount(inputs.get("output_gb", 0.0), "inputs.output_gb", zero_ok=True),
        plans=plans,
    )
