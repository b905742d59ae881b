"""Exact search over one- and two-type worker fleets, level by level (numpy, no solver).

Solves what ``planner.ilp.solve`` solves, for a problem whose plans use at most two worker types
(``max_types`` 1 or 2): the cheapest fleet (p50 cost) or the fastest (p90 time) with its level in
a window, under the budget (p90 cost), an optional cap on p50 cost, the deadline, the role's
counts, the instance limit, the vCPU quota and no-good cuts on the set of worker types used.

At a level ``k`` every coefficient is fixed, so a fleet is a master ``m`` (or none) plus ``a``
instances of type ``i`` and ``b`` of type ``j``. Every per-instance cost, vCPU count and
capacity is positive, so for given ``m``, ``i``, ``a`` and ``j`` the fewest ``b`` that reaches the
level's lower capacity bound and the role's least count,
``b* = max(1, min_count - a, ceil((units_k - cap_m - a·cap_i) / cap_j))``, is the best ``b``: every
other limit (the level's upper bound, the instance count, the quota, both costs) only tightens as
``b`` grows, and the time does not depend on ``b``. The search therefore tries every master, every
pair (the count ``a`` of the larger type, whose range is short) and the closed-form ``b*``; single
types have a closed-form count too. The answer is exact, not a heuristic.

What keeps it small is the bound the integer program's count bounds use (``planner.ilp``): with
``r_k`` the least cost per capacity unit of any type allowed at the level, a fleet costs at least
``fixed_k + cost_m + r_k·max(units_k - cap_m, 0) + Σ_t n_t·(cost_t - r_k·cap_t)``; under a cost
cap (p50) or the budget (p90) that leaves few types and few counts. Single types are searched
first, and their best tightens the cap (cost) or the time a pair must beat, so where one type does
as well, no pair is tried. Levels are visited by their cost bound, and a level whose bound is
above the best found is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.problem import Subproblem

_REL = 1e-9
"""Tolerance of the limits, as ``planner.problem.evaluate`` applies them."""
_PRUNE = 1e-7
"""Relative room left when pruning by a cost bound, so rounding never prunes a fleet on the limit."""


def covers(sub: Subproblem) -> bool:
    """The search applies: at most two worker types per plan, every worker type adds capacity."""
    return sub.max_types in (1, 2) and bool(len(sub.workers.cands)) and bool((sub.workers.cap > 0).all())


@dataclass(frozen=True)
class _Limits:
    """One solve's limits, with the tolerances ``evaluate`` allows."""

    budget: float
    cost_cap: float
    quota: float
    most: int
    least: int
    banned: frozenset
    """Worker-type sets (sorted tuples of candidate indices) the cuts rule out."""


@dataclass
class _Level:
    """The candidates allowed at one level with their coefficients there."""

    k: int
    low: int
    high: int
    fixed50: float
    fixed90: float
    types: np.ndarray
    cap: np.ndarray
    c50: np.ndarray
    c90: np.ndarray
    vcpus: np.ndarray
    t90: np.ndarray
    masters: np.ndarray
    """Master candidate indices; -1 for a problem without a master role."""
    m_cap: np.ndarray
    m50: np.ndarray
    m90: np.ndarray
    m_vcpus: np.ndarray
    m_t90: np.ndarray


_BLOCK = 1 << 20
"""Most (master, pair, count) combinations held in memory at once."""
MOST_COMBINATIONS = 1 << 23
"""Beyond this many (master, pair, count) combinations at one level (large counts under a loose
budget), :class:`TooLarge` hands the solve to the integer program."""


class TooLarge(Exception):
    """The search at some level would try more than ``MOST_COMBINATIONS`` fleets."""


