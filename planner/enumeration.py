"""Brute force over the same model the integer program solves.

* :func:`enumerate_fleets` tries every count vector of a small region/market: the oracle the
  property test holds the integer program to.
* :func:`enumerate_mixes` does the same over every fleet of at most two (``max_types``) worker
  types, for catalogs too large to try every count vector: the oracle of the pair search.
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
        return frozenset(("w", i) for i, n in self.counts.items() if n > 0)


def enumerate_fleets(sub: Subproblem, *, budget_usd: float, deadline_s: float | None, max_count: int):
    """Every feasible fleet with at most ``max_count`` instances of each worker type."""
    masters = [None] if sub.master is None else list(range(len(sub.master.cands)))
    for counts in itertools.product(range(max_count + 1), repeat=len(sub.workers.cands)):
        as_dict = {i: n for i, n in enumerate(counts) if n}
        for master in masters:
            evaluation = evaluate(sub, as_dict, master, budget_usd=budget_usd, deadline_s=deadline_s)
            if evaluation is not None:
                yield Fleet(sub, as_dict, master, evaluation)


def enumerate_mixes(sub: Subproblem, *, budget_usd: float, deadline_s: float | None, max_count: int, max_types: int = 2):
    """Every feasible fleet of at most ``max_types`` worker types, 1..``max_count`` instances of each."""
    masters = [None] if sub.master is None else list(range(len(sub.master.cands)))
    for size in range(max_types + 1):
        for types in itertools.combinations(range(len(sub.workers.cands)), size):
            for counts in itertools.product(range(1, max_count + 1), repeat=size):
                as_dict = dict(zip(types, counts))
                for master in masters:
                    evaluation = evaluate(sub, as_dict, master, budget_usd=budget_usd, deadline_s=deadline_s)
                    if evaluation is not None:
                        yield Fleet(sub, as_dict, master, evaluation)


def best_distinct(fleets, top: int) -> list[Fleet]:
    """The ``top`` cheapest (p50) fleets with distinct worker mixes (market, worker types used)."""
    best: dict[tuple, Fleet] = {}
    for fleet in fleets:
        key = (fleet.sub.market, tuple(sorted(fleet.sub.workers.cands[i].instance_type for i in fleet.counts)))
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

    At every level the master (if any) is the cheapest one allowed there (of the worker type's
    family under static balance), and the count is the fewest instances that, with the master's
    ranks, reach the level without passing it.
    """
    levels, workers = sub.levels, sub.workers
    K, n_types = len(levels), len(workers.cands)
    most = workers.role.max_count
    if sub.max_instances is not None:
        most = min(most, sub.max_instances - (1 if sub.master is not None else 0))
    if most < 1 or n_types == 0:
        return []
    allowed = workers.allowed(deadline_s)
    columns = np.arange(K)
    pick = np.full((n_types, K), -1)
    m50 = np.zeros((n_types, K))
    m90 = np.zeros((n_types, K))
    m_cap = np.zeros((n_types, K))
    m_vcpus = np.zeros((n_types, K))
    if sub.master is not None:
        master = sub.master
        costs = np.where(master.allowed(deadline_s), master.cost50, np.inf)
        m_family = np.array([c.offer.family for c in master.cands])
        w_family = [c.offer.family for c in workers.cands]
        for family in sorted(set(w_family)) if sub.one_family else [None]:
            rows = [i for i in range(n_types) if family is None or w_family[i] == family]
            own = costs if family is None else np.where((m_family == family)[:, None], costs, np.inf)
            best = np.argmin(own, axis=0)
            cost = own[best, columns]
            pick[rows] = np.where(np.isfinite(cost), best, -1)
            m50[rows] = cost
            m90[rows] = master.cost90[best, columns]
            m_cap[rows] = master.cap[best]
            m_vcpus[rows] = master.vcpus[best]
    cap = workers.cap[:, None].astype(float)
    counts = np.maximum(np.ceil((levels.units[None, :] - m_cap) / cap), workers.role.min_count)
    ok = allowed & np.isfinite(m50) & (counts <= most)
    ok &= counts * cap + m_cap <= levels.upper[None, :]
    cost50 = counts * workers.cost50 + m50 + sub.fixed50[None, :]
    cost90 = counts * workers.cost90 + m90 + sub.fixed90[None, :]
    ok &= cost90 <= budget_usd
    if sub.quota_vcpus is not None:
        ok &= counts * workers.vcpus[:, None] + m_vcpus <= sub.quota_vcpus
    cost50 = np.where(ok, cost50, np.inf)
    best = np.argmin(cost50, axis=1)
    return [
        (i, int(counts[i, best[i]]), None if sub.master is None else int(pick[i, best[i]]), float(cost50[i, best[i]]))
        for i in range(n_types)
        if np.isfinite(cost50[i, best[i]])
    ]
