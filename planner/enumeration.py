"""Brute force over the same model the integer program solves.

* :func:`enumerate_fleets` tries every count vector of a small region/market: the oracle the
  property test holds the integer program to.
* :func:`best_homogeneous_loop` is what the original Desktop to Cloud did, type x count 1..63
  one at a time: the baseline of ``benchmarks/planner_scaling.py``.
* :func:`homogeneous_bests` is the same search vectorized with numpy; its plans are feasible, so
  the k-th cheapest of them bounds the k-th best plan from above (the k-best search prunes with it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from planner.problem import Evaluation, Subproblem, evaluate


@dataclass(frozen=True)
class Fleet:
    """A fleet found by enumeration, with its evaluation."""

    sub: Subproblem
    counts: dict[int, int]
    master: int | None
    evaluation: Evaluation

    @property
    def key(self) -> frozenset:
        used = {("w", i) for i, n in self.counts.items() if n > 0}
        return frozenset(used | ({("m", self.master)} if self.master is not None else set()))


def enumerate_fleets(sub: Subproblem, *, budget_usd: float, deadline_s: float | None, max_count: int):
    """Every feasible fleet with at most ``max_count`` instances of each worker type."""
    masters = [None] if sub.master is None else list(range(len(sub.master.cands)))
    for counts in itertools.product(range(max_count + 1), repeat=len(sub.workers.cands)):
        as_dict = {i: n for i, n in enumerate(counts) if n}
        for master in masters:
            evaluation = evaluate(sub, as_dict, master, budget_usd=budget_usd, deadline_s=deadline_s)
            if evaluation is not None:
                yield Fleet(sub, as_dict, master, evaluation)


def best_distinct(fleets, top: int) -> list[Fleet]:
    """The ``top`` cheapest (p50) fleets with distinct (region, market, types used)."""
    best: dict[tuple, Fleet] = {}
    for fleet in fleets:
        key = (fleet.sub.region, fleet.sub.market, fleet.key)
        if key not in best or fleet.evaluation.cost50 < best[key].evaluation.cost50:
            best[key] = fleet
    return sorted(best.values(), key=lambda f: f.evaluation.cost50)[:top]


def best_homogeneous_loop(subs: list[Subproblem], *, budget_usd: float, deadline_s: float | None, max_count: int = 63) -> Fleet | None:
    """The cheapest single-type fleet of 1..max_count instances, trying each in turn."""
    best: Fleet | None = None
    for sub in subs:
        masters = [None] if sub.master is None else list(range(len(sub.master.cands)))
        for i in range(len(sub.workers.cands)):
            for count in range(1, max_count + 1):
                for master in masters:
                    evaluation = evaluate(sub, {i: count}, master, budget_usd=budget_usd, deadline_s=deadline_s)
                    if evaluation is not None and (best is None or evaluation.cost50 < best.evaluation.cost50):
                        best = Fleet(sub, {i: count}, master, evaluation)
    return best


def homogeneous_bests(sub: Subproblem, *, budget_usd: float, deadline_s: float | None) -> list[tuple[int, int, int | None, float]]:
    """Per worker type, the cheapest feasible single-type fleet: ``(type, count, master, p50 cost)``.

    The master (if any) is the cheapest one allowed at the fleet's level.
    """
    levels, workers = sub.levels, sub.workers
    K = len(levels)
    most = workers.role.max_count
    if sub.max_instances is not None:
        most = min(most, sub.max_instances - (1 if sub.master is not None else 0))
    if most < 1:
        return []
    master50 = np.zeros(K)
    master90 = np.zeros(K)
    master_vcpus = np.zeros(K)
    pick = None
    if sub.master is not None:
        costs = np.where(sub.master.allowed(deadline_s), sub.master.cost50, np.inf)
        pick = np.argmin(costs, axis=0)
        master50 = costs[pick, np.arange(K)]
        master90 = sub.master.cost90[pick, np.arange(K)]
        master_vcpus = sub.master.vcpus[pick]
    counts = np.arange(1, most + 1)
    caps = workers.cap[:, None] * counts[None, :]
    ks = np.searchsorted(levels.bounds, caps, side="right") - 1
    ok = (ks >= 0) & (ks < K) & (counts[None, :] >= workers.role.min_count)
    ks = np.clip(ks, 0, K - 1)
    rows = np.arange(len(workers.cands))[:, None]
    ok &= workers.allowed(deadline_s)[rows, ks] & np.isfinite(master50[ks])
    cost50 = counts * workers.cost50[rows, ks] + master50[ks] + sub.fixed50[ks]
    cost90 = counts * workers.cost90[rows, ks] + master90[ks] + sub.fixed90[ks]
    ok &= cost90 <= budget_usd
    if sub.quota_vcpus is not None:
        ok &= counts * workers.vcpus[:, None] + master_vcpus[ks] <= sub.quota_vcpus
    cost50 = np.where(ok, cost50, np.inf)
    best = np.argmin(cost50, axis=1)
    return [
        (i, int(counts[best[i]]), None if pick is None else int(pick[ks[i, best[i]]]), float(cost50[i, best[i]]))
        for i in range(len(workers.cands))
        if np.isfinite(cost50[i, best[i]])
    ]
