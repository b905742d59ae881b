"""``d2c recommend`` without the terminal: model + catalog + roles + limits -> ranked plans.

Order: candidates (``planner.candidates``), capacity levels and per-region problems
(``planner.problem``), the k cheapest distinct plans and the cost/time frontier
(``planner.ranking``), each with a one-line reason. When no plan meets the limits,
:class:`d2c.errors.NoPlanError` names the binding limit and by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from d2c.descriptor import SERVICE_MEMORY_MB, Descriptor, Role
from d2c.durations import format_duration
from d2c.errors import NoPlanError, UsageError
from planner import ranking
from planner.billing import BillingRules, instance_items, plan_fixed_items
from planner.candidates import DEFAULT_MAX_TYPES, Limits, build_candidates, describe_filters
from planner.catalog import Catalog
from planner.enumeration import homogeneous_bests
from planner.plans import Alternative, Plan, PlanSet, RoleAllocation
from planner.problem import HOST_OVERHEAD_MB, RoleGroup, Subproblem, build_levels, build_subproblems, capacity_range, evaluate
from profiler.prediction import Estimate, RuntimePredictor

DEFAULT_ROOT_GB = 8.0
"""Root volume of an app that is not in a VM (the Ubuntu AMI default)."""
UPLOAD_MBIT_S = 50.0
"""Assumed desktop uplink for the image upload before launch, Mbit/s: d2c cannot know the user's
line, and AWS documents none; the run measures the real rate and the watchdog holds the deadline."""


@dataclass(frozen=True)
class Recommendation:
    """The ranked plans and everything the plot shows."""

    plans: tuple[Plan, ...]
    points: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    """(p90 time s, p50 cost USD) of the cheapest single-type plan of every candidate type (only
    when asked for: they cost a search of their own)."""


PROFILE_ONLY_ROLE = "app"
PROFILE_ONLY_MAX = 64
"""Without a descriptor: one role of 1..64 instances, each running workers and one the master."""


def profile_only_groups() -> tuple[RoleGroup, None]:
    """The one auto-count role planned for someone with a profile and no d2c.yaml."""
    return RoleGroup(PROFILE_ONLY_ROLE, 1, PROFILE_ONLY_MAX, works=True, hosts_master=True, ebs_gb=DEFAULT_ROOT_GB), None


def role_groups(descriptor: Descriptor, disk_bytes: dict[str, int] | None = None) -> tuple[RoleGroup, RoleGroup | None]:
    """The working role and the separate master role (if any) of a descriptor.

    ``disk_bytes`` maps a role to its image's virtual disk size (what EC2 creates the root
    volume at); without it a VM image is sized from its appliance's declared disks or its file.
    """
    root = lambda role: _root_gb(role, (disk_bytes or {}).get(role.name))  # noqa: E731
    master = descriptor.master
    worker = descriptor.working
    if worker is master:
        low, high = _counts(master)
        return RoleGroup(master.name, low, high, works=True, hosts_master=True, ebs_gb=root(master)), None
    low, high = _counts(worker)
    # The master host runs ranks too (its slots in the hostfile and D2C_WORKER_COUNT), so it works.
    return (
        RoleGroup(worker.name, max(low, 1), high, works=True, hosts_master=False, ebs_gb=root(worker)),
        RoleGroup(master.name, 1, 1, works=True, hosts_master=True, ebs_gb=root(master)),
    )


def service_groups(descriptor: Descriptor, disk_bytes: dict[str, int] | None = None) -> tuple[RoleGroup, ...]:
    """The descriptor's service roles (neither master nor profiled workers), each at its least count:
    a service host adds cost and no speed, so more of them than the role's minimum never helps."""
    groups = []
    for role in descriptor.services:
        low = role.count if role.count is not None else role.min_count
        if low > 0:
            groups.append(RoleGroup(
                role.name, low, low, works=False, hosts_master=False,
                ebs_gb=_root_gb(role, (disk_bytes or {}).get(role.name)),
                memory_mb=role.memory_mb if role.memory_mb is not None else SERVICE_MEMORY_MB,
            ))
    return tuple(groups)


def _counts(role: Role) -> tuple[int, int]:
    return (role.count, role.count) if role.count is not None else (max(role.min_count, 1), role.max_count)


def _root_gb(role: Role, virtual_bytes: int | None = None) -> float:
    """Root volume for a role: the VM's virtual disk size (at least 8 GB), or 8 GB for a folder app."""
    size = virtual_bytes if virtual_bytes is not None else _image_disk_bytes(role.image)
    return max(DEFAULT_ROOT_GB, math.ceil(size / 2**30))


