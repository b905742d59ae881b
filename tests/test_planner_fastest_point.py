"""A model with a fastest point (USL, Ernest): every fleet has a level, and no case ends in an internal error.

The reproduction: seven on-demand types in one region, a USL profile that is fastest at about
16 workers, a $6.40 budget. The capacity grid used to stop at the fastest point while the
integer program bounded a fleet's capacity only from below, so it could pick a fleet past the
grid's end, and ``recommend`` exited 1 with "the solver's plan ... does not check out". The right
answer (brute force over every fleet of up to 8 instances) is one c6i.xlarge.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from d2c.errors import NoPlanError
from planner import recommend as planning
from planner.billing import BillingRules
from planner.candidates import Limits
from planner.catalog import Catalog, InstanceOffer
from planner.enumeration import enumerate_fleets
from planner.problem import RoleGroup
from tests.fixtures.planner_models import UslModel

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SEVEN = [("r6i.large", 2, 16, 0.126), ("r6i.xlarge", 4, 32, 0.252), ("r6i.2xlarge", 8, 64, 0.504), ("c6i.xlarge", 4, 8, 0.17),
         ("c6i.2xlarge", 8, 16, 0.34), ("m6i.xlarge", 4, 16, 0.192), ("m6i.2xlarge", 8, 32, 0.384)]
MODEL = UslModel(serial_s=86.0, parallel_s=73_728.0, coherency=0.0408, spread=1.2, worker_mb=1000.0, master_mb=500.0)
APP = (RoleGroup("app", 1, 8, works=True, hosts_master=True), None)


def _subs(limits):
    catalog = Catalog(tuple(InstanceOffer(t, "us-east-1", v, m, "x86_64", p, fetched_at=NOW) for t, v, m, p in SEVEN), "test", NOW)
    return planning.build_problem(MODEL, catalog, APP, limits, scale=1.0, rules=BillingRules())


def test_the_seven_row_reproduction_plans_the_brute_force_answer():
    limits = Limits(budget_usd=6.40, market="on-demand")
    subs = _subs(limits)
    levels = subs[0].levels
    fastest_level = int(np.argmin([MODEL.runtime(1.0, u / 100).p50 for u in levels.units]))
    assert fastest_level < len(levels) - 1, "the model's fastest point lies inside the range of fleets"
    result = planning.recommend(subs, limits, top=3)
    best = min(
        (f for sub in subs for f in enumerate_fleets(sub, budget_usd=6.40, deadline_s=None, max_count=8)),
        key=lambda f: f.evaluation.cost50,
    )
    first = result.plans[0]
    assert [(a.instance_type, a.count, a.market) for a in first.roles] == [("c6i.xlarge", 1, "on-demand")]
    assert {best.sub.workers.cands[i].instance_type: n for i, n in best.counts.items()} == {"c6i.xlarge": 1}
    assert first.cost_usd.p50 == pytest.approx(float(best.evaluation.cost50), abs=1e-4)
    # Past the fastest point the grid goes on at the fastest runtime: no fleet is ever faster.
    assert levels.t50[-1] == pytest.approx(levels.t50[fastest_level])
    fastest = min(result.plans, key=lambda p: p.time_s.p90)
    assert fastest.time_s.p50 - 180 >= levels.t50[fastest_level] * (1 - 1e-9)


def test_a_budget_below_every_plan_is_no_plan_not_an_internal_error():
    limits = Limits(budget_usd=0.05, market="on-demand")
    with pytest.raises(NoPlanError, match="no plan fits the \\$0.05 budget: the cheapest plan costs"):
        planning.recommend(_subs(limits), limits, top=3)
