"""The planning problem the integer program solves and the brute-force check enumerates.

Semantics (the model both solve exactly):

* **Capacity levels.** A fleet's capacity ``W`` is the sum over its working instances of their
  effective workers (``profiler.fleet``), in integer units. ``W`` is read on a grid of levels:
  every unit from the smallest instance's capacity up, in steps of ``LEVEL_RATIO`` (2 %, at
  least one unit). *A fleet's runtime is the model's runtime at the largest level its capacity
  reaches*, so a prediction is conservative by at most one step (2 %).
* **Monotone model.** Level runtimes are the model's p50 and p90 made non-increasing (a running
  minimum). The grid runs up to the largest fleet's capacity: past a model's fastest point (USL,
  Ernest) a fleet is read at the fastest point's runtime, the least the model predicts (a cost
  search never buys capacity it does not need, so such a fleet is chosen only where integer
  sizes leave no smaller one). Per-worker and master memory at a level are the
  largest the model predicts at that level or above (exact for models whose per-worker memory
  does not grow with the worker count, conservative otherwise). Together these make a bigger
  fleet never slower and never short of memory, which keeps the pruning below exact.
* **Levels are exact.** A fleet's capacity lies in exactly one level: the program bounds it from
  below (``units_k``) *and* above (``upper_k``), so the level solved for is the level the fleet is
  read at, and every fleet the candidates can form has one.
* **Memory.** Every host must hold ``MEMORY_HEADROOM`` (1.10) times its predicted peak RSS plus
  ``HOST_OVERHEAD_MB`` (the OS and d2c's own agent): its workers (ranks) times the per-worker
  peak, plus the master's peak on the host that runs the master (each host of a single-role app
  is sized as if it ran the master too). Fleets that fit run in the model's in-memory regime, so
  the runtime is not asked for a spilling one.
* **Roles.** One working role (the worker role, or the master role when it is the only role)
  whose instances may mix up to ``max_types`` types, and optionally a separate master role of
  exactly one instance. The master host gets ranks too (one per vCPU, in the MPI hostfile and
  ``D2C_WORKER_COUNT``), so its speed counts in the fleet's capacity and its memory holds its
  ranks besides the master process. Burstable types never serve as the master: the master
  coordinates the whole run, and a throttled master slows every worker. A plan stays in one
  region and one market, and a spot plan in one zone when the catalog prices zones
  (``planner.candidates``): each zone is a problem of its own, at that zone's prices.
* **Service roles** (an I/O server, a parameter server: neither the master nor the profiled
  workers) run their own command and no ranks. Each gets its least count of the cheapest type
  per hour that holds its ``memory_mb`` (:func:`service_hosts`), billed for the whole run: a
  per-level constant in the plan's fixed cost, with its vCPUs and instances taken off the quota
  and the instance limit first. Choosing them apart is exact, since no worker mix changes them.
* **Balance.** ``static`` (a fixed domain decomposition, most MPI codes): the slowest rank sets
  the pace, so a fleet's capacity is its rank count times the slowest rank's speed; the plan
  keeps every host (master included) in one family, where every rank has the same speed, so
  the summed capacity is exactly that. ``dynamic`` (a work queue): capacity is the sum of every
  rank's speed, and families may mix.
* **Cost and time** follow ``planner.billing``: each instance's p50 (p90) cost is its billing at
  the level's p50 (p90) runtime; the plan's time is the slowest type's time.
* **Dominance.** Within a region and market, a type that another type matches or beats on
  capacity, price, interruption rate, memory per worker (and vCPUs, when a quota applies) is
  dropped: swapping it for the better type never makes a plan worse. Ranked plans are therefore
  distinct mixes of undominated types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.billing import BillingRules, instance_usd, plan_fixed_usd, plan_seconds
from planner.candidates import UNITS_PER_WORKER, Candidate
from profiler.prediction import RuntimePredictor

LEVEL_RATIO = 1.02
MEMORY_HEADROOM = 1.10
HOST_OVERHEAD_MB = 512.0
"""Memory the OS and d2c's agent (watchdog, dead-man timer, SSH) hold on every host, about 0.5 GiB."""
BALANCES = ("static", "dynamic")


@dataclass(frozen=True)
class RoleGroup:
    """A role as the planner sees it."""

    role: str
    min_count: int
    max_count: int
    works: bool
    """Its instances run the app's workers and make up the fleet's capacity."""
    hosts_master: bool
    """Its hosts also hold the master process (sized for it)."""
    ebs_gb: float | None = None
    """Root volume per instance; None: the billing rules' default."""
    memory_mb: float = 0.0
    """A service role's memory need per host (its processes' peak), before headroom and overhead."""


