"""The integer program's plans equal brute-force enumeration of the same model.

Random small catalogs (one or two regions, both markets, two to four types; five to eight types
for the search over one- and two-type fleets, ``planner.pair_search``), random Amdahl,
Ernest and USL models (the last two with their fastest point inside or outside the range of
fleets), random roles (single-role app or master + workers, the master's ranks counted), static
or dynamic balance, random budget, deadline, instance and type caps: the cheapest plan's cost
equals the cheapest fleet found by trying every count vector (before and after dominance
pruning), the k-best costs equal the k cheapest distinct worker mixes, and no case ends in an
internal error. The pair search also gives the integer program's optimum solve by solve (windows,
cost caps, no-good cuts, both objectives).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import ilp, pair_search, ranking
from planner.billing import BillingRules
from planner.candidates import Limits, build_candidates
from planner.catalog import Catalog, InstanceOffer
from planner.enumeration import best_distinct, enumerate_fleets, enumerate_mixes
from planner.problem import RoleGroup, build_levels, build_subproblems, capacity_range, evaluate
from tests.fixtures.planner_models import AmdahlModel, ErnestModel, UslModel

FAMILIES = [("c5", "x86_64"), ("c6i", "x86_64"), ("c7g", "arm64"), ("m5", "x86_64"), ("t3", "x86_64")]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    regions = ["us-east-1", "eu-west-1"][: rng.integers(1, 3)]
    offers = random_offers(rng, regions, int(rng.integers(2, 5)))
    model = random_model(rng)
    if rng.random() < 0.5:
        workers, master = RoleGroup("app", 1, int(rng.integers(1, 6)), works=True, hosts_master=True), None
    else:
        workers = RoleGroup("worker", 1, int(rng.integers(1, 4)), works=True, hosts_master=False)
        master = RoleGroup("master", 1, 1, works=True, hosts_master=True)
    limits = Limits(
        budget_usd=float(rng.choice([0.5, 2.0, 10.0, 50.0])),
        deadline_s=None if rng.random() < 0.3 else float(rng.uniform(600, 20_000)),
        max_instances=None if rng.random() < 0.6 else int(rng.integers(2, 5)),
        homogeneous=bool(rng.random() < 0.2),
        max_types=None if rng.random() < 0.5 else int(rng.integers(1, 3)),
        balance=str(rng.choice(["static", "dynamic"])),
        market=str(rng.choice(["any", "on-demand", "spot"])),
    )
    quotas = {"us-east-1": {"on-demand": float(rng.choice([4, 8, 16]))}} if rng.random() < 0.3 else {}
    catalog = Catalog(tuple(offers), "test", NOW, vcpu_quotas=quotas)
    return catalog, model, workers, master, limits


def random_offers(rng, regions, n_types):
    offers = []
    for t in range(n_types):
        family, arch = FAMILIES[int(rng.integers(len(FAMILIES)))]
        vcpus = int(rng.choice([1, 2, 4, 8]))
        memory = float(vcpus * rng.choice([0.5, 2.0, 4.0, 8.0]))
        base = vcpus * float(rng.uniform(0.02, 0.06))
        for region in regions:
            price = round(base * float(rng.uniform(0.9, 1.2)), 4)
            spot = round(price * float(rng.uniform(0.25, 0.7)), 4) if rng.random() < 0.8 else None
            bucket = rng.choice([None, "<5%", ">20%"])
            offers.append(InstanceOffer(f"{family}.s{t}", region, vcpus, memory, arch, price, spot, interruption_bucket=bucket, fetched_at=NOW))
    return offers


def random_pair_case(seed: int):
    """A case for the search over one- and two-type fleets: five to eight types in one region,
    at most two per plan, larger counts, mostly dynamic balance, sometimes a quota per market."""
    rng = np.random.default_rng(seed)
    offers = random_offers(rng, ["us-east-1"], int(rng.integers(5, 9)))
    model = random_model(rng)
    least = int(rng.integers(1, 4))
    counts = (least, max(least, int(rng.integers(2, 7))))
    if rng.random() < 0.4:
        workers, master = RoleGroup("app", *counts, works=True, hosts_master=True), None
    else:
        workers = RoleGroup("worker", *counts, works=True, hosts_master=False)
        master = RoleGroup("master", 1, 1, works=True, hosts_master=True)
    limits = Limits(
        budget_usd=float(rng.choice([0.5, 2.0, 10.0, 50.0])),
        deadline_s=None if rng.random() < 0.3 else float(rng.uniform(600, 20_000)),
        max_instances=None if rng.random() < 0.6 else int(rng.integers(3, 8)),
        max_types=2,
        balance="static" if rng.random() < 0.2 else "dynamic",
        market=str(rng.choice(["any", "on-demand", "spot"])),
    )
    quotas = {"us-east-1": {market: float(rng.choice([8, 16, 32])) for market in ("on-demand", "spot")}} if rng.random() < 0.3 else {}
    catalog = Catalog(tuple(offers), "test", NOW, vcpu_quotas=quotas)
    return catalog, model, workers, master, limits


def random_model(rng):
    """Amdahl (always faster with more workers), or Ernest or USL, whose fastest point lies
    inside the range of fleets (a few workers) or beyond it."""
    kind = rng.choice(["amdahl", "ernest", "usl"])
    spread = float(rng.uniform(1.0, 1.5))
    worker_mb, master_mb = float(rng.uniform(100, 3000)), float(rng.uniform(100, 2000))
    if kind == "amdahl":
        return AmdahlModel(
            serial_s=float(rng.uniform(10, 600)), parallel_s=float(rng.uniform(2_000, 60_000)), spread=spread,
            worker_mb=worker_mb, split_mb=float(rng.uniform(0, 4000)), master_mb=master_mb,
        )
    parallel_s = float(rng.uniform(2_000, 60_000))
    fastest_workers = float(rng.choice([1.5, 4.0, 12.0, 400.0]))  # inside the range, or far beyond it
    if kind == "usl":
        # USL's T'(w) = 0 at w = sqrt(10 / coherency).
        return UslModel(serial_s=float(rng.uniform(10, 300)), parallel_s=parallel_s, coherency=10 / fastest_workers**2,
                        spread=spread, worker_mb=worker_mb, master_mb=master_mb)
    # Ernest's T'(w) = -b/w^2 + c/w + d = 0 at w: pick d so that happens at fastest_workers.
    log_s = float(rng.uniform(0, 200))
    linear_s = max(parallel_s / fastest_workers**2 - log_s / fastest_workers, 1e-6)
    return ErnestModel(fixed_s=float(rng.uniform(10, 300)), parallel_s=parallel_s, log_s=log_s, linear_s=linear_s,
                       spread=spread, worker_mb=worker_mb, master_mb=master_mb)


def build(catalog, model, workers, master, limits, prune=True, levels=None):
    candidates = build_candidates(catalog, limits)
    if not candidates:
        return [], None
    if levels is None:
        lo, hi = capacity_range(candidates, workers, limits.max_instances, master)
        levels = build_levels(model, 1.0, lo, hi)
    subs = build_subproblems(
        candidates, workers, master, levels, BillingRules(boot_setup_s=120.0, image_gb=4.0),
        quotas=catalog.vcpu_quotas, max_instances=limits.max_instances, homogeneous=limits.homogeneous,
        max_types=limits.max_types, balance=limits.balance, prune=prune,
    )
    return subs, levels


def brute_force(subs, limits, max_count, top):
    fleets = (
        fleet
        for sub in subs
        for fleet in enumerate_fleets(sub, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, max_count=max_count)
    )
    return best_distinct(fleets, top)


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_ilp_matches_brute_force(seed):
    catalog, model, workers, master, limits = random_case(seed)
    subs, levels = build(catalog, model, workers, master, limits)
    found = ranking.best_plans(subs, top=3, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, solver="highs") if subs else []
    # The oracle enumerates every candidate, dominated ones included, on the same levels.
    unpruned, _ = build(catalog, model, workers, master, limits, prune=False, levels=levels)
    oracle = brute_force(unpruned, limits, workers.max_count, 1)
    if not oracle:
        assert found == []
        return
    assert found, f"seed {seed}: brute force found a plan at ${oracle[0].evaluation.cost50:.4f}, the ILP none"
    assert found[0].evaluation.cost50 == pytest.approx(oracle[0].evaluation.cost50, rel=1e-7, abs=1e-9)
    # k-best: the distinct mixes of undominated types.
    pruned_oracle = brute_force(subs, limits, workers.max_count, 3)
    assert [f.evaluation.cost50 for f in found] == pytest.approx([f.evaluation.cost50 for f in pruned_oracle], rel=1e-7, abs=1e-9)
    for plan in found:
        e = plan.evaluation
        assert e.cost90 <= limits.budget_usd * (1 + 1e-9)
        if limits.deadline_s is not None:
            assert e.time90 <= limits.deadline_s * (1 + 1e-9)


@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_highs_agrees_with_cbc(seed):
    catalog, model, workers, master, limits = random_case(seed)
    subs, _ = build(catalog, model, workers, master, limits)
    if not subs:
        return
    args = dict(top=2, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s)
    cbc = [f.evaluation.cost50 for f in ranking.best_plans(subs, solver="cbc", **args)]
    highs = [f.evaluation.cost50 for f in ranking.best_plans(subs, solver="highs", **args)]
    assert highs == pytest.approx(cbc, rel=1e-7, abs=1e-9)


@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_fastest_affordable_matches_brute_force(seed):
    catalog, model, workers, master, limits = random_case(seed)
    subs, _ = build(catalog, model, workers, master, limits)
    fastest = ranking.fastest_time(subs, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, solver="highs") if subs else None
    times = [
        fleet.evaluation.time90
        for sub in subs
        for fleet in enumerate_fleets(sub, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, max_count=workers.max_count)
    ]
    if not times:
        assert fastest is None
    else:
        assert fastest == pytest.approx(min(times), rel=1e-9)


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_service_roles_are_priced_at_the_cheapest_type_that_holds_them(seed):
    """Every plan of an app with a service role (an I/O server) carries it; the integer program's
    cheapest plan equals brute force over worker fleets *and* every type the service could take."""
    from planner.billing import instance_usd
    from planner.problem import HOST_OVERHEAD_MB, MEMORY_HEADROOM, burstable

    catalog, model, workers, master, limits = random_case(seed)
    rng = np.random.default_rng(seed)
    limits = replace(limits, market="on-demand", max_instances=None)
    catalog = replace(catalog, vcpu_quotas={})
    service = RoleGroup("io", int(rng.integers(1, 3)), 0, works=False, hosts_master=False, memory_mb=float(rng.choice([300.0, 1500.0, 6000.0])))
    service = replace(service, max_count=service.min_count)
    candidates = build_candidates(catalog, limits)
    if not candidates:
        return
    lo, hi = capacity_range(candidates, workers, None, master)
    levels = build_levels(model, 1.0, lo, hi)
    rules = BillingRules(boot_setup_s=120.0, image_gb=4.0)
    common = dict(max_types=limits.max_types, balance=limits.balance, homogeneous=limits.homogeneous)
    with_service = build_subproblems(candidates, workers, master, levels, rules, services=(service,), **common)
    found = ranking.best_plans(with_service, top=1, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, solver="highs") if with_service else []

    best = None
    for sub in build_subproblems(candidates, workers, master, levels, rules, prune=False, **common):
        region_rules = rules.for_region(sub.region)
        types = [c for c in candidates if c.region == sub.region and c.market == sub.market and not burstable(c.offer.family)
                 and MEMORY_HEADROOM * service.memory_mb + HOST_OVERHEAD_MB <= c.memory_mb]
        for fleet in enumerate_fleets(sub, budget_usd=float("inf"), deadline_s=limits.deadline_s, max_count=workers.max_count):
            k = fleet.evaluation.level
            for t in types:
                cost90 = fleet.evaluation.cost90 + service.min_count * instance_usd(t.price_usd_h, levels.t90[k], 0.0, region_rules)
                cost50 = fleet.evaluation.cost50 + service.min_count * instance_usd(t.price_usd_h, levels.t50[k], 0.0, region_rules)
                if cost90 <= limits.budget_usd * (1 + 1e-9) and (best is None or cost50 < best):
                    best = cost50
    if best is None:
        assert found == []
        return
    assert found, f"seed {seed}: brute force found a plan at ${best:.4f}, the ILP none"
    assert found[0].evaluation.cost50 == pytest.approx(best, rel=1e-7, abs=1e-9)
    assert [h.role.role for h in found[0].sub.services] == ["io"]


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_pair_search_matches_brute_force_with_many_types(seed):
    """Five to eight types, at most two per plan: the k-best costs and the fastest time equal every
    fleet of one or two types tried in turn."""
    catalog, model, workers, master, limits = random_pair_case(seed)
    subs, levels = build(catalog, model, workers, master, limits)
    assert all(pair_search.covers(sub) for sub in subs)
    args = dict(budget_usd=limits.budget_usd, deadline_s=limits.deadline_s)
    found = ranking.best_plans(subs, top=3, solver="highs", **args) if subs else []
    unpruned, _ = build(catalog, model, workers, master, limits, prune=False, levels=levels)
    everything = [f for sub in unpruned for f in enumerate_mixes(sub, max_count=workers.max_count, **args)]
    if not everything:
        assert found == []
        return
    assert found, f"seed {seed}: brute force found a plan, the search none"
    assert found[0].evaluation.cost50 == pytest.approx(min(f.evaluation.cost50 for f in everything), rel=1e-7, abs=1e-9)
    kept = [f for sub in subs for f in enumerate_mixes(sub, max_count=workers.max_count, **args)]
    assert [f.evaluation.cost50 for f in found] == pytest.approx([f.evaluation.cost50 for f in best_distinct(kept, 3)], rel=1e-7, abs=1e-9)
    fastest = ranking.fastest_time(subs, solver="highs", **args)
    assert fastest == pytest.approx(min(f.evaluation.time90 for f in kept), rel=1e-9)


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_pair_search_agrees_with_the_integer_program(seed):
    """Solve by solve, over whole grids, windows of four levels and single levels, with and without a
    cost cap, three rounds of no-good cuts, cost and time objectives: the same optimum as HiGHS
    solving the integer program, and a fleet that checks out against the model at that value."""
    catalog, model, workers, master, limits = random_pair_case(seed)
    subs, levels = build(catalog, model, workers, master, limits)
    rng = np.random.default_rng(seed)
    args = dict(budget_usd=limits.budget_usd, deadline_s=limits.deadline_s, solver="highs")
    for sub in subs:
        start = int(rng.integers(len(levels)))
        windows = [np.arange(len(levels)), np.arange(start, min(start + 4, len(levels))), np.array([start])]
        for window in windows:
            for objective in ("cost", "time"):
                first = ilp.solve(sub, window, objective=objective, combinatorial=False, **args)
                caps = [None] if first is None or objective == "time" else [None, first.objective * float(rng.uniform(1.0, 1.2))]
                for cap in caps:
                    cuts = {True: (), False: ()}
                    for _ in range(3 if objective == "cost" else 1):
                        got = {
                            comb: ilp.solve(sub, window, objective=objective, cost_cap=cap, cuts=cuts[comb], combinatorial=comb, **args)
                            for comb in (True, False)
                        }
                        assert (got[True] is None) == (got[False] is None), f"seed {seed}: {sub.region} {sub.market} {window} {objective} cap {cap}"
                        if got[True] is None:
                            break
                        assert got[True].objective == pytest.approx(got[False].objective, rel=1e-7, abs=1e-9)
                        e = evaluate(sub, got[True].counts, got[True].master, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s)
                        assert e is not None and e.level == got[True].level
                        assert (e.cost50 if objective == "cost" else e.time90) == pytest.approx(got[True].objective, rel=1e-9)
                        cuts = {comb: cuts[comb] + (got[comb].key,) for comb in (True, False)}


def test_a_search_too_large_for_the_pair_search_goes_to_the_integer_program(monkeypatch):
    """Where a level would have the pair search try too many fleets, the integer program solves it,
    with the same plans (a case whose cheapest plan mixes two types)."""
    catalog, model, workers, master, limits = random_pair_case(25)
    subs, _ = build(catalog, model, workers, master, limits)
    args = dict(top=3, budget_usd=limits.budget_usd, deadline_s=limits.deadline_s)
    searched = ranking.best_plans(subs, **args)
    assert len(searched[0].counts) == 2
    monkeypatch.setattr(pair_search, "MOST_COMBINATIONS", 0)
    with pytest.raises(pair_search.TooLarge):
        pair_search.solve(subs[0], np.arange(len(subs[0].levels)), most=workers.max_count,
                          budget_usd=limits.budget_usd, deadline_s=limits.deadline_s)
    solved = ranking.best_plans([replace(sub, solver_state={}) for sub in subs], **args)
    assert [f.evaluation.cost50 for f in solved] == pytest.approx([f.evaluation.cost50 for f in searched], rel=1e-7)