def _image_disk_bytes(image: Path) -> int:
    if image.is_dir() or not image.exists():
        return 0
    if image.suffix.lower() in (".ova", ".ovf"):
        from d2c.ovf import read_appliance

        return sum(disk.capacity_bytes for disk in read_appliance(image).disks)
    return image.stat().st_size


def billing_rules(descriptor: Descriptor | None, output_gb: float) -> BillingRules:
    """Billing rules for this app: image snapshot storage from its image files (snapshots store the
    blocks written, about the file's size), their upload time at ``UPLOAD_MBIT_S``, egress of its
    outputs (at each plan's region's rate)."""
    if descriptor is None:
        return BillingRules(egress_gb=output_gb)
    images = {role.image for role in descriptor.roles if not role.image.is_dir() and role.image.exists()}
    image_bytes = sum(path.stat().st_size for path in images)
    return BillingRules(
        egress_gb=output_gb, image_gb=image_bytes / 2**30,
        upload_s=image_bytes * 8 / (UPLOAD_MBIT_S * 1e6),
    )


def default_arch(descriptor: Descriptor) -> str | None:
    """The architecture the app's hosts need, or None when either will do.

    VM images from VirtualBox on a desktop are x86_64. A folder app can run on either unless it
    holds compiled programs, which fix the architecture they were built for.
    """
    from d2c.elf import folder_architectures

    if not all(role.image.is_dir() for role in descriptor.roles):
        return "x86_64"
    needed: set[str] = set()
    for role in descriptor.roles:
        needed |= folder_architectures(role.image)
    if len(needed) > 1:
        raise UsageError(f"{descriptor.path}: the app folders hold programs built for {' and '.join(sorted(needed))}; rebuild them for one architecture")
    return next(iter(needed), None)


def build_problem(
    predictor: RuntimePredictor,
    catalog: Catalog,
    groups: tuple[RoleGroup, RoleGroup | None],
    limits: Limits,
    *,
    scale: float,
    rules: BillingRules,
    host_speed: float = 1.0,
    services: tuple[RoleGroup, ...] = (),
) -> list[Subproblem]:
    """Candidates priced on the capacity levels, one problem per region and market; every plan
    also carries the ``services`` hosts (``service_groups``)."""
    workers, master = groups
    candidates = build_candidates(catalog, limits, host_speed)
    if not candidates:
        raise NoPlanError(f"no instance type in the catalog ({catalog.source}) matches {describe_filters(limits)}; widen --regions, --market or --types")
    lo, hi = capacity_range(candidates, workers, limits.max_instances, master)
    levels = build_levels(predictor, scale, lo, hi)
    subs = build_subproblems(
        candidates, workers, master, levels, rules,
        quotas=catalog.vcpu_quotas, max_instances=limits.max_instances, homogeneous=limits.homogeneous,
        max_types=limits.max_types or DEFAULT_MAX_TYPES, balance=limits.balance, services=services,
    )
    if not subs and services and not build_subproblems(candidates, workers, master, levels, rules, balance=limits.balance):
        needs = ", ".join(f"{g.role} {g.memory_mb:.0f} MB" for g in services)
        raise NoPlanError(
            f"no instance type matching {describe_filters(limits)} holds the service roles' memory ({needs}, plus 10% headroom "
            f"and {HOST_OVERHEAD_MB:.0f} MB per host) within the limits; lower their memory_mb or allow more types"
        )
    if not subs:
        memory = predictor.memory(scale, lo / 100)
        raise NoPlanError(
            f"no instance type matching {describe_filters(limits)} has the memory for this app "
            f"({memory.per_worker_mb:.0f} MB per worker, {memory.master_mb:.0f} MB for the master, plus 10% headroom "
            f"and {HOST_OVERHEAD_MB:.0f} MB per host for the OS and d2c); "
            "allow memory-rich families (e.g. --types r7i) or reduce --scale"
        )
    return subs