@dataclass(frozen=True)
class ServiceHosts:
    """A service role's hosts in one region and market: ``count`` of the cheapest type that holds them."""

    role: RoleGroup
    cand: Candidate
    count: int


@dataclass(frozen=True)
class Levels:
    """The capacity grid and the model's predictions on it."""

    bounds: np.ndarray
    """Capacity units where each level starts, plus one sentinel past the last level."""
    t50: np.ndarray
    t90: np.ndarray
    worker_mb: np.ndarray
    master_mb: np.ndarray

    @property
    def units(self) -> np.ndarray:
        return self.bounds[:-1]

    @property
    def upper(self) -> np.ndarray:
        """Largest capacity (units) each level covers."""
        return self.bounds[1:] - 1

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def index(self, units: int) -> int:
        """The level a fleet of ``units`` capacity reaches; -1 below the grid or past its top."""
        k = int(np.searchsorted(self.bounds, units, side="right")) - 1
        return k if 0 <= k < len(self) else -1


def level_bounds(lo_units: int, hi_units: int, ratio: float = LEVEL_RATIO) -> np.ndarray:
    """Level starts from ``lo_units`` until past ``hi_units``, plus the sentinel."""
    points = [max(1, int(lo_units))]
    while points[-1] <= hi_units:
        points.append(max(points[-1] + 1, int(np.ceil(points[-1] * ratio))))
    return np.asarray(points, dtype=np.int64)


def build_levels(predictor: RuntimePredictor, scale: float, lo_units: int, hi_units: int) -> Levels:
    """Sample the model on the grid and make it monotone (see the module docstring)."""
    bounds = level_bounds(lo_units, hi_units)
    workers = bounds[:-1] / UNITS_PER_WORKER
    estimates = [predictor.runtime(scale, float(w)) for w in workers]
    t50 = np.array([e.p50 for e in estimates], dtype=float)
    t90 = np.maximum(np.array([e.p90 for e in estimates], dtype=float), t50)
    memory = [predictor.memory(scale, float(w)) for w in workers]
    worker_mb = np.array([m.per_worker_mb for m in memory], dtype=float)
    master_mb = np.array([m.master_mb for m in memory], dtype=float)
    suffix_max = lambda a: np.maximum.accumulate(a[::-1])[::-1]  # noqa: E731
    return Levels(
        bounds=bounds,
        t50=np.minimum.accumulate(t50),
        t90=np.minimum.accumulate(t90),
        worker_mb=suffix_max(worker_mb),
        master_mb=suffix_max(master_mb),
    )


@dataclass
class GroupArrays:
    """One role's candidates in one region and market, priced on every level."""

    role: RoleGroup
    cands: tuple[Candidate, ...]
    cap: np.ndarray
    """Capacity units per instance (0 for a role that runs no workers)."""
    vcpus: np.ndarray
    fits: np.ndarray
    """(candidates, levels): the host holds its peak memory with headroom."""
    cost50: np.ndarray
    cost90: np.ndarray
    time50: np.ndarray
    time90: np.ndarray

    def allowed(self, deadline_s: float | None) -> np.ndarray:
        """(candidates, levels): usable at that level under the deadline."""
        if deadline_s is None:
            return self.fits
        return self.fits & (self.time90 <= deadline_s * (1 + 1e-12))


@dataclass
class Subproblem:
    """Everything about planning within one region and market (and zone, for zone-priced spot)."""

    region: str
    market: str
    levels: Levels
    workers: GroupArrays
    master: GroupArrays | None
    fixed50: np.ndarray
    fixed90: np.ndarray
    quota_vcpus: float | None = None
    max_instances: int | None = None
    max_types: int | None = None
    """Most worker types in one plan; None: any number."""
    balance: str = "dynamic"
    family: str = ""
    """The one family of every candidate (static balance); empty when families mix."""
    twins: list[tuple[str, str | None]] = field(default_factory=list)
    """Other (region, zone) places where this very problem arises (same types, prices and billing
    rules): the same plans run there."""
    rules: BillingRules = BillingRules()
    """The billing rules the costs were priced with (for a plan's cost breakdown)."""
    solver_state: dict = field(default_factory=dict, repr=False)
    """Solver models kept between solves (``planner.highs_model``)."""
    floors: dict = field(default_factory=dict, repr=False)
    """Budget -> the least p50 cost any plan of this problem can have, whatever the deadline
    (``planner.ranking``), kept between searches."""
    services: tuple[ServiceHosts, ...] = ()
    """Service hosts every plan of this problem carries; their cost is in ``fixed50``/``fixed90``."""
    zone: str | None = None
    """The zone whose spot prices this problem has; None on demand or with region-wide prices."""

    @property
    def one_family(self) -> bool:
        """Every host of a plan in one family (static balance)."""
        return self.balance == "static"

    def master_cap(self, master: int | None) -> int:
        """Capacity units the master host adds (0 without one)."""
        return 0 if master is None or self.master is None else int(self.master.cap[master])


