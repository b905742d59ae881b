"""Hand-checked plans on tiny catalogs, the no-plan messages, and plans.json."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from d2c.errors import NoPlanError, UsageError
from planner import recommend as planning
from planner.billing import BillingRules, interruption_rate_per_s
from planner.candidates import Limits
from planner.catalog import Catalog, InstanceOffer
from planner.enumeration import homogeneous_bests
from planner.plans import load_plans
from planner.problem import RoleGroup
from tests.fixtures.planner_models import AmdahlModel

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLAIN = BillingRules(boot_setup_s=180.0, ebs_gb=0.0, egress_gb=0.0, image_gb=0.0, ipv4_usd_h=0.0)
"""Only instance time is billed, so expected costs are easy to work out by hand."""
SINGLE = (RoleGroup("app", 1, 64, works=True, hosts_master=True), None)
MASTER_WORKERS = (RoleGroup("worker", 1, 64, works=True, hosts_master=False), RoleGroup("master", 1, 1, works=True, hosts_master=True))


def offer(name, vcpus, memory_gib, price, spot=None, arch="x86_64", region="us-east-1", bucket=None):
    return InstanceOffer(name, region, vcpus, memory_gib, arch, price, spot, interruption_bucket=bucket, fetched_at=NOW)


def plan_with(offers, model, limits, groups=SINGLE, rules=PLAIN, top=3):
    catalog = Catalog(tuple(offers), "test", NOW)
    subs = planning.build_problem(model, catalog, groups, limits, scale=1.0, rules=rules)
    return planning.recommend(subs, limits, top=top)


def mix(plan):
    return {(a.role, a.instance_type, a.market): a.count for a in plan.roles}


def test_one_type_needs_three_instances_for_the_deadline():
    # c5.xlarge: 4 vCPUs x 0.6 (hyper-threads) = 2.4 workers; T = 24000 / W = 10000 s / n.
    model = AmdahlModel(serial_s=0.0, parallel_s=24_000.0, spread=1.0)
    result = plan_with([offer("c5.xlarge", 4, 8, 0.17)], model, Limits(budget_usd=10, deadline_s=3600, market="on-demand"))
    best = result.plans[0]
    assert mix(best) == {("app", "c5.xlarge", "on-demand"): 3}  # 2 instances take 5000 s > 3600 s
    # 3 instances: 10000/3 s, read at a capacity level at most 2 % below 7.2 workers.
    run = best.time_s.p50 - 180
    assert 10_000 / 3 <= run <= 10_000 / 3 * 1.02
    assert best.cost_usd.p50 == pytest.approx(3 * (180 + run) * 0.17 / 3600, abs=1e-4)  # plans round to 0.0001 USD
    assert best.cost_usd.p90 == pytest.approx(best.cost_usd.p50)  # spread 1.0
    assert "cheapest plan that meets 1h00m" in best.why


def test_cheaper_slower_family_loses_only_when_the_deadline_needs_speed():
    # c5.large: 1.2 workers for $0.05/h; c7i.large: 2 x 1.25 x 0.6 = 1.5 workers for $0.10/h.
    offers = [offer("c5.large", 2, 4, 0.05), offer("c7i.large", 2, 4, 0.10)]
    model = AmdahlModel(serial_s=0.0, parallel_s=12_000.0, spread=1.0)
    relaxed = plan_with(offers, model, Limits(budget_usd=10, max_instances=2, market="on-demand"))
    assert {t for _, t, _ in mix(relaxed.plans[0])} == {"c5.large"}
    # 2 x c5.large: 12000/2.4 = 5000 s; 2 x c7i.large: 12000/3.0 = 4000 s (+2 % level, +180 s boot).
    tight = plan_with(offers, model, Limits(budget_usd=10, deadline_s=4500, max_instances=2, market="on-demand"))
    assert mix(tight.plans[0]) == {("app", "c7i.large", "on-demand"): 2}


def test_memory_rules_out_the_cheap_family():
    offers = [offer("c5.large", 2, 4, 0.085), offer("r5.large", 2, 16, 0.126)]
    light = AmdahlModel(serial_s=0.0, parallel_s=10_000.0, worker_mb=1000.0, master_mb=500.0)
    assert {t for _, t, _ in mix(plan_with(offers, light, Limits(budget_usd=10, market="on-demand")).plans[0])} == {"c5.large"}
    # 2 workers x 3000 MB + 500 MB master, +10 % = 7150 MB: more than c5.large's 4096 MB.
    heavy = AmdahlModel(serial_s=0.0, parallel_s=10_000.0, worker_mb=3000.0, master_mb=500.0)
    result = plan_with(offers, heavy, Limits(budget_usd=10, market="on-demand"))
    assert all(a.instance_type == "r5.large" for p in result.plans for a in p.roles)


def test_memory_of_nothing_fits_is_a_no_plan_error():
    huge = AmdahlModel(worker_mb=50_000.0)
    with pytest.raises(NoPlanError, match=r"has the memory for this app \(50000 MB per worker"):
        plan_with([offer("c5.large", 2, 4, 0.085)], huge, Limits(budget_usd=10))


def test_spot_wins_when_allowed_and_pays_for_interruptions():
    offers = [offer("c6i.xlarge", 4, 8, 0.17, spot=0.06, bucket=">20%")]
    model = AmdahlModel(serial_s=0.0, parallel_s=40_000.0, spread=1.0)
    on_demand = plan_with(offers, model, Limits(budget_usd=10, market="on-demand")).plans[0]
    spot = plan_with(offers, model, Limits(budget_usd=10, market="any")).plans[0]
    assert {a.market for a in spot.roles} == {"spot"} and {a.market for a in on_demand.roles} == {"on-demand"}
    assert mix(spot) == {("app", "c6i.xlarge", "spot"): 1}
    # The same fleet on spot runs longer by the expected redone work: T·(1 + λT/2).
    run = on_demand.time_s.p50 - 180
    rate = interruption_rate_per_s(">20%")
    assert spot.time_s.p50 - 180 == pytest.approx(run * (1 + rate * run / 2), abs=0.1)  # plans round to 0.1 s
    assert spot.cost_usd.p50 == pytest.approx((180 + run * (1 + rate * run / 2)) * 0.06 / 3600, abs=1e-4)
    assert spot.time_s.p50 > on_demand.time_s.p50


def test_a_mix_beats_every_single_type():
    # Speed 1.0 per vCPU (the c5 family figure, whole cores as arm64): A = 4 workers for $0.16/h, B = 2 workers for $0.09/h.
    # T = 2000 + 40000/W must meet 6300 s with at most 3 instances: W >= 10 (2A + B) or 12 (3A).
    offers = [offer("c5.a", 4, 16, 0.16, arch="arm64"), offer("c5.b", 2, 8, 0.09, arch="arm64")]
    model = AmdahlModel(serial_s=2000.0, parallel_s=40_000.0, spread=1.0)
    limits = Limits(budget_usd=10, deadline_s=6300, max_instances=3, market="on-demand")
    result = plan_with(offers, model, limits)
    assert mix(result.plans[0]) == {("app", "c5.a", "on-demand"): 2, ("app", "c5.b", "on-demand"): 1}
    catalog = Catalog(tuple(offers), "test", NOW)
    subs = planning.build_problem(model, catalog, SINGLE, limits, scale=1.0, rules=PLAIN)
    single = min(cost for sub in subs for *_, cost in homogeneous_bests(sub, budget_usd=10, deadline_s=6300))
    assert result.plans[0].cost_usd.p50 < single * 0.97


def test_homogeneous_flag_keeps_one_type():
    offers = [offer("c5.a", 4, 16, 0.16, arch="arm64"), offer("c5.b", 2, 8, 0.09, arch="arm64")]
    model = AmdahlModel(serial_s=2000.0, parallel_s=40_000.0, spread=1.0)
    limits = Limits(budget_usd=10, deadline_s=6300, max_instances=3, market="on-demand", homogeneous=True)
    best = plan_with(offers, model, limits).plans[0]
    assert mix(best) == {("app", "c5.a", "on-demand"): 3}


def test_the_master_is_sized_for_its_ranks_and_the_master_process():
    offers = [offer("c6i.large", 2, 4, 0.085), offer("r6i.large", 2, 16, 0.126), offer("t3.xlarge", 4, 16, 0.1664)]
    model = AmdahlModel(serial_s=0.0, parallel_s=200_000.0, worker_mb=500.0, master_mb=6000.0)
    limits = Limits(budget_usd=50, deadline_s=2 * 3600, market="on-demand", balance="dynamic")
    best = plan_with(offers, model, limits, groups=MASTER_WORKERS).plans[0]
    (master,) = [a for a in best.roles if a.role == "master"]
    # Its 2 ranks x 500 MB + the 6000 MB master, +10 %, + 512 MB for the OS and d2c: 8212 MB, which
    # c6i.large (4 GiB) cannot hold; t3.xlarge could but is burstable, never the master.
    assert (master.instance_type, master.count, master.workers_per_instance) == ("r6i.large", 1, 2)
    workers = sum(a.count * a.workers_per_instance for a in best.roles if a.role == "worker")
    assert workers >= 1
    # The master's two ranks count: the fleet's capacity is every slot's, D2C_WORKER_COUNT's sum.
    speed = lambda a: 0.6 * (1.10 if a.instance_type.startswith("r6i") else 1.12)  # noqa: E731
    capacity = sum(a.count * a.workers_per_instance * speed(a) for a in best.roles)
    assert best.time_s.p50 - 180 == pytest.approx(200_000 / capacity, rel=0.021)


def test_a_static_mpi_plan_keeps_every_host_in_one_family():
    # c5 is cheaper per worker, c7i faster; a static decomposition must not mix them.
    offers = [offer("c5.large", 2, 4, 0.085), offer("c5.2xlarge", 8, 16, 0.34), offer("c7i.large", 2, 4, 0.08925),
              offer("c7i.2xlarge", 8, 16, 0.357), offer("r6i.large", 2, 16, 0.126)]
    model = AmdahlModel(serial_s=0.0, parallel_s=300_000.0, worker_mb=500.0, master_mb=1500.0)
    static = plan_with(offers, model, Limits(budget_usd=50, deadline_s=3 * 3600, market="on-demand"), groups=MASTER_WORKERS, top=5)
    for plan in static.plans:
        assert len({a.instance_type.split(".")[0] for a in plan.roles}) == 1, plan.roles
    dynamic = plan_with(offers, model, Limits(budget_usd=50, deadline_s=3 * 3600, market="on-demand", balance="dynamic"),
                        groups=MASTER_WORKERS, top=5)
    assert any(len({a.instance_type.split(".")[0] for a in plan.roles}) > 1 for plan in dynamic.plans)
    assert dynamic.plans[0].cost_usd.p50 <= static.plans[0].cost_usd.p50


def test_ranked_plans_are_distinct_and_ordered():
    offers = [offer(f"c6i.{s}", v, 2 * v, 0.0425 * v, spot=0.016 * v) for s, v in (("large", 2), ("xlarge", 4), ("2xlarge", 8))]
    offers += [offer(o.instance_type, o.vcpus, o.memory_gib, o.on_demand_usd_h * 1.1, o.spot_usd_h, region="eu-west-1") for o in offers]
    model = AmdahlModel(serial_s=300.0, parallel_s=50_000.0)
    result = plan_with(offers, model, Limits(budget_usd=20, deadline_s=3 * 3600), top=5)
    ranked = [p for p in result.plans][:5]
    costs = [p.cost_usd.p50 for p in ranked]
    assert costs == sorted(costs)
    keys = [(p.region, frozenset((a.role, a.instance_type, a.market) for a in p.roles)) for p in ranked]
    assert len(set(keys)) == len(keys)
    assert ranked[0].on_frontier
    fastest = min(result.plans, key=lambda p: p.time_s.p90)
    assert fastest.on_frontier and all(p.cost_usd.p90 <= 20 for p in result.plans)


def test_no_plan_names_the_budget_and_the_deadline_gap():
    # T = 1000 + 24000/W. Meeting 2h needs 2 instances: 1000 + 5000 s (+ up to 2 % level) + 180 s
    # boot at $0.34/h = $0.58-0.59. Within $0.55 the fastest is 1 instance: 11000 + 180 s = 3h06m.
    model = AmdahlModel(serial_s=1000.0, parallel_s=24_000.0, spread=1.0)
    limits = Limits(budget_usd=0.55, deadline_s=7200, market="on-demand")
    with pytest.raises(NoPlanError) as caught:
        plan_with([offer("c5.xlarge", 4, 8, 0.17)], model, limits)
    assert caught.value.exit_code == 3
    assert re.fullmatch(
        r"no plan fits both limits: the cheapest plan that meets 2h00m costs \$0\.5[89] \(p90\), \$0\.0[34] over the "
        r"\$0\.55 budget; within \$0\.55 the fastest plan takes 3h06m \(p90\), 1h06m past the deadline",
        caught.value.message,
    ), caught.value.message


def test_no_plan_without_deadline_names_the_cheapest_cost():
    model = AmdahlModel(serial_s=0.0, parallel_s=24_000.0, spread=1.0)
    with pytest.raises(NoPlanError, match=r"^no plan fits the \$0\.10 budget: the cheapest plan costs \$0\.4\d \(p90\), \$0\.3\d over$"):
        plan_with([offer("c5.xlarge", 4, 8, 0.17)], model, Limits(budget_usd=0.10, market="on-demand"))


def test_no_plan_meets_an_impossible_deadline():
    model = AmdahlModel(serial_s=3600.0, parallel_s=24_000.0, spread=1.0)
    with pytest.raises(NoPlanError, match=r"^no plan meets the 30m deadline at any price: the fastest possible takes 1h"):
        plan_with([offer("c5.xlarge", 4, 8, 0.17)], model, Limits(budget_usd=1000, deadline_s=1800, market="on-demand"))


def test_filters_that_match_nothing():
    with pytest.raises(NoPlanError, match=r"no instance type in the catalog \(test\) matches market spot, regions mars-1"):
        plan_with([offer("c5.xlarge", 4, 8, 0.17, spot=0.05)], AmdahlModel(), Limits(budget_usd=10, market="spot", regions=("mars-1",)))


def test_arch_filter_keeps_x86_images_off_graviton():
    offers = [offer("c7g.xlarge", 4, 8, 0.10, arch="arm64"), offer("c6i.xlarge", 4, 8, 0.17)]
    result = plan_with(offers, AmdahlModel(), Limits(budget_usd=20, arch="x86_64", market="on-demand"))
    assert {a.arch for p in result.plans for a in p.roles} == {"x86_64"}


def test_plans_json_round_trip(tmp_path):
    offers = [offer("c6i.xlarge", 4, 8, 0.17, spot=0.06), offer("c6i.2xlarge", 8, 16, 0.34, spot=0.12)]
    limits = Limits(budget_usd=10, deadline_s=7200, regions=("us-east-1",))
    result = plan_with(offers, AmdahlModel(), limits, groups=MASTER_WORKERS)
    catalog = Catalog(tuple(offers), "test", NOW)
    plans = planning.plan_set(result, limits, descriptor_name="demo", scale=1.0, profile_digest="sha256:abc", catalog=catalog, output_gb=2.5)
    path = tmp_path / "plans.json"
    plans.save(path)
    raw = json.loads(path.read_text())
    assert raw["version"] == 1
    assert raw["inputs"] == {
        "budget_usd": 10, "deadline_s": 7200, "scale": 1.0, "profile_digest": "sha256:abc", "catalog_source": "test",
        "catalog_fetched_at": "2026-01-01T00:00:00+00:00", "market": "any", "regions": ["us-east-1"], "output_gb": 2.5,
    }
    first = raw["plans"][0]
    assert set(first) == {"rank", "region", "why", "on_frontier", "time_s", "cost_usd", "zone", "cost_breakdown", "roles", "also_in"}
    assert set(first["roles"][0]) == {
        "role", "instance_type", "count", "market", "region", "vcpus", "memory_gib", "arch", "price_usd_h", "workers_per_instance",
        "on_demand_usd_h", "cpu_credits", "zone", "root_gb",
    }
    assert [r["role"] for r in first["roles"]][0] == "master"
    loaded = load_plans(path)
    assert loaded == plans
    assert loaded.plan(1).roles == plans.plans[0].roles

    raw["inputs"]["budget_usd"] = float("inf")
    path.write_text(json.dumps(raw))
    with pytest.raises(UsageError, match=r"inputs.budget_usd: inf is not a usable amount"):
        load_plans(path)

    # A zone is an AZ ID or a zone name of the plan's region; another region's is refused.
    raw["inputs"]["budget_usd"] = 10
    raw["plans"][0]["roles"][0]["zone"] = "use1-az2"
    path.write_text(json.dumps(raw))
    assert load_plans(path).plan(1).roles[0].zone == "use1-az2"
    raw["plans"][0]["roles"][0]["zone"] = "use2-az1"
    path.write_text(json.dumps(raw))
    with pytest.raises(UsageError, match=r"roles\[0\]\.zone: 'use2-az1' is not an Availability Zone of us-east-1"):
        load_plans(path)


def test_a_solution_not_proven_optimal_is_refused(monkeypatch):
    """PuLP can return a time-limited incumbent with status 1; only a proven optimum becomes a plan."""
    import pulp

    from d2c.errors import WorkError
    from planner import ranking

    catalog = Catalog((offer("c5.xlarge", 4, 8, 0.17),), "test", NOW)
    limits = Limits(budget_usd=10, market="on-demand")
    subs = planning.build_problem(AmdahlModel(), catalog, SINGLE, limits, scale=1.0, rules=PLAIN)
    real_solve = pulp.LpProblem.solve

    def time_limited(self, solver=None, **kwargs):
        status = real_solve(self, solver, **kwargs)
        self.sol_status = pulp.LpSolutionIntegerFeasible  # what CBC reports when stopped by a time limit
        return status

    monkeypatch.setattr(pulp.LpProblem, "solve", time_limited)
    with pytest.raises(WorkError, match=r"^the cbc solver did not prove a plan optimal \(status Optimal, solution Solution Found\); try --solver highs$"):
        ranking.best_plans(subs, top=1, budget_usd=10, deadline_s=None, solver="cbc")


def test_fleets_of_two_families_planned_apart_are_never_taken_for_one_another():
    """Static balance plans each family as a problem of its own, whose candidates are numbered from 0:
    one c6i.large master and worker is not one c7g.large master and worker. (Taken for the same
    fleet, the fastest plan was left out of the list and a slower one called the fastest.)"""
    from planner.ranking import Found

    model = AmdahlModel(serial_s=0.0, parallel_s=24_000.0, spread=1.0)
    limits = Limits(budget_usd=10, market="on-demand", balance="static")
    catalog = Catalog((offer("c6i.large", 2, 4, 0.085), offer("c7g.large", 2, 4, 0.0725, arch="arm64")), "test", NOW)
    subs = planning.build_problem(model, catalog, MASTER_WORKERS, limits, scale=1.0, rules=PLAIN)
    assert sorted(s.family for s in subs) == ["c6i", "c7g"] and {len(s.workers.cands) for s in subs} == {1}
    fleets = [Found(sub, {0: 1}, 0, None).fleet for sub in subs]
    assert fleets[0] != fleets[1], fleets
    assert {f[3][0][0][0] for f in fleets} == {"c6i.large", "c7g.large"}, "fleets are named by their types"


def test_a_spot_plan_is_priced_in_one_zone_and_names_it():
    # A = 4 workers, B = 2; T = 2000 + 40000/W must meet 6300 s with at most 3 instances: 2A + B or 3A.
    # Zone by zone: az1 sells 3A for $0.15/h (5333 s) and 2A + B for $0.19/h (6000 s); az2 (and az3,
    # its twin) 2A + B for $0.13/h and 3A for $0.18/h. Each type's cheapest zone taken apart would
    # price 2A + B at $0.11/h, which no zone sells. The Atlanta Local Zone is cheaper still, but
    # needs an opt-in.
    def zoned(name, vcpus, memory, prices):
        return replace(offer(name, vcpus, memory, 0.5, arch="arm64"), spot_usd_h=min(prices.values()), spot_zones=tuple(sorted(prices.items())))

    offers = [
        zoned("c5.a", 4, 16, {"use1-az1": 0.05, "use1-az2": 0.06, "use1-az3": 0.06, "use1-atl2-az1": 0.01}),
        zoned("c5.b", 2, 8, {"use1-az1": 0.09, "use1-az2": 0.01, "use1-az3": 0.01, "use1-atl2-az1": 0.005}),
    ]
    model = AmdahlModel(serial_s=2000.0, parallel_s=40_000.0, spread=1.0)
    result = plan_with(offers, model, Limits(budget_usd=10, deadline_s=6300, max_instances=3, market="spot"))
    first, second = result.plans[:2]
    assert mix(first) == {("app", "c5.a", "spot"): 2, ("app", "c5.b", "spot"): 1}
    assert first.zone == "use1-az2" and {a.zone for a in first.roles} == {"use1-az2"}
    assert first.hourly_usd == pytest.approx(0.13)
    assert [(a.zone, a.cost_usd.p50) for a in first.also_in] == [("use1-az3", first.cost_usd.p50)]
    assert mix(second) == {("app", "c5.a", "spot"): 3} and second.zone == "use1-az1"
    assert second.hourly_usd == pytest.approx(0.15)
    assert all("atl" not in (a.zone or "") for p in result.plans for a in p.roles)


def test_the_table_names_the_zone_of_a_zone_priced_plan():
    from d2c.cli.recommend_cmd import plan_rows

    offers = [replace(offer("c6i.xlarge", 4, 8, 0.17), spot_usd_h=0.05, spot_zones=(("use1-az4", 0.05), ("use1-az6", 0.07)))]
    plan = plan_with(offers, AmdahlModel(serial_s=0.0, parallel_s=4000.0, spread=1.0), Limits(budget_usd=10, market="spot"), top=1).plans[0]
    rows = plan_rows(plan)
    assert [row[3] for row in rows] == ["us-east-1", "spot", "use1-az4"]
