"""Ranked plans: exact k-best over every region and market, and the cost/time frontier.

**k-best.** Plans are distinct when they differ in region, market or the set of types they use
(per role). The k cheapest (p50 cost) are found region by region with no-good cuts on the used
types, cheapest-looking region first. Two bounds keep this fast and exact:

* a per-level *lower bound* on cost (the level's capacity times the cheapest cost per capacity
  unit among types allowed there, plus the master and per-plan costs): a level, or a whole
  region/market, whose bound exceeds the current k-th best cannot hold a better plan;
* an *upper bound* on the k-th best from the cheapest single-type fleets (numpy, every type and
  count): k distinct feasible plans cost at most that much.

**Frontier.** The cheapest plan is one end. The other is the fastest affordable plan: the least
p90 time within the budget (the integer program with objective ``τ``), then the cheapest plan at
that time. Between them, ``FRONTIER_POINTS`` deadlines spaced geometrically each give the
cheapest plan that meets them. Each is Pareto-optimal in (p90 time, p50 cost) among all plans.

Every solve is ``planner.ilp.solve``: the integer program, or for plans of at most two worker
types the exact search of ``planner.pair_search``; both answer the same question exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from d2c.errors import WorkError
from planner import ilp
from planner.enumeration import homogeneous_bests
from planner.problem import Evaluation, Subproblem, evaluate

FRONTIER_POINTS = 3
_TIME_CHUNK = 4
_COST_CHUNK = 4
_TOL = 1e-9
_FIRST_GROWTH = 0.02
"""The second round's cap is this much above the first, then the step doubles (benchmarks/README.md)."""


@dataclass(frozen=True)
class Found:
    """A plan the search found: its region/market problem, fleet and evaluation."""

    sub: Subproblem
    counts: dict[int, int]
    master: int | None
    evaluation: Evaluation
    also: tuple["Found", ...] = ()
    """The same worker mix elsewhere (other regions, another master), dearest last."""

    @property
    def mix(self) -> tuple:
        """What makes two plans distinct: the market and the worker types used."""
        return (self.sub.market, tuple(sorted(self.sub.workers.cands[i].instance_type for i, n in self.counts.items() if n > 0)))

    @property
    def solution_key(self) -> frozenset:
        """The used types, as the integer program's no-good cuts name them."""
        return frozenset(("w", i) for i, n in self.counts.items() if n > 0)

    @property
    def fleet(self) -> tuple:
        """What makes two fleets the same: region, market, zone, count per type (and credit mode) and
        the master's type. Named by type, not by candidate index: indices count within one problem, and
        a region and market hold several (one per family, for static balance)."""
        def name(group, index: int) -> tuple:
            cand = group.cands[index]
            return cand.instance_type, cand.cpu_credits

        workers = tuple(sorted((name(self.sub.workers, i), n) for i, n in self.counts.items() if n > 0))
        master = None if self.master is None or self.sub.master is None else name(self.sub.master, self.master)
        return (self.sub.region, self.sub.market, self.sub.zone, workers, master)



def distinct(found: list[Found]) -> list[Found]:
    """One plan per worker mix, the cheapest (first region and zone in name order on a tie), cheapest
    first; the others with that mix are folded into its ``also``."""
    groups: dict[tuple, list[Found]] = {}
    for plan in sorted(found, key=lambda f: (f.evaluation.cost50, f.sub.region, f.sub.zone or "")):
        groups.setdefault(plan.mix, []).append(plan)
    return [replace(first, also=tuple(rest)) for first, *rest in groups.values()]