def recommend(subs: list[Subproblem], limits: Limits, *, top: int = 5, solver: str = "highs", points: bool = False) -> Recommendation:
    """Ranked plans: the ``top`` cheapest distinct worker mixes, then the frontier up to the fastest
    affordable one. ``points``: also every type's cheapest single-type plan, for the plot."""
    budget, deadline = limits.budget_usd, limits.deadline_s
    best = ranking.best_plans(subs, top=top, budget_usd=budget, deadline_s=deadline, solver=solver)
    if not best:
        raise NoPlanError(explain_no_plan(subs, limits, solver))
    front = ranking.frontier(subs, best[0], budget_usd=budget, deadline_s=deadline, solver=solver)
    frontier_fleets = {f.fleet for f in front}
    ordered = list(best) + [f for f in sorted(front, key=lambda f: f.evaluation.cost50) if f.fleet not in {b.fleet for b in best}]
    fastest = min(front, key=lambda f: (f.evaluation.time90, f.evaluation.cost50))
    plans = []
    for rank, found in enumerate(ordered, start=1):
        why = _why(rank, found, best[0], fastest, limits, ranked_by_cost=rank <= len(best))
        plans.append(to_plan(found, rank, why, found.fleet in frontier_fleets))
    if not points:
        return Recommendation(plans=tuple(plans))
    plot_points = []
    for sub in subs:
        for i, count, master, _ in homogeneous_bests(sub, budget_usd=budget, deadline_s=None):
            evaluation = evaluate(sub, {i: count}, master, budget_usd=budget, deadline_s=None)
            if evaluation is not None:
                plot_points.append((float(evaluation.time90), float(evaluation.cost50)))
    return Recommendation(plans=tuple(plans), points=tuple(plot_points))


def _money(value: float) -> str:
    if 0 < abs(value) < 0.005:
        return "<$0.01" if value > 0 else "-<$0.01"
    return f"${value:,.2f}"


def _why(rank: int, found: ranking.Found, first: ranking.Found, fastest: ranking.Found, limits: Limits, ranked_by_cost: bool) -> str:
    e, e1 = found.evaluation, first.evaluation
    meets = f"meets {format_duration(limits.deadline_s)} and " if limits.deadline_s else ""
    if rank == 1:
        return f"cheapest plan that {meets}fits {_money(limits.budget_usd)} at p90 ({_money(limits.budget_usd - e.cost90)} headroom)"
    extra = e.cost50 - e1.cost50
    faster = e1.time90 - e.time90
    pace = f"{format_duration(abs(faster))} {'faster' if faster >= 0 else 'slower'}"
    if found.fleet == fastest.fleet:
        return f"fastest plan within {_money(limits.budget_usd)}: {format_duration(e.time90)} at p90, {pace} than #1 for {_money(extra)} more"
    if not ranked_by_cost:
        return f"on the cost/time frontier: {pace} than #1 for {_money(extra)} more; no plan is both cheaper and faster"
    share = f" ({extra / e1.cost50:+.0%})" if e1.cost50 > 0 else ""
    return f"next cheapest distinct mix: {_money(extra)}{share} over #1, {pace}"


def to_plan(found: ranking.Found, rank: int, why: str, on_frontier: bool) -> Plan:
    """A found fleet as a ranked :class:`Plan` for plans.json."""
    sub = found.sub
    allocations = []
    e = found.evaluation
    run_s = float(sub.levels.t50[e.level])
    breakdown = plan_fixed_items(run_s, sub.rules)  # sub.rules carry the region's egress rate
    used = [(sub.master, found.master, 1)] if found.master is not None else []
    used += [(sub.workers, i, count) for i, count in sorted(found.counts.items(), key=lambda item: sub.workers.cands[item[0]].instance_type)]
    hosts = [(group.role, group.cands[index], count) for group, index, count in used]
    hosts += [(service.role, service.cand, service.count) for service in sub.services]
    for role, cand, count in hosts:
        allocations.append(_allocation(role.role, cand, count, role.works, role.ebs_gb, sub.zone))
        role_rules = sub.rules if role.ebs_gb is None else replace(sub.rules, ebs_gb=role.ebs_gb)
        one = instance_items(cand.price_usd_h, run_s, cand.rate_per_s, role_rules, cand.credit_usd_h)
        breakdown = breakdown + one.times(count)
    return Plan(
        rank=rank,
        region=sub.region,
        roles=tuple(allocations),
        time_s=Estimate(p50=round(float(e.time50), 1), p90=round(float(e.time90), 1)),
        cost_usd=Estimate(p50=round(float(e.cost50), 4), p90=round(float(e.cost90), 4)),
        why=why,
        on_frontier=on_frontier,
        also_in=_also_in(found),
        breakdown=breakdown.rounded(),
    )


