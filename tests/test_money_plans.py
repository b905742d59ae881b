"""Money in plans: every billed item priced, burstable types left out unless asked for, breakdowns that add up."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from planner import recommend as planning
from planner.billing import SECONDS_PER_MONTH, BillingRules, is_burstable, surplus_credit_usd_h
from planner.candidates import Limits, build_candidates
from planner.catalog import Catalog, InstanceOffer
from planner.problem import RoleGroup
from profiler.fleet import burstable_baseline, instance_capacity
from tests.fixtures.planner_models import AmdahlModel

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _offer(name, vcpus, memory_gib, price, region="us-east-1"):
    return InstanceOffer(name, region, vcpus, memory_gib, "x86_64", price, None, fetched_at=NOW)


def _d2c(*args, cwd: Path):
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def quickstart(tmp_path) -> Path:
    """examples/montecarlo with a profile imported from measured runs (no profiling needed)."""
    import shutil

    project = tmp_path / "montecarlo"
    shutil.copytree(REPO / "examples" / "montecarlo", project)
    rows = ["scale,workers,wall_s"] + [f"{s},{w},{0.5 + 2000 * s / w:.3f}" for s in (0.01, 0.02, 0.05) for w in (1, 2) for _ in (1, 2)]
    (project / "runs.csv").write_text("\n".join(rows) + "\n")
    done = _d2c("profile", "import", "runs.csv", "-o", "profile.json", cwd=project)
    assert done.returncode == 0, done.stderr
    return project


def test_quickstart_plans_leave_burstable_types_out_and_price_public_ipv4(quickstart):
    done = _d2c("recommend", "--budget", "5", "--json", cwd=quickstart)
    assert done.returncode == 0, done.stderr
    plans = json.loads(done.stdout)["plans"]
    assert plans
    for plan in plans:
        assert not any(is_burstable(role["instance_type"]) for role in plan["roles"]), plan["roles"]
        items = plan["cost_breakdown"]
        assert items["public_ipv4"] > 0, "one public address per instance is billed"
        assert sum(items.values()) == pytest.approx(plan["cost_usd"]["p50"], abs=2e-4)
    # What the table shows for each plan too.
    table = _d2c("recommend", "--budget", "5", "--top", "1", cwd=quickstart)
    shown = " ".join(table.stdout.split())
    assert "public IPv4 $" in shown and "compute $" in shown


def test_naming_a_burstable_type_without_the_flag_is_bad_input(quickstart):
    done = _d2c("recommend", "--budget", "5", "--types", "t3", cwd=quickstart)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --types: t3 is a burstable type")
    assert "--include-burstable" in done.stderr and "Traceback" not in done.stderr
    allowed = _d2c("recommend", "--budget", "5", "--types", "t3", "--include-burstable", "--json", cwd=quickstart)
    assert allowed.returncode == 0, allowed.stderr
    roles = [r for p in json.loads(allowed.stdout)["plans"] for r in p["roles"]]
    assert roles and all(r["instance_type"].startswith("t3.") and r["cpu_credits"] in ("standard", "unlimited") for r in roles)


def test_burstable_candidates_are_priced_in_both_credit_modes_at_aws_baselines():
    catalog = Catalog((_offer("t3.nano", 2, 0.5, 0.0052), _offer("t3.xlarge", 4, 16, 0.1664), _offer("c6i.large", 2, 4, 0.085)), "test", NOW)
    assert {c.instance_type for c in build_candidates(catalog, Limits(budget_usd=5, market="on-demand"))} == {"c6i.large"}
    rows = {(c.instance_type, c.cpu_credits): c for c in build_candidates(catalog, Limits(budget_usd=5, market="on-demand", include_burstable=True))}
    assert burstable_baseline("t3.nano") == 0.05 and burstable_baseline("t3.xlarge") == 0.40
    nano_standard, nano_unlimited = rows[("t3.nano", "standard")], rows[("t3.nano", "unlimited")]
    # Standard: list price, 2 vCPUs at 5 % of a t3 core (0.95 of a c5 core).
    assert nano_standard.price_usd_h == 0.0052 and nano_standard.credit_usd_h == 0
    assert nano_standard.capacity_units == round(2 * 0.95 * 0.05 * 100)
    # Unlimited at full load: 2 vCPUs x 95 % above baseline x $0.05 per vCPU-hour of surplus credits on top: 19x the list price.
    assert nano_unlimited.credit_usd_h == pytest.approx(2 * 0.95 * 0.05) == surplus_credit_usd_h("t3.nano", 2)
    assert nano_unlimited.price_usd_h / 0.0052 == pytest.approx(19.27, abs=0.01)
    assert nano_unlimited.capacity_units == round(instance_capacity("c5", "x86_64", 2).speed * 0.95 * 2 * 100)


def test_a_hand_checked_breakdown_adds_up_to_the_plan_cost():
    # One c6i.large (2 vCPUs x 0.6 x 1.12 = 1.344 workers) on demand; the app takes 1344 s of one worker: 1000 s here.
    model = AmdahlModel(serial_s=0.0, parallel_s=1344.0, spread=1.0)
    rules = BillingRules(boot_setup_s=200.0, ebs_gb=20.0, egress_gb=3.0, image_gb=6.0)
    groups = (RoleGroup("app", 1, 1, works=True, hosts_master=True, ebs_gb=20.0), None)
    limits = Limits(budget_usd=5, market="on-demand", regions=("us-east-1",))
    catalog = Catalog((_offer("c6i.large", 2, 4, 0.085),), "test", NOW)
    subs = planning.build_problem(model, catalog, groups, limits, scale=1.0, rules=rules)
    plan = planning.recommend(subs, limits, top=1).plans[0]
    run_s = plan.time_s.p50 - 200.0
    assert run_s == pytest.approx(1000.0, rel=0.021)
    billed = 200.0 + run_s
    expected = {
        "compute": billed * 0.085 / 3600,
        "ebs": billed * 20 * 0.08 / SECONDS_PER_MONTH,
        "public_ipv4": billed * 0.005 / 3600,
        "egress": 3 * 0.09,
        "snapshots": 6 * 0.05 * billed / SECONDS_PER_MONTH,
        "cpu_credits": 0.0,
    }
    got = plan.breakdown.to_dict()
    for item, value in expected.items():
        assert got[item] == pytest.approx(value, abs=2e-6), item
    assert plan.breakdown.total == pytest.approx(plan.cost_usd.p50, abs=1e-4)
    assert plan.roles[0].on_demand_usd_h == 0.085 and plan.roles[0].root_gb == 20.0


def test_image_upload_counts_in_the_plan_time(tmp_path):
    from d2c.descriptor import load_descriptor

    image = tmp_path / "vm.raw"
    with open(image, "wb") as handle:
        handle.truncate(100 * 10**6)
    (tmp_path / "d2c.yaml").write_text("name: vm\nroles:\n  - {name: master, image: vm.raw, command: ./run}\n")
    rules = planning.billing_rules(load_descriptor(tmp_path / "d2c.yaml"), output_gb=0.0)
    assert rules.upload_s == pytest.approx(100e6 * 8 / (planning.UPLOAD_MBIT_S * 1e6))
    from planner.billing import plan_seconds

    assert plan_seconds(1000.0, 0.0, rules) == pytest.approx(rules.upload_s + rules.boot_setup_s + 1000.0)