def lower_bounds(sub: Subproblem, deadline_s: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per level: lower bounds on p50 cost, p90 cost and p90 time (inf where nothing fits)."""
    levels, workers = sub.levels, sub.workers
    allowed = workers.allowed(deadline_s)
    cap = workers.cap[:, None].astype(float)
    units = levels.units.astype(float)
    master_cap = 0 if sub.master is None else int(sub.master.cap.max())
    reachable = workers.role.max_count * int(workers.cap.max()) + master_cap >= levels.units
    parts = []
    time = np.where(allowed, workers.time90, np.inf).min(axis=0)
    allowed_m = None if sub.master is None else sub.master.allowed(deadline_s)
    for which in ("cost50", "cost90"):
        ratio = np.where(allowed, getattr(workers, which) / cap, np.inf).min(axis=0)
        fixed = sub.fixed50 if which == "cost50" else sub.fixed90
        part = units * ratio + fixed
        if sub.master is not None:
            # The workers hold what the master's ranks leave of the level, at no better than their
            # best rate. Never below zero, so that a deadline (fewer types: a higher rate) only
            # raises the bound (``_floor``).
            with np.errstate(invalid="ignore"):
                rest = np.maximum(units[None, :] - sub.master.cap[:, None].astype(float), 0.0)
                adjusted = getattr(sub.master, which) + ratio[None, :] * rest
            part = np.where(np.isfinite(ratio), fixed + np.where(allowed_m, adjusted, np.inf).min(axis=0), np.inf)
        parts.append(part)
    if sub.master is not None:
        time = np.maximum(time, np.where(allowed_m, sub.master.time90, np.inf).min(axis=0))
    lb50, lb90 = (np.where(reachable, p, np.inf) for p in parts)
    return lb50, lb90, np.where(reachable, time, np.inf)


def _evaluated(sub: Subproblem, solution: ilp.Solution, budget_usd: float, deadline_s: float | None) -> Found:
    evaluation = evaluate(sub, solution.counts, solution.master, budget_usd=budget_usd, deadline_s=deadline_s)
    if evaluation is None or evaluation.level != solution.level:
        raise WorkError(f"internal: the solver's plan for {sub.region} {sub.market}{' in ' + sub.zone if sub.zone else ''} does not check out against the model")
    return Found(sub, solution.counts, solution.master, evaluation)


def _cheapest_in(sub, window, lb50, limit, *, budget_usd, deadline_s, cuts, solver) -> ilp.Solution | None:
    """The cheapest fleet with its level in ``window``, solved ``_COST_CHUNK`` levels at a time.

    Levels go in order of their cost bound, and each chunk is capped at the best cost found so
    far; once a chunk's least bound is above it, no later level can do better. Small programs
    over a few levels solve far faster than one over every level, and the answer is the same.
    """
    order = window[np.argsort(lb50[window], kind="stable")]
    best: ilp.Solution | None = None
    cap = limit
    for start in range(0, order.size, _COST_CHUNK):
        chunk = np.sort(order[start : start + _COST_CHUNK])
        if lb50[chunk].min() > cap:
            break
        solution = ilp.solve(sub, chunk, budget_usd=budget_usd, deadline_s=deadline_s, cost_cap=cap, cuts=cuts, solver=solver)
        if solution is not None and (best is None or solution.objective < best.objective):
            best = solution
            cap = min(cap, solution.objective * (1 + _TOL) + _TOL)
    return best


def best_plans(
    subs: list[Subproblem], *, top: int, budget_usd: float, deadline_s: float | None, solver: str = "highs"
) -> list[Found]:
    """The ``top`` cheapest distinct worker mixes meeting the budget and deadline (p90), cheapest first.

    Rounds of a rising cost cap: each round finds, in every region/market whose bound is under
    the cap, all plans with distinct worker mixes under the cap (at most ``top`` each). Once
    ``top`` mixes are known, every plan cheaper than the ``top``-th has been seen, so the answer is
    exact: a mix whose cheapest plan is in a region where ``top`` other mixes are cheaper has
    ``top`` mixes cheaper than it everywhere. The first cap is the cheapest single-type plan (at
    least the optimum); tight caps keep the programs small. The same mix found in other regions
    (or with another master) is folded into the plan's ``also``.
    """
    # Problems are visited by a bound that holds for every deadline (kept between searches), and
    # their exact bounds under this deadline are computed only when that bound is under the cap.
    order = sorted(subs, key=lambda s: _floor(s, budget_usd))
    bounds: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def bounds_of(sub: Subproblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if id(sub) not in bounds:
            bounds[id(sub)] = lower_bounds(sub, deadline_s)
        return bounds[id(sub)]

    single: dict[tuple, float] = {}
    for sub in order:
        # A problem whose bound is above the top-th cheapest single-type plan so far holds none
        # cheaper: the rest (in bound order) cannot change the caps below.
        if len(single) >= top and _floor(sub, budget_usd) > sorted(single.values())[top - 1] * (1 + _TOL) + _TOL:
            break
        for i, _, _, cost in homogeneous_bests(sub, budget_usd=budget_usd, deadline_s=deadline_s):
            key = (sub.market, (sub.workers.cands[i].instance_type,))
            single[key] = min(cost, single.get(key, np.inf))
    homogeneous = sorted(single.values())
    last_cap = homogeneous[top - 1] if len(homogeneous) >= top else budget_usd
    cap = homogeneous[0] if homogeneous else budget_usd
    state = {id(sub): [] for sub in subs}  # the plans found in each, in the order found (cheapest first)
    found: list[Found] = []
    growth = _FIRST_GROWTH
    while True:
        ranked = distinct(found)
        for sub in order:
            limit = min(cap, ranked[top - 1].evaluation.cost50) if len(ranked) >= top else cap
            limit = limit * (1 + _TOL) + _TOL
            if _floor(sub, budget_usd) > limit:
                break  # so is every problem after it
            lb50, lb90, _ = bounds_of(sub)
            mine = state[id(sub)]
            while len(mine) < top:
                window = np.flatnonzero((lb50 <= limit) & (lb90 <= budget_usd * (1 + _TOL)))
                if window.size == 0:
                    break
                solution = _cheapest_in(
                    sub, window, lb50, limit, budget_usd=budget_usd, deadline_s=deadline_s,
                    cuts=tuple(f.solution_key for f in mine), solver=solver,
                )
                if solution is None:
                    break
                mine.append(_evaluated(sub, solution, budget_usd, deadline_s))
                found.append(mine[-1])
                ranked = distinct(found)
                limit = min(cap, ranked[top - 1].evaluation.cost50) if len(ranked) >= top else cap
                limit = limit * (1 + _TOL) + _TOL
        ranked = distinct(found)
        if len(ranked) >= top or cap >= last_cap:
            return ranked[:top]
        cap = min(last_cap, cap * (1 + growth))
        growth *= 2


def _floor(sub: Subproblem, budget_usd: float) -> float:
    """The least p50 cost of any plan of ``sub`` within the budget, under any deadline: a deadline
    only removes types from a level, so the bounds without one are below the bounds with one."""
    if budget_usd not in sub.floors:
        lb50, lb90, _ = lower_bounds(sub, None)
        sub.floors[budget_usd] = float(np.min(np.where(lb90 <= budget_usd * (1 + _TOL), lb50, np.inf), initial=np.inf))
    return sub.floors[budget_usd]


def fastest_time(subs: list[Subproblem], *, budget_usd: float, deadline_s: float | None, solver: str = "highs") -> float | None:
    """The least p90 time of any plan within the budget (and deadline), or None."""
    best = np.inf
    bounds = [(sub, lower_bounds(sub, deadline_s)) for sub in subs]
    bounds.sort(key=lambda item: float(np.min(np.where(item[1][1] <= budget_usd, item[1][2], np.inf))))
    for sub, (_, lb90, tlb) in bounds:
        eligible = np.flatnonzero((lb90 <= budget_usd * (1 + _TOL)) & np.isfinite(tlb))[::-1]
        # Levels are visited fastest first in chunks; the time bound falls with the level, so
        # once a chunk's best bound is no better than the best plan, lower levels cannot win.
        for start in range(0, eligible.size, _TIME_CHUNK):
            chunk = eligible[start : start + _TIME_CHUNK]
            if tlb[chunk].min() >= best * (1 - _TOL):
                break
            solution = ilp.solve(sub, chunk, budget_usd=budget_usd, deadline_s=deadline_s, objective="time", solver=solver)
            if solution is not None:
                best = min(best, _evaluated(sub, solution, budget_usd, deadline_s).evaluation.time90)
    return None if not np.isfinite(best) else float(best)


def frontier(
    subs: list[Subproblem], cheapest: Found, *, budget_usd: float, deadline_s: float | None, solver: str = "highs"
) -> list[Found]:
    """Frontier plans from the cheapest to the fastest affordable one, slowest first."""
    points = [cheapest]
    fastest = fastest_time(subs, budget_usd=budget_usd, deadline_s=deadline_s, solver=solver)
    slowest = cheapest.evaluation.time90
    if fastest is None or fastest >= slowest * (1 - 1e-6):
        return points
    targets = np.geomspace(slowest, fastest, FRONTIER_POINTS + 2)[1:-1].tolist() + [fastest * (1 + _TOL)]
    for target in targets:
        plans = best_plans(subs, top=1, budget_usd=budget_usd, deadline_s=target, solver=solver)
        if plans and plans[0].fleet not in {p.fleet for p in points}:
            points.append(plans[0])
    points.sort(key=lambda f: -f.evaluation.time90)
    kept: list[Found] = []
    for plan in points:
        if all(not (other.evaluation.time90 <= plan.evaluation.time90 and other.evaluation.cost50 < plan.evaluation.cost50 - _TOL) for other in points if other is not plan):
            kept.append(plan)
    return kept
