"""The integer program of ``planner.ilp`` held in HiGHS through highspy's own API.

A model covers one problem (region, market, and family for static balance) over a window of
capacity levels; it is built with numpy arrays handed to ``Highs.addCols``/``addRows`` (no
modelling layer, no model file) and kept, per problem and window, for every later solve: each
solve only changes what differs between the k-best, frontier and fastest-plan searches: column
bounds (the deadline, the reduced-cost bounds on counts), the budget and cost-cap rows, which
no-good cut rows are active (a cut is added once and switched off by relaxing its bound), and the
objective. Models are per window rather than over every level because HiGHS presolves the whole
model on every run: a model of all levels with most of them fixed off solves 5-10 times slower
than one of the few levels the search is looking at (benchmarks/README.md). Variables and
constraints are those in ``planner.ilp``'s docstring; the one-family rule needs no row here,
since static problems hold one family each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from d2c.errors import WorkError
from planner.problem import Subproblem

_INF = float("inf")


@dataclass
class HighsModel:
    """A built model and where each variable and switchable row lies in it."""

    highs: object
    K: int
    ks: np.ndarray
    """The levels (of the problem's grid) this model covers, in order."""
    n_i: np.ndarray
    n_k: np.ndarray
    x_m: np.ndarray
    x_k: np.ndarray
    n0: int
    x0: int
    u0: int
    tau: int
    budget_row: int
    cap_row: int
    mixed_rates: bool
    cut_rows: dict = field(default_factory=dict)
    active_cuts: set = field(default_factory=set)

    @property
    def columns(self) -> int:
        return self.tau + 1


class _Rows:
    """Constraint rows gathered as coordinates, handed to HiGHS in one ``addRows`` call."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0

    def add(self, rows, cols, vals, lower, upper) -> int:
        """Rows numbered from 0 in ``rows``; returns the index of the first one."""
        first = self.count
        self.parts.append((np.asarray(rows, np.int64) + first, np.asarray(cols, np.int64), np.asarray(vals, float)))
        self.lower.append(np.asarray(lower, float))
        self.upper.append(np.asarray(upper, float))
        self.count += len(self.lower[-1])
        return first

    def flush(self, highs, n_cols: int) -> None:
        from scipy.sparse import csr_matrix

        rows, cols, vals = (np.concatenate(parts) for parts in zip(*self.parts))
        matrix = csr_matrix((vals, (rows, cols)), shape=(self.count, n_cols))
        matrix.sum_duplicates()
        matrix.sort_indices()
        highs.addRows(
            self.count, np.concatenate(self.lower), np.concatenate(self.upper), matrix.nnz,
            matrix.indptr[:-1].astype(np.int32), matrix.indices.astype(np.int32), matrix.data.astype(float),
        )


def build(sub: Subproblem, most: int, ks: np.ndarray) -> HighsModel:
    """The variables of levels ``ks`` and the constraints that do not change from one solve to the next."""
    import highspy

    from planner.ilp import silence_highs_banner

    silence_highs_banner()
    levels, workers, master = sub.levels, sub.workers, sub.master
    ks = np.asarray(ks, dtype=np.int64)
    K, T = ks.size, len(workers.cands)
    units, level_upper = levels.units[ks].astype(float), levels.upper[ks].astype(float)
    n_i, n_k = np.nonzero(workers.fits[:, ks])
    if master is not None:
        x_m, x_k = np.nonzero(master.fits[:, ks])
    else:
        x_m = x_k = np.zeros(0, dtype=np.int64)
    n0 = K
    x0 = n0 + n_i.size
    u0 = x0 + x_m.size
    tau = u0 + T
    columns = tau + 1
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", 1)
    col_upper = np.concatenate([np.ones(K), np.full(n_i.size, float(most)), np.ones(x_m.size), np.ones(T), [_INF]])
    h.addCols(columns, np.zeros(columns), np.zeros(columns), col_upper, 0, np.zeros(columns, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0))
    integer = np.arange(tau, dtype=np.int32)
    h.changeColsIntegrality(integer.size, integer, np.array([highspy.HighsVarType.kInteger] * integer.size))

    rows = _Rows()
    K_range = np.arange(K)
    rows.add(np.zeros(K, int), K_range, np.ones(K), [1.0], [1.0])
    m_cap = master.cap.astype(float) if master is not None else np.zeros(0)
    n_cols, x_cols = n0 + np.arange(n_i.size), x0 + np.arange(x_m.size)
    w_cap = workers.cap[n_i].astype(float)
    # Per level: capacity from below and above, worker count from below and above, one master.
    for bound, low, high in ((units, 0.0, _INF), (level_upper, -_INF, 0.0)):
        rows.add(
            np.concatenate([n_k, x_k, K_range]), np.concatenate([n_cols, x_cols, K_range]),
            np.concatenate([w_cap, m_cap[x_m], -bound.astype(float)]), np.full(K, low), np.full(K, high),
        )
    for bound, low, high in ((float(workers.role.min_count), 0.0, _INF), (float(most), -_INF, 0.0)):
        rows.add(np.concatenate([n_k, K_range]), np.concatenate([n_cols, K_range]),
                 np.concatenate([np.ones(n_i.size), np.full(K, -bound)]), np.full(K, low), np.full(K, high))
    if master is not None:
        rows.add(np.concatenate([x_k, K_range]), np.concatenate([x_cols, K_range]),
                 np.concatenate([np.ones(x_m.size), -np.ones(K)]), np.zeros(K), np.zeros(K))
    # Per type: u_i = 1 exactly when the type is used.
    T_range = np.arange(T)
    rows.add(np.concatenate([n_i, T_range]), np.concatenate([n_cols, u0 + T_range]),
             np.concatenate([np.ones(n_i.size), np.full(T, -float(most))]), np.full(T, -_INF), np.zeros(T))
    rows.add(np.concatenate([n_i, T_range]), np.concatenate([n_cols, u0 + T_range]),
             np.concatenate([-np.ones(n_i.size), np.ones(T)]), np.full(T, -_INF), np.zeros(T))
    if sub.max_types is not None:
        rows.add(np.zeros(T, int), u0 + T_range, np.ones(T), [-_INF], [float(sub.max_types)])
    if sub.max_instances is not None:
        rows.add(np.zeros(n_i.size, int), n_cols, np.ones(n_i.size), [-_INF], [float(sub.max_instances - (1 if master is not None else 0))])
    if sub.quota_vcpus is not None:
        vcpus = np.concatenate([workers.vcpus[n_i], master.vcpus[x_m] if master is not None else []])
        rows.add(np.zeros(vcpus.size, int), np.concatenate([n_cols, x_cols]), vcpus, [-_INF], [float(sub.quota_vcpus)])

    def cost(which):
        fixed = (sub.fixed50 if which == "cost50" else sub.fixed90)[ks]
        values = [getattr(workers, which)[n_i, ks[n_k]], getattr(master, which)[x_m, ks[x_k]] if master is not None else np.zeros(0), fixed]
        columns_ = np.concatenate([n_cols, x_cols, K_range])
        return np.zeros(columns_.size, int), columns_, np.concatenate(values)

    budget_row = rows.add(*cost("cost90"), [-_INF], [_INF])
    cap_row = rows.add(*cost("cost50"), [-_INF], [_INF])
    rates = {c.rate_per_s for c in workers.cands} | ({c.rate_per_s for c in master.cands} if master is not None else set())
    mixed = len(rates) > 1
    if mixed:
        # tau >= time_ik (y_k + u_i - 1) for every worker column; tau >= time_mk x_mk for the master.
        t = workers.time90[n_i, ks[n_k]].astype(float)
        J = np.arange(n_i.size)
        rows.add(np.concatenate([J, J, J]), np.concatenate([np.full(J.size, tau), n_k, u0 + n_i]),
                 np.concatenate([np.ones(J.size), -t, -t]), -t, np.full(J.size, _INF))
        if master is not None:
            tm = master.time90[x_m, ks[x_k]].astype(float)
            J = np.arange(x_m.size)
            rows.add(np.concatenate([J, J]), np.concatenate([np.full(J.size, tau), x_cols]),
                     np.concatenate([np.ones(J.size), -tm]), np.zeros(J.size), np.full(J.size, _INF))
    rows.flush(h, columns)
    return HighsModel(h, K, ks, n_i, n_k, x_m, x_k, n0, x0, u0, tau, budget_row, cap_row, mixed)


def _set_cuts(model: HighsModel, cuts, T: int) -> None:
    """Rows ``Σ_{i∈cut} (1 - u_i) + Σ_{i∉cut} u_i >= 1``: added once, relaxed when not wanted."""
    h = model.highs
    wanted = set(cuts)
    for cut in wanted - set(model.cut_rows):
        inside = {i for _, i in cut}
        values = np.array([-1.0 if i in inside else 1.0 for i in range(T)])
        index = np.arange(model.u0, model.u0 + T, dtype=np.int32)
        h.addRow(1.0 - len(inside), _INF, T, index, values)
        model.cut_rows[cut] = h.getNumRow() - 1
        model.active_cuts.add(cut)
    for cut, r in model.cut_rows.items():
        if (cut in wanted) != (cut in model.active_cuts):
            h.changeRowBounds(r, 1.0 - len(cut) if cut in wanted else -_INF, _INF)
            (model.active_cuts.add if cut in wanted else model.active_cuts.discard)(cut)


def solve(
    model: HighsModel, sub: Subproblem, *, y_ub: np.ndarray, n_ub: np.ndarray, x_ub: np.ndarray | None,
    budget_usd: float, cost_cap: float | None, cuts, objective: str,
):
    """Set this solve's bounds, rows and objective, run HiGHS; (counts, master, level, value) or None.

    The bounds are over the problem's whole grid; the level returned is the grid's.
    """
    import highspy

    h = model.highs
    workers, master = sub.workers, sub.master
    T, ks = len(workers.cands), model.ks
    upper = np.concatenate([y_ub[ks], n_ub[model.n_i, ks[model.n_k]], x_ub[model.x_m, ks[model.x_k]] if master is not None else [],
                            np.ones(T), [_INF]])
    index = np.arange(model.columns, dtype=np.int32)
    h.changeColsBounds(model.columns, index, np.zeros(model.columns), upper.astype(float))
    h.changeRowBounds(model.budget_row, -_INF, budget_usd if np.isfinite(budget_usd) else _INF)
    h.changeRowBounds(model.cap_row, -_INF, cost_cap if cost_cap is not None and np.isfinite(cost_cap) else _INF)
    _set_cuts(model, cuts, T)
    costs = np.zeros(model.columns)
    if objective == "time" and not model.mixed_rates:
        costs[: model.K] = workers.time90[0, ks]
    elif objective == "time":
        costs[model.tau] = 1.0
    else:
        costs[: model.K] = sub.fixed50[ks]
        costs[model.n0 : model.x0] = workers.cost50[model.n_i, ks[model.n_k]]
        if master is not None:
            costs[model.x0 : model.u0] = master.cost50[model.x_m, ks[model.x_k]]
    h.changeColsCost(model.columns, index, costs)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return None
    if status != highspy.HighsModelStatus.kOptimal:
        raise WorkError(f"the highs solver did not prove a plan optimal (status {h.modelStatusToString(status)}); try --solver cbc")
    values = np.asarray(h.getSolution().col_value)
    level = int(ks[int(np.argmax(values[: model.K]))])
    counts: dict[int, int] = {}
    for j in np.flatnonzero(np.round(values[model.n0 : model.x0]) >= 1):
        i = int(model.n_i[j])
        counts[i] = counts.get(i, 0) + int(round(values[model.n0 + j]))
    chosen = None
    if master is not None:
        picked = np.flatnonzero(values[model.x0 : model.u0] > 0.5)
        chosen = int(model.x_m[picked[0]]) if picked.size else None
    return counts, chosen, level, float(h.getInfo().objective_function_value)