def solve(
    sub: Subproblem,
    window: np.ndarray,
    *,
    most: int,
    budget_usd: float,
    deadline_s: float | None,
    cost_cap: float | None = None,
    cuts: tuple[frozenset, ...] = (),
    objective: str = "cost",
):
    """The optimal fleet of ``sub`` with its level in ``window``: ``(counts, master, level, value)``
    or None when none is feasible. ``most`` is the most worker instances (the role's maximum, less
    the master under an instance limit); ``cuts`` are ``planner.ilp`` cut keys. Raises
    :class:`TooLarge` where the integer program is the better tool."""
    allowed_w = sub.workers.allowed(deadline_s)
    allowed_m = None if sub.master is None else sub.master.allowed(deadline_s)
    limits = _Limits(
        budget=budget_usd * (1 + _REL) if np.isfinite(budget_usd) else np.inf,
        cost_cap=cost_cap if cost_cap is not None and np.isfinite(cost_cap) else np.inf,
        quota=np.inf if sub.quota_vcpus is None else sub.quota_vcpus + 1e-9,
        most=int(most),
        least=int(sub.workers.role.min_count),
        banned=frozenset(tuple(sorted(i for _, i in cut)) for cut in cuts),
    )
    levels = [lv for lv in (_level(sub, int(k), allowed_w, allowed_m) for k in window) if lv is not None]
    best = None
    if objective == "cost":
        bounds = [(_cost_bound(lv), lv) for lv in levels]
        for bound, lv in sorted(bounds, key=lambda item: item[0]):
            cap = limits.cost_cap if best is None else min(limits.cost_cap, best[3])
            if bound > _loose(cap):
                break
            found = _search(sub, lv, limits, cost_cap=cap, beat_time=np.inf, by_time=False)
            if found is not None and (best is None or found[3] < best[3]):
                best = found
        return best
    bounds = [(_time_bound(lv, limits), lv) for lv in levels]
    for bound, lv in sorted(bounds, key=lambda item: item[0]):
        if best is not None and bound >= best[3]:
            break
        found = _search(sub, lv, limits, cost_cap=limits.cost_cap, beat_time=np.inf if best is None else best[3], by_time=True)
        if found is not None:
            best = found
    return best


