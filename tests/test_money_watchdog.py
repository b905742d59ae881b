"""The watchdog counts every billed item and keeps back what the fleet spends until the next check."""

from __future__ import annotations

import json

import pytest

from d2c.descriptor import load_descriptor
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
from executor.providers.base import Machine
from executor.providers.local import LocalProvider
from executor.watchdog import Watchdog
from planner.billing import SECONDS_PER_MONTH
from planner.plans import load_plans
from tests.fixtures.executor import ScaledClock, app_project, write_plans
from tests.test_executor_watchdog import FixedClock


def machine(instance_id: str, price: float, market: str = "on-demand") -> Machine:
    return Machine("run", instance_id, "worker", instance_id, "c6i.large", market, price, "10.0.0.4", "10.0.0.4", 0.0, "ubuntu", 2)


def test_public_addresses_are_billed_per_address_hour():
    clock = FixedClock(7200.0)
    dog = Watchdog(machines=[machine("a", 1.0), machine("b", 1.0)], budget_usd=100, deadline_at=None, clock=clock, public_ipv4={"a"}, reserve_s=0)
    assert dog.ipv4_usd() == pytest.approx(2 * 0.005), "one address, two hours"
    assert dog.accrued_usd() == pytest.approx(4.0 + 0.01)
    assert dog.breakdown().public_ipv4 == pytest.approx(0.01)
    assert dog.fleet_hourly_usd == pytest.approx(2.005)


def test_a_spot_price_read_later_is_accrued_from_then_on():
    clock = FixedClock(0.0)
    readings = iter([{"s": 0.20}, {"s": 0.60}])
    dog = Watchdog(
        machines=[machine("s", 0.10, "spot")], budget_usd=100, deadline_at=None, clock=clock, reserve_s=0,
        price_source=lambda running: next(readings), price_every_s=3600,
    )
    clock.now = 1800.0
    assert dog.check() is None  # reads $0.20/h at 30 min
    clock.now = 3600.0
    assert dog.check() is None  # not due yet: 30 min since the last read
    clock.now = 5400.0
    assert dog.check() is None  # reads $0.60/h at 90 min
    clock.now = 7200.0
    assert dog.cost_by_instance()["s"] == pytest.approx(0.5 * 0.10 + 1.0 * 0.20 + 0.5 * 0.60)
    assert dog.hourly_usd == 0.60


def test_the_reserve_covers_the_time_until_the_next_check():
    # $36/h is a cent a second. Checks 50 s apart must keep 50 s of spend back on top of the 100 s reserve.
    clock = FixedClock(0.0)
    dog = Watchdog(machines=[machine("a", 36.0)], budget_usd=10.0, deadline_at=None, clock=clock, reserve_s=100, ebs_gb=730)
    assert dog.check() is None
    assert dog.reserve_usd() == pytest.approx((36.0 + 730 * 0.08 * 3600 / SECONDS_PER_MONTH) * 100 / 3600)
    for now in (50.0, 100.0, 150.0):
        clock.now = now
        dog.check()
    assert dog.gap_s == 50.0
    assert dog.reserve_time_s() == 150.0
    # At 800 s: $8.00 spent (+EBS), the next check and teardown would bring it to $9.50: it goes on; at 850 s it must stop.
    clock.now = 800.0
    assert dog.check() is None
    clock.now = 850.0
    verdict = dog.check()
    assert verdict is not None and verdict.reason == "budget"
    assert dog.accrued_usd() + 36.0 * 100 / 3600 <= 10.0, "stopped at the next check, teardown still fits the budget"


ROWS_APP = {
    "work.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 400); do echo row $i >> out/rows.txt; sleep 0.05; done\necho complete > out/complete.txt\n",
}


def test_budget_running_out_mid_run_with_sparse_checks_ends_at_or_under_the_budget(tmp_path):
    """$36/h at 100x is $1 a real second; checks every 0.5 s real (50 s simulated) would overshoot without the gap reserve."""
    project = app_project(tmp_path, "rows", ROWS_APP, "roles:\n  - {name: master, image: app, command: ./work.sh}\noutputs:\n  - {remote: out, local: results}\n")
    plans_path = write_plans(project / "plans.json", "rows", [("master", 1, 1)], budget_usd=4.0, price_usd_h=36.0)
    planset = load_plans(plans_path)
    clock = ScaledClock(100)
    orchestrator = Orchestrator(
        open_journal(), LocalProvider(clock=clock), ui=RecordingUI(), clock=clock,
        settings=RunSettings(poll_s=0.5, reserve_s=100, states_every_s=60),
    )
    result = orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=plans_path)
    assert result.outcome == "stopped", result.message
    report = json.loads(result.report_path.read_text())
    assert report["cost_usd"] <= 4.0
    assert report["cost_usd"] > 2.0, "it ran until close to the budget"
    breakdown = report["cost_breakdown"]["actual"]
    assert sum(breakdown.values()) == pytest.approx(report["cost_usd"], abs=1e-5)
    assert not (project / "results" / "complete.txt").exists()
