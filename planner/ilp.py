"""The integer program for one region and market (PuLP; HiGHS or CBC).

Over a window of capacity levels ``k`` (see ``planner.problem``), with worker candidates ``i``
and master candidates ``m``:

* ``y_k`` binary: the fleet's level; exactly one is chosen.
* ``n_ik`` integer: instances of worker type ``i`` when the level is ``k`` (0 otherwise), only
  where type ``i`` holds its memory and meets the deadline at level ``k``.
* ``x_mk`` binary: the master's type when the level is ``k``.
* ``u_i`` binary: the worker type is used; no-good cuts on these make ranked plans distinct
  worker mixes (the master is whichever is cheapest for a mix).

Constraints per level: ``units_k·y_k <= Σ_i cap_i·n_ik + Σ_m cap_m·x_mk <= upper_k·y_k`` (the
fleet, the master's ranks included, reaches level ``k`` and no further, so the level chosen is
the level the model is read at),
``min·y_k <= Σ_i n_ik <= max·y_k``, ``Σ_m x_mk = y_k``; then the
instance cap, the vCPU quota, the budget on p90 cost, an optional cap on p50 cost (pruning for
k-best), at most ``max_types`` worker types (``Σ_i u_i``), and the cuts. Static balance needs no
row: its problems hold one family each (``planner.problem``). Costs are linear because every
coefficient is fixed once the level is: ``cost = Σ cost_ik·n_ik + Σ cost_mk·x_mk + Σ fixed_k·y_k``.

The objective is the p50 cost, or for the fastest-plan search the p90 time: ``Σ time_k·y_k``
when every candidate has the same interruption rate (then the time is the level's), otherwise
``τ >= time_ik·(y_k + u_i - 1)`` over the types used. Both solvers run with zero optimality gap, and a result is only
accepted when PuLP reports the problem *and* the solution optimal: a time-limited or
gap-limited answer is a :class:`d2c.errors.WorkError`, never a plan.

A problem whose plans use at most two worker types (``max_types`` 1 or 2, the default) is solved
by the exact search of ``planner.pair_search`` instead, the same model without a solver and many
times faster (benchmarks/README.md), unless a level would have it try too many fleets (large
counts under a loose budget); ``solver="cbc"`` and ``combinatorial=False`` always solve the
integer program.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from d2c.errors import WorkError
from planner import pair_search
from planner.problem import Subproblem

SOLVERS = ("highs", "cbc")
_KEPT_MODELS = 32
"""HiGHS models kept per problem (one per window of levels), oldest dropped first."""

CutKey = frozenset
"""A plan's used worker types: ``("w", i)`` for worker candidate ``i``."""


@dataclass(frozen=True)
class Solution:
    """The fleet a solve chose."""

    counts: dict[int, int]
    master: int | None
    level: int
    objective: float

    @property
    def key(self) -> CutKey:
        """The used worker types, for a no-good cut."""
        return frozenset(("w", i) for i, n in self.counts.items() if n > 0)


@functools.cache
def silence_highs_banner() -> None:
    """HiGHS prints a banner to stdout when its first instance is made, which would corrupt
    ``--json`` output; make that first instance with stdout pointed at /dev/null."""
    import highspy

    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs().setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _solver(name: str):
    import pulp

    if name == "highs":
        silence_highs_banner()
        return pulp.HiGHS(msg=False, gapRel=0.0, gapAbs=0.0, threads=1)
    if name == "cbc":
        with warnings.catch_warnings():
            # PuLP announces a future rename; the bundled CBC binary is still reached this way.
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(msg=False, gapRel=0.0, gapAbs=0.0, threads=1)
    raise WorkError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")