@dataclass(frozen=True)
class Evaluation:
    """A fleet's level, predicted time and cost, and whether it meets every limit."""

    level: int
    time50: float
    time90: float
    cost50: float
    cost90: float


def _group_arrays(group: RoleGroup, cands: list[Candidate], levels: Levels, rules: BillingRules) -> GroupArrays:
    mem = np.array([c.memory_mb for c in cands])
    wpi = np.array([c.workers_per_instance for c in cands], dtype=float)
    price = np.array([c.price_usd_h for c in cands])
    rate = np.array([c.rate_per_s for c in cands])[:, None]
    if group.works:
        need = wpi[:, None] * levels.worker_mb[None, :] + (levels.master_mb[None, :] if group.hosts_master else 0.0)
    else:
        need = np.broadcast_to(levels.master_mb[None, :], (len(cands), len(levels)))
    role_rules = rules if group.ebs_gb is None else _with_ebs(rules, group.ebs_gb)
    return GroupArrays(
        role=group,
        cands=tuple(cands),
        cap=np.array([c.capacity_units if group.works else 0 for c in cands], dtype=np.int64),
        vcpus=np.array([c.vcpus for c in cands], dtype=float),
        fits=MEMORY_HEADROOM * need + HOST_OVERHEAD_MB <= mem[:, None],
        cost50=instance_usd(price[:, None], levels.t50[None, :], rate, role_rules),
        cost90=instance_usd(price[:, None], levels.t90[None, :], rate, role_rules),
        time50=plan_seconds(levels.t50[None, :], rate, rules),
        time90=plan_seconds(levels.t90[None, :], rate, rules),
    )


def burstable(family: str) -> bool:
    """T2, T3, T3a and T4g earn and spend CPU credits instead of running at full speed
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-performance-instances.html)."""
    return len(family) >= 2 and family[0] == "t" and family[1].isdigit()


def _with_ebs(rules: BillingRules, ebs_gb: float) -> BillingRules:
    from dataclasses import replace

    return replace(rules, ebs_gb=ebs_gb)


def undominated(group: GroupArrays, levels: Levels, use_vcpus: bool, same_family: bool = False) -> np.ndarray:
    """Mask of candidates no other candidate of the group dominates (module docstring).

    With ``same_family`` (static balance) only a type of the same family can dominate: swapping
    across families could break the one-family rule.
    """
    n = len(group.cands)
    if n <= 1:
        return np.ones(n, dtype=bool)
    price = np.array([c.price_usd_h for c in group.cands])
    rate = np.array([c.rate_per_s for c in group.cands])
    mem = (np.array([c.memory_mb for c in group.cands]) - HOST_OVERHEAD_MB) / MEMORY_HEADROOM
    wpi = np.array([c.workers_per_instance for c in group.cands], dtype=float)
    le = lambda a: a[:, None] <= a[None, :]  # noqa: E731 - [i, j]: i's value <= j's
    better = le(price) & le(rate) & (group.cap[:, None] >= group.cap[None, :])
    if same_family:
        family = np.array([c.offer.family for c in group.cands])
        better &= family[:, None] == family[None, :]
    if use_vcpus:
        better &= le(group.vcpus)
    if not group.role.works:
        better &= mem[:, None] >= mem[None, :]
    else:
        masters = (0.0,) if not group.role.hosts_master else (float(levels.master_mb.min()), float(levels.master_mb.max()))
        for m in masters:
            slack = (mem - m) / wpi
            better &= slack[:, None] >= slack[None, :]
    # Identical candidates: the first one stays.
    same = better & better.T
    index = np.arange(n)
    better &= ~same | (index[:, None] < index[None, :])
    np.fill_diagonal(better, False)
    return ~better.any(axis=0)


