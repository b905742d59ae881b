"""Ranked plans and the ``plans.json`` file that ``d2c run --plan N`` reads.

Format (``version`` 1)::

    {"version": 1, "created_at": ISO-8601, "descriptor": "<name>",
     "inputs": {"budget_usd": 50.0, "deadline_s": 10800 | null, "scale": 1.0,
                "profile_digest": "sha256:…", "catalog_source": "snapshot",
                "catalog_fetched_at": ISO-8601, "market": "any", "regions": [...],
                "output_gb": 0.0},
     "plans": [{"rank": 1, "region": "us-east-1", "why": "…", "on_frontier": true,
                "time_s": {"p50": …, "p90": …}, "cost_usd": {"p50": …, "p90": …},
                "zone": "us-east-1a" | null,
                "cost_breakdown": {"compute": …, "ebs": …, "public_ipv4": …, "egress": …,
                                   "snapshots": …, "cpu_credits": …},
                "roles": [{"role": "master", "instance_type": "c6i.xlarge", "count": 1,
                           "market": "on-demand", "region": "us-east-1", "vcpus": 4,
                           "memory_gib": 8.0, "arch": "x86_64", "price_usd_h": 0.17,
                           "workers_per_instance": 4, "on_demand_usd_h": 0.17,
                           "cpu_credits": null, "zone": null, "root_gb": 8.0}, …]}, …]}

``cost_breakdown`` is the p50 cost by what AWS bills (``planner.billing``); its items add up to
``cost_usd.p50``. ``zone`` is the Availability Zone a spot price came from (null: the launch
picks the zone). ``cpu_credits`` is the credit mode a burstable type was priced with and is
launched in; ``price_usd_h`` includes its surplus credits in ``unlimited`` mode.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from d2c.errors import UsageError
from planner.billing import CostBreakdown
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
class Plan:
    """One way to run the app: the instances per role, predicted time and cost, and its rank."""

    rank: int
    region: str
    roles: tuple[RoleAllocation, ...]
    time_s: Estimate
    cost_usd: Estimate
    why: str
    on_frontier: bool = False
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
                }
                for p in self.plans
            ],
        }

    def save(self, path: Path) -> None:
        """Write plans.json atomically."""
        from d2c.files import atomic_write_json

        atomic_write_json(path, self.to_dict())


def _finite(value: object, field_name: str, path: Path, *, minimum: float | None = None) -> float:
    """A finite number above zero (or at least ``minimum``), else a one-line UsageError."""
    number = float(value)  # type: ignore[arg-type]
    low_ok = number >= minimum if minimum is not None else number > 0
    if not (math.isfinite(number) and low_ok):
        raise UsageError(f"{path}: {field_name}: {value!r} is not a usable amount; run 'd2c recommend' again")
    return number


def load_plans(path: Path) -> PlanSet:
    """Read and check a plans.json written by ``d2c recommend``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such plans file; run 'd2c recommend -o {path}' first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != PLANS_VERSION:
            raise UsageError(f"{path}: version {raw.get('version')!r} is not supported (expected {PLANS_VERSION}); run 'd2c recommend' again")
        inputs = raw["inputs"]
        plans = tuple(
            Plan(
                rank=int(p["rank"]),
                region=p["region"],
                why=p["why"],
                on_frontier=bool(p.get("on_frontier", False)),
                time_s=Estimate(**p["time_s"]),
                cost_usd=Estimate(**p["cost_usd"]),
                roles=tuple(RoleAllocation(**a) for a in p["roles"]),
                breakdown=CostBreakdown(**p["cost_breakdown"]) if p.get("cost_breakdown") else None,
            )
            for p in raw["plans"]
        )
        return PlanSet(
            descriptor=raw["descriptor"],
            created_at=raw["created_at"],
            budget_usd=_finite(inputs["budget_usd"], "inputs.budget_usd", path),
            deadline_s=None if inputs["deadline_s"] is None else _finite(inputs["deadline_s"], "inputs.deadline_s", path),
            scale=float(inputs["scale"]),
            profile_digest=inputs["profile_digest"],
            catalog_source=inputs["catalog_source"],
            catalog_fetched_at=inputs["catalog_fetched_at"],
            market=inputs["market"],
            regions=tuple(inputs["regions"]),
            output_gb=_finite(inputs.get("output_gb", 0.0), "inputs.output_gb", path, minimum=0.0),
            plans=plans,
        )
    except UsageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: not a valid plans file ({type(exc).__name__}: {exc}); run 'd2c recommend' again") from None