def _count_bounds(sub: Subproblem, allowed_w, allowed_m, most: int, budget_usd: float, cost_cap: float | None):
    """Largest useful count of each worker type per level, and which masters may serve there.

    Reduced-cost fixing on the level's continuous relaxation: a plan at level ``k`` costs at
    least ``units_k·r_k + fixed_k + cheapest master``, where ``r_k`` is the least cost per capacity
    unit of any allowed type, plus ``cost_ik - r_k·cap_i`` for every instance of type ``i``. A
    count that pushes this bound past the budget (p90) or the cost cap (p50) cannot be optimal.
    """
    levels, workers, master = sub.levels, sub.workers, sub.master
    cap = workers.cap[:, None].astype(float)
    ub = np.where(allowed_w, most, 0).astype(float)
    keep_m = allowed_m.copy() if master is not None else None
    limits = [(which, fixed, limit) for which, fixed, limit in (("cost90", sub.fixed90, budget_usd), ("cost50", sub.fixed50, cost_cap)) if limit is not None and np.isfinite(limit)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for which, fixed, limit in limits:
            limit = limit * (1 + 1e-9) + 1e-9
            cost = np.where(allowed_w, getattr(workers, which), np.inf)
            ratio = np.min(cost / cap, axis=0)
            bound = levels.units * ratio + fixed
            if master is not None:
                # The master's ranks stand in for workers' capacity at the workers' best rate.
                m_cost = np.where(keep_m, getattr(master, which) - ratio[None, :] * master.cap[:, None], np.inf)
                m_least = m_cost.min(axis=0)
                bound = bound + m_least
                keep_m &= bound[None, :] + (m_cost - m_least[None, :]) <= limit
            room = limit - bound
            slack = np.where(allowed_w, cost - ratio[None, :] * cap, np.inf)
            fit = np.where(slack > 1e-12, np.floor(room[None, :] / slack), np.where(room[None, :] >= 0, np.inf, -1))
            ub = np.minimum(ub, np.where(np.isfinite(room)[None, :], fit, -1))
    return ub, keep_m


def solve(
    sub: Subproblem,
    window: np.ndarray,
    *,
    budget_usd: float,
    deadline_s: float | None,
    cost_cap: float | None = None,
    cuts: tuple[CutKey, ...] = (),
    objective: str = "cost",
    solver: str = "highs",
    combinatorial: bool = True,
) -> Solution | None:
    """The optimal fleet of ``sub`` with its level in ``window``, or None when none is feasible.

    ``highs`` solves the model kept for ``sub`` (``planner.highs_model``); ``cbc`` builds it in PuLP.
    """
    import pulp

    levels = sub.levels
    workers, master = sub.workers, sub.master
    allowed_w = workers.allowed(deadline_s)
    allowed_m = master.allowed(deadline_s) if master is not None else None
    most = workers.role.max_count
    if sub.max_instances is not None:
        most = min(most, sub.max_instances - (1 if master is not None else 0))
    if most < 1:
        return None
    if combinatorial and solver == "highs" and pair_search.covers(sub):
        try:
            found = pair_search.solve(sub, window, most=most, budget_usd=budget_usd, deadline_s=deadline_s, cost_cap=cost_cap,
                                      cuts=cuts, objective=objective)
        except pair_search.TooLarge:
            pass  # large counts under a loose budget: the integer program below
        else:
            return None if found is None else Solution(*found)
    bounds = _count_bounds(sub, allowed_w, allowed_m, most, budget_usd, cost_cap)
    if solver == "highs":
        return _solve_highs(sub, window, bounds, most, budget_usd=budget_usd, cost_cap=cost_cap, cuts=cuts, objective=objective)

    prob = pulp.LpProblem("plan", pulp.LpMinimize)
    n: dict[tuple[int, int], pulp.LpVariable] = {}
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    y: dict[int, pulp.LpVariable] = {}
    rows: dict[int, list[tuple[int, pulp.LpVariable]]] = {}
    master_rows: dict[int, list[pulp.LpVariable]] = {}
    masters_at: dict[int, list[int]] = {}
    for k in (int(k) for k in window):
        entries = [(int(i), int(bounds[0][i, k])) for i in np.flatnonzero(bounds[0][:, k] >= 1)]
        masters = [] if master is None else [int(m) for m in np.flatnonzero(bounds[1][:, k])]
        if not entries or (master is not None and not masters):
            continue
        y[k] = prob.add_variable(f"y_{k}", cat=pulp.LpBinary)
        rows[k] = []
        for i, ub in entries:
            n[i, k] = prob.add_variable(f"n_{i}_{k}", 0, ub, cat=pulp.LpInteger)
            rows[k].append((i, n[i, k]))
        master_rows[k] = []
        masters_at[k] = masters
        for m in masters:
            x[m, k] = prob.add_variable(f"x_{m}_{k}", cat=pulp.LpBinary)
            master_rows[k].append(x[m, k])
    if not y:
        return None

    prob += pulp.lpSum(y.values()) == 1
    for k, yk in y.items():
        capacity = pulp.lpSum(int(workers.cap[i]) * var for i, var in rows[k])
        if master is not None:
            capacity += pulp.lpSum(int(master.cap[m]) * x[m, k] for m in masters_at[k])
        prob += capacity >= int(levels.units[k]) * yk
        prob += capacity <= int(levels.upper[k]) * yk
        count = pulp.lpSum(var for _, var in rows[k])
        prob += count >= workers.role.min_count * yk
        prob += count <= most * yk
        if master is not None:
            prob += pulp.lpSum(master_rows[k]) == yk

    uses: dict[tuple[str, int], pulp.LpAffineExpression | pulp.LpVariable] = {}
    columns: dict[int, list[pulp.LpVariable]] = {}
    for (i, _), var in n.items():
        columns.setdefault(i, []).append(var)
    for i, column in sorted(columns.items()):
        u = prob.add_variable(f"u_{i}", cat=pulp.LpBinary)
        prob += pulp.lpSum(column) <= most * u
        prob += u <= pulp.lpSum(column)
        uses["w", i] = u
    if sub.max_types is not None:
        prob += pulp.lpSum(uses.values()) <= sub.max_types

    instances = pulp.lpSum(n.values()) + (1 if master is not None else 0)
    if sub.max_instances is not None:
        prob += instances <= sub.max_instances
    if sub.quota_vcpus is not None:
        prob += (
            pulp.lpSum(float(workers.vcpus[i]) * var for (i, _), var in n.items())
            + pulp.lpSum(float(master.vcpus[m]) * var for (m, _), var in x.items())
        ) <= sub.quota_vcpus

    def cost(which: str):
        w_cost, m_cost = getattr(workers, which), getattr(master, which) if master is not None else None
        fixed = sub.fixed50 if which == "cost50" else sub.fixed90
        return (
            pulp.lpSum(float(w_cost[i, k]) * var for (i, k), var in n.items())
            + pulp.lpSum(float(m_cost[m, k]) * var for (m, k), var in x.items())
            + pulp.lpSum(float(fixed[k]) * var for k, var in y.items())
        )

    cost50 = cost("cost50")
    if np.isfinite(budget_usd):
        prob += cost("cost90") <= budget_usd
    if cost_cap is not None and np.isfinite(cost_cap):
        prob += cost50 <= cost_cap
    for cut in cuts:
        if any(key not in uses for key in cut):
            continue  # a type outside this model cannot be used, so the cut holds already
        prob += pulp.lpSum(1 - uses[key] for key in cut) + pulp.lpSum(u for key, u in uses.items() if key not in cut) >= 1

    rates = {c.rate_per_s for c in workers.cands} | ({c.rate_per_s for c in master.cands} if master is not None else set())
    if objective == "time" and len(rates) == 1:
        # One interruption rate: the plan's time is the level's, and the objective stays tight.
        prob.setObjective(pulp.lpSum(float(workers.time90[0, k]) * var for k, var in y.items()))
    elif objective == "time":
        tau = prob.add_variable("tau", 0)
        for (i, k), var in n.items():
            prob += tau >= float(workers.time90[i, k]) * (y[k] + uses["w", i] - 1)
        for (m, k), var in x.items():
            prob += tau >= float(master.time90[m, k]) * var
        prob.setObjective(tau)
    else:
        prob.setObjective(cost50)

    prob.solve(_solver(solver))
    if prob.status == pulp.LpStatusInfeasible:
        return None
    if prob.status != pulp.LpStatusOptimal or prob.sol_status != pulp.LpSolutionOptimal:
        raise WorkError(
            f"the {solver} solver did not prove a plan optimal (status {pulp.LpStatus[prob.status]}, "
            f"solution {pulp.LpSolution[prob.sol_status]}); try --solver {'cbc' if solver == 'highs' else 'highs'}"
        )
    level = next(k for k, var in y.items() if var.value() > 0.5)
    counts: dict[int, int] = {}
    for (i, k), var in n.items():
        value = int(round(var.value() or 0))
        if value:
            counts[i] = counts.get(i, 0) + value
    chosen_master = next((m for (m, k), var in x.items() if (var.value() or 0) > 0.5), None)
    return Solution(counts=counts, master=chosen_master, level=level, objective=float(pulp.value(prob.objective)))


def _solve_highs(sub: Subproblem, window: np.ndarray, bounds, most: int, *, budget_usd, cost_cap, cuts, objective) -> Solution | None:
    from planner import highs_model

    in_window = np.zeros(len(sub.levels), dtype=bool)
    in_window[np.asarray(window, dtype=np.int64)] = True
    n_ub = np.where(in_window[None, :], np.clip(np.minimum(bounds[0], most), 0, None), 0.0)
    x_ub = None
    usable = in_window & (n_ub >= 1).any(axis=0)
    if sub.master is not None:
        x_ub = np.where(in_window[None, :] & bounds[1], 1.0, 0.0)
        usable &= (x_ub > 0).any(axis=0)
    if not usable.any():
        return None
    key = ("highs", most, tuple(int(k) for k in np.flatnonzero(in_window)))
    model = sub.solver_state.get(key)
    if model is None:
        if len(sub.solver_state) >= _KEPT_MODELS:
            sub.solver_state.pop(next(iter(sub.solver_state)))
        model = sub.solver_state[key] = highs_model.build(sub, most, np.array(key[2], dtype=np.int64))
    found = highs_model.solve(
        model, sub, y_ub=usable.astype(float), n_ub=n_ub, x_ub=x_ub, budget_usd=budget_usd, cost_cap=cost_cap,
        cuts=cuts, objective=objective,
    )
    if found is None:
        return None
    counts, chosen, level, value = found
    return Solution(counts=counts, master=chosen, level=level, objective=value)