def _subset(group: GroupArrays, mask: np.ndarray) -> GroupArrays:
    return GroupArrays(
        role=group.role,
        cands=tuple(c for c, keep in zip(group.cands, mask) if keep),
        cap=group.cap[mask], vcpus=group.vcpus[mask], fits=group.fits[mask],
        cost50=group.cost50[mask], cost90=group.cost90[mask], time50=group.time50[mask], time90=group.time90[mask],
    )


def capacity_range(
    candidates: list[Candidate], workers: RoleGroup, max_instances: int | None, master: RoleGroup | None = None
) -> tuple[int, int]:
    """Smallest and largest capacity (units) any fleet of these candidates can have."""
    caps = [c.capacity_units for c in candidates]
    most = workers.max_count if max_instances is None else min(workers.max_count, max_instances)
    hosts = max(most, 1) + (1 if master is not None and master.works else 0)
    return min(caps), max(caps) * hosts


def build_subproblems(
    candidates: list[Candidate],
    workers: RoleGroup,
    master: RoleGroup | None,
    levels: Levels,
    rules: BillingRules,
    *,
    quotas: dict[str, dict[str, float]] | None = None,
    max_instances: int | None = None,
    homogeneous: bool = False,
    max_types: int | None = None,
    balance: str = "dynamic",
    prune: bool = True,
    services: tuple[RoleGroup, ...] = (),
) -> list[Subproblem]:
    """Group the candidates by (region, market, zone), and by family for static balance, price them
    on every level and prune dominated ones. A place whose problem is identical to an earlier one's
    (same types, prices, rates and quota) is solved once: it is listed in that problem's ``twins``.

    ``homogeneous`` is ``max_types=1``. Burstable types are left out of the master role.
    ``services`` are priced apart (:func:`service_hosts`) and carried by every plan of a problem.
    """
    if homogeneous:
        max_types = 1
    by_key: dict[tuple[str, str, str], list[Candidate]] = {}
    by_place: dict[tuple[str, str, str], list[Candidate]] = {}
    for cand in candidates:
        by_place.setdefault((cand.region, cand.market, cand.zone or ""), []).append(cand)
        # Static balance keeps a plan in one family, so each family is a problem of its own.
        family = cand.offer.family if balance == "static" else ""
        by_key.setdefault((cand.region, cand.market, family), []).append(cand)
    subs = []
    base_rules = rules
    seen: dict[tuple, Subproblem] = {}
    for (region, market, family), every in sorted(by_key.items()):
        rules = base_rules.for_region(region)
        # Priced once for all the zones of a region; each zone's problem takes its own rows.
        priced = [None if group is None else _group_arrays(group, every, levels, rules) for group in (workers, master)]
        zone_of = [c.zone or "" for c in every]
        for zone in sorted(set(zone_of)):
            in_zone = np.array([z == zone for z in zone_of], dtype=bool)
            cands = [c for c, here in zip(every, in_zone) if here]
            quota = (quotas or {}).get(region, {}).get(market)
            hosts = service_hosts(services, by_place[(region, market, zone)])
            if hosts is None:
                continue
            most = max_instances
            if hosts:
                # The service hosts take their share of the vCPU quota and of the instance limit first.
                used_vcpus = sum(h.cand.vcpus * h.count for h in hosts)
                quota = None if quota is None else quota - used_vcpus
                most = None if most is None else most - sum(h.count for h in hosts)
                if (quota is not None and quota <= 0) or (most is not None and most <= 0):
                    continue
            groups = []
            for group, all_arrays in zip((workers, master), priced):
                if group is None:
                    groups.append(None)
                    continue
                arrays = _subset(all_arrays, in_zone)
                keep = arrays.fits.any(axis=1)
                if group is master:
                    keep &= np.array([not burstable(c.offer.family) for c in cands], dtype=bool)
                if prune:
                    keep &= undominated(arrays, levels, quota is not None, same_family=balance == "static")
                groups.append(_subset(arrays, keep))
            sub = _subproblem(region, market, zone, family, groups, hosts, quota, most, levels, rules, seen, max_types, balance)
            if sub is not None:
                subs.append(sub)
    return subs


