"""The budget and deadline watchdog: its arithmetic, and stopping real runs under a fast clock."""

from __future__ import annotations

import json

from d2c.descriptor import load_descriptor
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
from executor.providers.base import Machine, deadman_minutes
from executor.providers.local import LocalProvider
from executor.watchdog import Watchdog
from planner.plans import load_plans
from tests.fixtures.executor import ScaledClock, app_project, write_plans


def machine(instance_id: str, price: float, launched_at: float = 0.0) -> Machine:
    return Machine("run", instance_id, "worker", instance_id, "c5.large", "on-demand", price, "10.0.0.4", "10.0.0.4", launched_at, "ubuntu", 2)


class FixedClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_accrued_cost_uses_launch_prices_minimum_billing_ebs_and_egress():
    clock = FixedClock(30.0)
    dog = Watchdog(machines=[machine("a", 3.6), machine("b", 1.8)], budget_usd=10, deadline_at=None, clock=clock, ebs_gb=730, reserve_s=0)
    assert dog.accrued_usd() == 0.06 + 0.03 + 730 * 0.08 * (30 / 3600) / 730, "one-minute minimum per instance"
    clock.now = 3600.0
    dog.add_egress(2_000_000_000)
    assert abs(dog.accrued_usd() - (3.6 + 1.8 + 0.08 + 0.18)) < 1e-9
    dog.host_ended("b", at=1800.0)
    assert abs(dog.cost_by_instance()["b"] - 0.9) < 1e-9
    assert dog.hourly_usd == 3.6


def test_stops_when_spend_plus_reserve_reaches_the_budget():
    clock = FixedClock(0.0)
    dog = Watchdog(machines=[machine("a", 3.6)], budget_usd=1.0, deadline_at=None, clock=clock, reserve_s=100)
    clock.now = 899.0
    assert dog.check() is None
    clock.now = 900.0
    verdict = dog.check()
    assert verdict.reason == "budget"
    assert "$0.90 spent of the $1.00 budget" in verdict.message and "$0.10 more" in verdict.message


def test_stops_before_the_deadline_with_time_to_fetch():
    clock = FixedClock(0.0)
    dog = Watchdog(machines=[machine("a", 0.01)], budget_usd=100.0, deadline_at=3600.0, clock=clock, reserve_s=300)
    clock.now = 3299.0
    assert dog.check() is None
    clock.now = 3300.0
    verdict = dog.check()
    assert verdict.reason == "deadline" and "5.0 min left" in verdict.message


def test_deadman_minutes_bound_the_spend_and_the_deadline():
    assert deadman_minutes(budget_usd=1.0, hourly_usd=2.0, deadline_s=None) == 30
    assert deadman_minutes(budget_usd=10.0, hourly_usd=1.0, deadline_s=1800) == 30
    assert deadman_minutes(budget_usd=0.001, hourly_usd=100.0, deadline_s=None) == 1


PROGRESS_APP = {
    "work.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 300); do echo row $i >> out/rows.txt; echo row $i; sleep 0.05; done\necho complete > out/complete.txt\n",
}


def _run_with_fast_clock(tmp_path, *, budget: float, deadline_s: float | None, price: float, factor: float, reserve_s: float):
    project = app_project(
        tmp_path, "rows", PROGRESS_APP, "roles:\n  - {name: master, image: app, command: ./work.sh}\noutputs:\n  - {remote: out, local: results}\n"
    )
    plans_path = write_plans(project / "plans.json", "rows", [("master", 1, 1)], budget_usd=budget, deadline_s=deadline_s, price_usd_h=price)
    planset = load_plans(plans_path)
    clock = ScaledClock(factor)
    ui = RecordingUI()
    orchestrator = Orchestrator(
        open_journal(),
        LocalProvider(clock=clock),
        ui=ui,
        clock=clock,
        settings=RunSettings(poll_s=0.1, reserve_s=reserve_s, states_every_s=60),
    )
    result = orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=plans_path)
    return project, result, ui


def test_budget_running_out_mid_run_fetches_partial_output_and_tears_down(tmp_path):
    # $36/h at 100x speed costs $1 per real second: a $3 budget with a 100 s (simulated) reserve stops after about 2 s.
    project, result, ui = _run_with_fast_clock(tmp_path, budget=3.0, deadline_s=None, price=36.0, factor=100, reserve_s=100)
    assert result.outcome == "stopped" and result.exit_code == 1
    rows = (project / "results" / "rows.txt").read_text().splitlines()
    assert 0 < len(rows) < 300, "partial output reached the desktop"
    assert not (project / "results" / "complete.txt").exists()
    assert any("spent of the $3.00 budget" in note and "terminating every host" in note for note in ui.notes)

    run = open_journal().run(result.run_id)
    assert run.outcome == "stopped" and all(not r.live for r in open_journal().resources(run.run_id))
    report = json.loads(result.report_path.read_text())
    assert report["cost_usd"] <= 3.0
    assert report["cost_usd"] > 1.5, "it ran until close to the budget"
    assert report["outputs"] == [{"remote": "out", "local": str(project / "results"), "fetched": True}]


def test_deadline_near_stops_the_run_the_same_way(tmp_path):
    # A 10-minute deadline at 200x speed is 3 real seconds; the 120 s reserve makes it stop after about 2.4 s.
    project, result, ui = _run_with_fast_clock(tmp_path, budget=100.0, deadline_s=600, price=0.5, factor=200, reserve_s=120)
    assert result.outcome == "stopped"
    assert "before the deadline" in result.message
    rows = (project / "results" / "rows.txt").read_text().splitlines()
    assert 0 < len(rows) < 300
    report = json.loads(result.report_path.read_text())
    assert report["outcome"] == "stopped" and report["reason"].startswith("stopping:")
    assert all(not r.live for r in open_journal().resources(result.run_id))
