"""The integer program's plans equal brute-force enumeration of the same model.

Random small catalogs (one or two regions, both markets, two to four types), random Amdahl,
Ernest and USL models (the last two with their fastest point inside or outside the range of
fleets), random roles (single-role app or master + workers, the master's ranks counted), static
or dynamic balance, random budget, deadline, instance and type caps: the cheapest plan's cost
equals the cheapest fleet found by trying every count vector (before and after dominance
pruning), the k-best costs equal the k cheapest distinct worker mixes, and no case ends in an
internal error.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import ranking
from planner.billing import BillingRules
from planner.candidates import Limits, build_candidates
from planner.catalog import Catalog, InstanceOffer
from planner.enumeration import best_distinct, enumerate_fleets
from planner.problem import RoleGroup, build_levels, build_subproblems, capacity_range
from tests.fixtures.planner_models import AmdahlModel, ErnestModel, UslModel

FAMILIES = [("c5", "x86_64"), ("c6i", "x86_64"), ("c7g", "arm64"), ("m5", "x86_64"), ("t3", "x86_64")]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    regions = ["us-east-1", "eu-west-1"][: rng.integers(1, 3)]
    offers = []
    n_types = int(rng.integers(2, 5))
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
    from dataclasses import replace

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