def _subproblem(region, market, zone, family, groups, hosts, quota, most, levels, rules, seen, max_types, balance) -> Subproblem | None:
    """The problem of one place, or None when it has no candidates or is a twin of one in ``seen``."""
    if not groups[0].cands or (groups[1] is not None and not groups[1].cands):
        return None
    signature = (market, family, quota, rules, _signature(groups[0]), _signature(groups[1]),
                 tuple((h.role, h.cand.instance_type, h.cand.price_usd_h, h.cand.rate_per_s) for h in hosts))
    if signature in seen:
        seen[signature].twins.append((region, zone or None))
        return None
    seen[signature] = Subproblem(
        region=region, market=market, zone=zone or None, family=family, levels=levels, workers=groups[0], master=groups[1],
        fixed50=plan_fixed_usd(levels.t50, rules) + _services_usd(hosts, levels.t50, rules),
        fixed90=plan_fixed_usd(levels.t90, rules) + _services_usd(hosts, levels.t90, rules),
        quota_vcpus=quota, max_instances=most, max_types=max_types, balance=balance, rules=rules, services=hosts,
    )
    return seen[signature]


def service_hosts(services: tuple[RoleGroup, ...], cands: list[Candidate]) -> tuple[ServiceHosts, ...] | None:
    """Each service role's hosts in one region and market; None when a role fits no type there.

    A service host runs no ranks, so its type changes neither the fleet's capacity nor its pace:
    only its cost, which is the same for every worker mix. The cheapest type per hour that holds
    the role's memory (with headroom and the per-host overhead) is therefore the best choice for
    every plan, and is made here rather than in the integer program. Burstable types are left
    out, as for the master: a throttled server slows every worker that waits on it.
    """
    hosts = []
    for role in services:
        fits = [c for c in cands if not burstable(c.offer.family) and MEMORY_HEADROOM * role.memory_mb + HOST_OVERHEAD_MB <= c.memory_mb]
        if not fits:
            return None
        cheapest = min(fits, key=lambda c: (c.price_usd_h, c.rate_per_s, c.vcpus, c.instance_type))
        hosts.append(ServiceHosts(role, cheapest, role.min_count))
    return tuple(hosts)


def _services_usd(hosts: tuple[ServiceHosts, ...], runtime_s: np.ndarray, rules: BillingRules) -> np.ndarray:
    """What the service hosts cost for a run of ``runtime_s`` (per level)."""
    total = np.zeros_like(runtime_s, dtype=float)
    for h in hosts:
        role_rules = rules if h.role.ebs_gb is None else _with_ebs(rules, h.role.ebs_gb)
        total = total + h.count * instance_usd(h.cand.price_usd_h, runtime_s, h.cand.rate_per_s, role_rules)
    return total


def _signature(group: GroupArrays | None) -> tuple:
    """What a group's problem depends on: its types with their price, rate, size and capacity."""
    if group is None:
        return ()
    return tuple((c.instance_type, c.price_usd_h, c.rate_per_s, c.memory_mb, c.vcpus, c.capacity_units) for c in group.cands)


def evaluate(
    sub: Subproblem,
    counts: dict[int, int],
    master: int | None,
    *,
    budget_usd: float,
    deadline_s: float | None,
) -> Evaluation | None:
    """The fleet's prediction, or None when it breaks a limit (the brute-force check's judge).

    ``counts`` maps worker candidate index -> instances; ``master`` is the master candidate index.
    """
    workers = sub.workers
    counts = {i: n for i, n in counts.items() if n > 0}
    total = sum(counts.values())
    if not workers.role.min_count <= total <= workers.role.max_count:
        return None
    if (sub.master is None) != (master is None):
        return None
    if sub.max_types is not None and len(counts) > sub.max_types:
        return None
    if sub.one_family:
        families = {workers.cands[i].offer.family for i in counts}
        if master is not None:
            families.add(sub.master.cands[master].offer.family)
        if len(families) > 1:
            return None
    k = sub.levels.index(sum(int(workers.cap[i]) * n for i, n in counts.items()) + sub.master_cap(master))
    if k < 0:
        return None
    used = [(workers, i, n) for i, n in counts.items()] + ([(sub.master, master, 1)] if master is not None else [])
    if sub.max_instances is not None and sum(n for _, _, n in used) > sub.max_instances:
        return None
    if sub.quota_vcpus is not None and sum(g.vcpus[i] * n for g, i, n in used) > sub.quota_vcpus + 1e-9:
        return None
    if not all(g.allowed(deadline_s)[i, k] for g, i, _ in used):
        return None
    cost90 = sum(g.cost90[i, k] * n for g, i, n in used) + sub.fixed90[k]
    if cost90 > budget_usd * (1 + 1e-9):
        return None
    return Evaluation(
        level=k,
        time50=max(g.time50[i, k] for g, i, _ in used),
        time90=max(g.time90[i, k] for g, i, _ in used),
        cost50=sum(g.cost50[i, k] * n for g, i, n in used) + sub.fixed50[k],
        cost90=cost90,
    )