def _ceil_div(x, y):
    return -((-x) // y)


def _loose(limit: float) -> float:
    return limit * (1 + _PRUNE) + _PRUNE


def _level(sub: Subproblem, k: int, allowed_w: np.ndarray, allowed_m) -> _Level | None:
    w, m = sub.workers, sub.master
    types = np.flatnonzero(allowed_w[:, k])
    if m is None:
        masters = np.array([-1])
        m_cap = np.zeros(1, dtype=np.int64)
        m50 = m90 = m_vcpus = np.zeros(1)
        m_t90 = np.full(1, -np.inf)
    else:
        masters = np.flatnonzero(allowed_m[:, k])
        m_cap, m50, m90 = m.cap[masters], m.cost50[masters, k], m.cost90[masters, k]
        m_vcpus, m_t90 = m.vcpus[masters], m.time90[masters, k]
    if masters.size == 0 or (types.size == 0 and (m is None or sub.workers.role.min_count > 0)):
        return None
    return _Level(
        k=k, low=int(sub.levels.units[k]), high=int(sub.levels.upper[k]),
        fixed50=float(sub.fixed50[k]), fixed90=float(sub.fixed90[k]),
        types=types, cap=w.cap[types], c50=w.cost50[types, k], c90=w.cost90[types, k],
        vcpus=w.vcpus[types], t90=w.time90[types, k],
        masters=masters, m_cap=m_cap, m50=m50, m90=m90, m_vcpus=m_vcpus, m_t90=m_t90,
    )


def _time_bound(lv: _Level, limits: _Limits) -> float:
    """A lower bound on the p90 time of any fleet at the level."""
    master = float(lv.m_t90.min())
    return master if limits.least == 0 else max(master, float(lv.t90.min()))


def _rates(lv: _Level) -> tuple[float, float]:
    """Least p50 and p90 cost per capacity unit at the level."""
    if lv.types.size == 0:
        return 0.0, 0.0
    return float(np.min(lv.c50 / lv.cap)), float(np.min(lv.c90 / lv.cap))


def _cost_bound(lv: _Level) -> float:
    """A lower bound on the p50 cost of any fleet at the level (module docstring)."""
    r50, _ = _rates(lv)
    return float(lv.fixed50 + np.min(lv.m50 + r50 * np.maximum(lv.low - lv.m_cap, 0)))


def _search(sub: Subproblem, lv: _Level, limits: _Limits, *, cost_cap: float, beat_time: float, by_time: bool):
    """The best fleet at one level: least p50 cost (at most ``cost_cap``), or with ``by_time`` least
    p90 time (below ``beat_time``, p50 cost at most ``cost_cap``)."""
    r50, r90 = _rates(lv)
    need = np.maximum(lv.low - lv.m_cap, 0).astype(float)
    # Room each master leaves for the types' excess over the best cost per unit (module docstring).
    room50 = _loose(cost_cap) - (lv.fixed50 + lv.m50 + r50 * need)
    room90 = _loose(limits.budget) - (lv.fixed90 + lv.m90 + r90 * need)
    keep = (room50 >= 0) & (room90 >= 0) & (lv.m_vcpus <= limits.quota) & (lv.m_t90 < beat_time)
    if not keep.any():
        return None
    m = np.flatnonzero(keep)
    e50 = np.maximum(lv.c50 - r50 * lv.cap, 0.0)
    e90 = np.maximum(lv.c90 - r90 * lv.cap, 0.0)
    best = _singles(sub, lv, limits, m, cost_cap, beat_time, by_time)
    if sub.max_types == 1:
        return best
    if best is not None:
        if by_time:
            beat_time = min(beat_time, best[3])
        else:
            cost_cap = min(cost_cap, best[3])
    pair = _pairs(lv, limits, m, room50[m], room90[m], e50, e90, cost_cap, beat_time, by_time)
    if pair is not None and (best is None or pair[3] < best[3]):
        best = pair
    return best


def _result(lv: _Level, counts: dict[int, int], master_at: int, value: float):
    master = int(lv.masters[master_at])
    return counts, (None if master < 0 else master), lv.k, float(value)


def _singles(sub, lv: _Level, limits: _Limits, m: np.ndarray, cost_cap: float, beat_time: float, by_time: bool):
    """The best fleet of one worker type (or of the master alone, when the role allows none)."""
    best = None
    m_cap, m50, m90, mv, mt = lv.m_cap[m], lv.m50[m], lv.m90[m], lv.m_vcpus[m], lv.m_t90[m]
    if limits.least == 0 and sub.master is not None and () not in limits.banned:
        c50 = lv.fixed50 + m50
        ok = (lv.low <= m_cap) & (m_cap <= lv.high) & (mv <= limits.quota) & (lv.fixed90 + m90 <= limits.budget) & (c50 <= cost_cap) & (mt < beat_time)
        value = np.where(ok, mt if by_time else c50, np.inf)
        at = int(np.argmin(value))
        if np.isfinite(value[at]):
            best = _result(lv, {}, int(m[at]), value[at])
    if lv.types.size == 0:
        return best
    allowed = np.array([(int(t),) not in limits.banned for t in lv.types]) if limits.banned else np.ones(lv.types.size, dtype=bool)
    count = np.maximum(max(limits.least, 1), _ceil_div(lv.low - m_cap[:, None], lv.cap[None, :]))
    c50 = lv.fixed50 + m50[:, None] + count * lv.c50[None, :]
    c90 = lv.fixed90 + m90[:, None] + count * lv.c90[None, :]
    time = np.maximum(mt[:, None], lv.t90[None, :])
    ok = (
        allowed[None, :] & (count <= limits.most) & (count * lv.cap[None, :] + m_cap[:, None] <= lv.high)
        & (count * lv.vcpus[None, :] + mv[:, None] <= limits.quota) & (c90 <= limits.budget) & (c50 <= cost_cap)
        & (time < beat_time)
    )
    value = np.where(ok, time if by_time else c50, np.inf)
    at = np.unravel_index(int(np.argmin(value)), value.shape)
    if np.isfinite(value[at]) and (best is None or value[at] < best[3]):
        best = _result(lv, {int(lv.types[at[1]]): int(count[at])}, int(m[at[0]]), value[at])
    return best


def _pairs(lv: _Level, limits: _Limits, m, room50, room90, e50, e90, cost_cap: float, beat_time: float, by_time: bool):
    """The best fleet of two worker types: every master, pair and count of the larger type, with
    the fewest instances of the other (module docstring)."""
    usable = (e50 <= room50.max()) & (e90 <= room90.max()) & (lv.t90 < beat_time)
    keep_m = lv.m_t90[m] < beat_time
    m, room50, room90 = m[keep_m], room50[keep_m], room90[keep_m]
    t = np.flatnonzero(usable)
    if t.size < 2 or m.size == 0:
        return None
    p, q = np.triu_indices(t.size, 1)
    p, q = t[p], t[q]
    # The outer type (its count enumerated) is the larger one: fewer of its counts fit the level.
    swap = lv.cap[q] > lv.cap[p]
    i, j = np.where(swap, q, p), np.where(swap, p, q)
    if limits.banned:
        ok = np.ones(i.size, dtype=bool)
        ti, tj = lv.types[i], lv.types[j]
        for cut in limits.banned:
            if len(cut) == 2:
                ok &= ~(((ti == cut[0]) & (tj == cut[1])) | ((ti == cut[1]) & (tj == cut[0])))
        i, j = i[ok], j[ok]
    if i.size == 0:
        return None
    most = limits.most
    cap_i, cap_j = lv.cap[i][None, :], lv.cap[j][None, :]
    low = lv.low - lv.m_cap[m][:, None]
    high = lv.high - lv.m_cap[m][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        hi = np.minimum(most - 1, (high - cap_j) // cap_i).astype(float)
        for room, e in ((room50, e50), (room90, e90)):
            ei, ej = e[i][None, :], e[j][None, :]
            hi = np.minimum(hi, np.where(ei > 0, np.floor((room[:, None] - ej) / ei), np.where(room[:, None] >= ej, np.inf, -1)))
        vi, vj = lv.vcpus[i][None, :], lv.vcpus[j][None, :]
        spare = limits.quota - lv.m_vcpus[m][:, None] - vj
        hi = np.minimum(hi, np.where(vi > 0, np.floor(spare / vi), np.where(spare >= 0, np.inf, -1)))
    # (most - a)·cap_j must still reach what a·cap_i leaves of the level.
    gap = cap_i - cap_j
    lo = np.where(gap > 0, _ceil_div(np.maximum(low - most * cap_j, 0), np.maximum(gap, 1)), np.where(most * cap_j >= low, 1, most))
    lo = np.maximum(lo, 1)
    length = np.clip(hi - lo + 1, 0, most).astype(np.int64)
    flat = np.flatnonzero(length)
    if flat.size == 0:
        return None
    best = None
    sizes = length.ravel()[flat]
    ends = np.cumsum(sizes)
    if ends[-1] > MOST_COMBINATIONS:
        raise TooLarge
    start = 0
    while start < flat.size:
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _BLOCK, side="right"))
        stop = max(stop, start + 1)
        found = _expand(lv, limits, m, i, j, flat[start:stop], sizes[start:stop], lo, cost_cap, beat_time, by_time)
        if found is not None and (best is None or found[3] < best[3]):
            best = found
            if by_time:
                beat_time = found[3]
            else:
                cost_cap = found[3]
        start = stop
    return best


def _expand(lv: _Level, limits: _Limits, m, i, j, flat, sizes, lo, cost_cap: float, beat_time: float, by_time: bool):
    """Every count of the outer type for the (master, pair) combinations ``flat``; the best fleet."""
    rows, cols = np.divmod(flat, i.size)
    offsets = np.cumsum(sizes) - sizes
    which = np.repeat(np.arange(flat.size), sizes)
    a = lo.ravel()[flat][which] + (np.arange(which.size) - offsets[which])
    mm, ii, jj = m[rows][which], i[cols][which], j[cols][which]
    cap_i, cap_j = lv.cap[ii], lv.cap[jj]
    m_cap = lv.m_cap[mm]
    b = np.maximum(np.maximum(1, limits.least - a), _ceil_div(lv.low - m_cap - a * cap_i, cap_j))
    c50 = lv.fixed50 + lv.m50[mm] + a * lv.c50[ii] + b * lv.c50[jj]
    c90 = lv.fixed90 + lv.m90[mm] + a * lv.c90[ii] + b * lv.c90[jj]
    ok = (
        (a + b <= limits.most) & (a * cap_i + b * cap_j + m_cap <= lv.high)
        & (a * lv.vcpus[ii] + b * lv.vcpus[jj] + lv.m_vcpus[mm] <= limits.quota)
        & (c90 <= limits.budget) & (c50 <= cost_cap)
    )
    if by_time:
        value = np.maximum(lv.m_t90[mm], np.maximum(lv.t90[ii], lv.t90[jj]))
        ok &= value < beat_time
    else:
        value = c50
    value = np.where(ok, value, np.inf)
    at = int(np.argmin(value))
    if not np.isfinite(value[at]):
        return None
    return _result(lv, {int(lv.types[ii[at]]): int(a[at]), int(lv.types[jj[at]]): int(b[at])}, int(mm[at]), value[at])