def _also_in(found: ranking.Found) -> tuple[Alternative, ...]:
    """The other places (regions, zones) running the same worker mix, cheapest first: identical
    problems, then other finds."""
    cost = lambda e: Estimate(p50=round(float(e.cost50), 4), p90=round(float(e.cost90), 4))  # noqa: E731
    seen = {(found.sub.region, found.sub.zone)}
    also = []
    for other in (found, *found.also):
        for place in ([] if other is found else [(other.sub.region, other.sub.zone)]) + list(other.sub.twins):
            if place not in seen:
                seen.add(place)
                also.append((float(other.evaluation.cost50), place[0], place[1] or "", cost(other.evaluation)))
    return tuple(Alternative(region, estimate, zone or None) for _, region, zone, estimate in sorted(also))


def _allocation(role: str, cand, count: int, works: bool, root_gb: float | None, zone: str | None) -> RoleAllocation:
    """``workers_per_instance`` is the host's slots: its ranks in the hostfile and D2C_WORKER_COUNT.
    ``zone`` is the problem's: every host of a zone-priced spot plan launches there."""
    offer = cand.offer
    return RoleAllocation(
        role=role, instance_type=offer.instance_type, count=int(count), market=cand.market, region=offer.region,
        vcpus=int(offer.vcpus), memory_gib=float(offer.memory_gib), arch=offer.arch,
        price_usd_h=float(cand.price_usd_h), workers_per_instance=int(cand.workers_per_instance) if works else 0,
        on_demand_usd_h=float(offer.on_demand_usd_h) if offer.on_demand_usd_h else None,
        cpu_credits=cand.cpu_credits, root_gb=root_gb, zone=zone,
    )


def explain_no_plan(subs: list[Subproblem], limits: Limits, solver: str = "highs") -> str:
    """Which limit binds and by how much, e.g. "the cheapest plan that meets 3h costs $73.40, …"."""
    budget, deadline = limits.budget_usd, limits.deadline_s
    money = _money(budget)
    unlimited = math.inf
    if deadline is not None:
        meeting = ranking.best_plans(subs, top=1, budget_usd=unlimited, deadline_s=deadline, solver=solver)
        affordable = ranking.fastest_time(subs, budget_usd=budget, deadline_s=None, solver=solver)
        when = format_duration(deadline)
        if meeting and affordable is not None:
            cost = meeting[0].evaluation.cost90
            return (
                f"no plan fits both limits: the cheapest plan that meets {when} costs {_money(cost)} (p90), "
                f"{_money(cost - budget)} over the {money} budget; within {money} the fastest plan takes "
                f"{format_duration(affordable)} (p90), {format_duration(affordable - deadline)} past the deadline"
            )
        if meeting:
            cost = meeting[0].evaluation.cost90
            return f"no plan fits the {money} budget: the cheapest plan that meets {when} costs {_money(cost)} (p90), {_money(cost - budget)} over"
        fastest_any = ranking.fastest_time(subs, budget_usd=unlimited, deadline_s=None, solver=solver)
        if fastest_any is None:
            return _no_fleet(limits)
        return (
            f"no plan meets the {when} deadline at any price: the fastest possible takes {format_duration(fastest_any)} (p90), "
            f"{format_duration(fastest_any - deadline)} too long; allow more instances (--max-instances), other regions, or a later deadline"
        )
    cheapest = ranking.best_plans(subs, top=1, budget_usd=unlimited, deadline_s=None, solver=solver)
    if not cheapest:
        return _no_fleet(limits)
    cost = cheapest[0].evaluation.cost90
    return f"no plan fits the {money} budget: the cheapest plan costs {_money(cost)} (p90), {_money(cost - budget)} over"


def _no_fleet(limits: Limits) -> str:
    cap = f" within {limits.max_instances} instances" if limits.max_instances else ""
    return f"no fleet{cap} satisfies the roles' counts and vCPU quotas with {describe_filters(limits)}"


def plan_set(
    recommendation: Recommendation,
    limits: Limits,
    *,
    descriptor_name: str,
    scale: float,
    profile_digest: str,
    output_gb: float = 0.0,
    catalog: Catalog,
) -> PlanSet:
    """The plans.json content for ``recommendation``."""
    return PlanSet(
        descriptor=descriptor_name,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        budget_usd=limits.budget_usd,
        deadline_s=limits.deadline_s,
        scale=scale,
        profile_digest=profile_digest,
        catalog_source=catalog.source,
        catalog_fetched_at=catalog.fetched_at.isoformat(timespec="seconds"),
        market=limits.market,
        regions=tuple(limits.regions),
        plans=recommendation.plans,
        output_gb=output_gb,
    )
