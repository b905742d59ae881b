"""The budget and deadline watchdog: its arithmetic, and stopping real runs under a fast clock."""

from __future__ import annotations

import json
import re

from d2c.descriptor import load_descriptor
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
from executor.providers.base import Machine, deadman_minutes
from executor.providers.local import LocalProvider
from executor.watchdog import Watchdog
from planner.billing import BillingRules
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
    # The timer starts after boot, billing at launch: the planner's boot/setup allowance (3 min) comes off.
    assert BillingRules().boot_setup_s == 180.0
    assert deadman_minutes(budget_usd=1.0, hourly_usd=2.0, deadline_s=None) == 27
    assert deadman_minutes(budget_usd=10.0, hourly_usd=1.0, deadline_s=1800) == 27
    assert deadman_minutes(budget_usd=1.0, hourly_usd=2.0, deadline_s=None, boot_s=0) == 30
    assert deadman_minutes(budget_usd=1.0, hourly_usd=2.0, deadline_s=None, fixed_usd=0.5) == 12, "egress kept back from the budget"
    assert deadman_minutes(budget_usd=0.001, hourly_usd=100.0, deadline_s=None) == 1
    assert deadman_minutes(budget_usd=0.06, hourly_usd=1.0, deadline_s=None) == 1, "3.6 min of budget less 3 min of boot, never below one"


PROGRESS_APP = {
    "work.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 300); do echo row $i >> out/rows.txt; echo row $i; sleep 0.05; done\necho complete > out/complete.txt\n",
}


def _run_with_fast_clock(tmp_path, *, budget: float, deadline_s: float | None, price: float, factor: float, reserve_s: float, output_gb: float = 0.0):
    project = app_project(
        tmp_path, "rows", PROGRESS_APP, "roles:\n  - {name: master, image: app, command: ./work.sh}\noutputs:\n  - {remote: out, local: results}\n"
    )
    plans_path = write_plans(
        project / "plans.json", "rows", [("master", 1, 1)], budget_usd=budget, deadline_s=deadline_s, price_usd_h=price, output_gb=output_gb
    )
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


def test_expected_output_egress_is_reserved_so_the_run_stops_earlier(tmp_path):
    # $36/h at 100x speed is $1 per real second. With no outputs expected the $3 budget stops the run at
    # about $2 spent (the 100 s reserve is $1); 12 GB of expected outputs keep back $1.08 of egress more.
    _, plain, _ = _run_with_fast_clock(tmp_path / "plain", budget=3.0, deadline_s=None, price=36.0, factor=100, reserve_s=100)
    _, heavy, ui = _run_with_fast_clock(tmp_path / "heavy", budget=3.0, deadline_s=None, price=36.0, factor=100, reserve_s=100, output_gb=12.0)
    assert plain.outcome == heavy.outcome == "stopped"
    plain_cost = json.loads(plain.report_path.read_text())["cost_usd"]
    heavy_cost = json.loads(heavy.report_path.read_text())["cost_usd"]
    assert heavy_cost < plain_cost - 0.6, (heavy_cost, plain_cost)
    assert heavy_cost < 3.0 - 1.08
    # $1.00 for the 100 s reserve, $1.08 of egress, and the spend until the next check (0.1 s apart, $0.10 at this pace, more under load).
    kept = [float(re.search(r"needs about \$(\d+\.\d+) more", note).group(1)) for note in ui.notes if "needs about $" in note]
    assert kept and 2.08 < kept[0] < 2.6, ui.notes


class SteppingUI(RecordingUI):
    """Moves a FixedClock forward by ``step_s`` at each progress report of ``what`` (when ``at`` is None or equals ``done``)."""

    def __init__(self, clock: FixedClock, what: str, step_s: float, at: int | None = None):
        super().__init__()
        self.clock, self.what, self.step_s, self.at = clock, what, step_s, at
        self.reports = 0

    def progress(self, what: str, done: int, total: int) -> None:
        if what == self.what and (self.at is None or done == self.at):
            self.reports += 1
            self.clock.now += self.step_s


def _run_stepping(project, ui: SteppingUI, clock: FixedClock):
    plans_path = write_plans(project / "plans.json", project.name, [("master", 1, 1)], budget_usd=5.0, price_usd_h=3.6)
    planset = load_plans(plans_path)
    orchestrator = Orchestrator(
        open_journal(), LocalProvider(clock=clock), ui=ui, clock=clock, settings=RunSettings(poll_s=0.05, reserve_s=60, states_every_s=60, streams=1)
    )
    return orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=plans_path)


def test_a_slow_upload_stops_at_the_budget_before_the_app_starts(tmp_path):
    # $3.6/h is $0.60 per 600 s; each uploaded file takes 600 s on this clock. With $0.06 kept for the
    # 60 s reserve and $0.60 for the 600 s until the next check, the run stops after the 8th of 21 files
    # ($4.80 spent): one more would bring it to $5.40, past the $5 budget.
    app = {"work.sh": "#!/bin/bash\necho ran > ran.txt\n"} | {f"part{i:02d}.dat": "x" * 100 for i in range(20)}
    project = app_project(tmp_path, "slowup", app, "roles:\n  - {name: master, image: app, command: ./work.sh}\n")
    clock = FixedClock(1_800_000_000.0)
    ui = SteppingUI(clock, "uploading", 600.0)
    result = _run_stepping(project, ui, clock)
    assert result.outcome == "stopped" and "$5.00 budget" in result.message
    assert ui.reports == 8, "the upload stopped at the last file the budget could pay for"
    assert any("stopped while uploading" in note for note in ui.notes)
    details = open_journal().run(result.run_id).details
    assert "master_started_at" not in details, "the app never started"
    assert all(not r.live for r in open_journal().resources(result.run_id))


def test_fetching_stops_at_the_budget_itself_and_says_what_stayed_behind(tmp_path):
    app = {"work.sh": "#!/bin/bash\nfor f in a b c; do echo $f > $f.txt; done\n"}
    outputs = "".join(f"  - {{remote: {f}.txt, local: got/{f}.txt}}\n" for f in "abc")
    project = app_project(tmp_path, "slowfetch", app, "roles:\n  - {name: master, image: app, command: ./work.sh}\noutputs:\n" + outputs)
    clock = FixedClock(1_800_000_000.0)
    # Ten hours pass while the first output comes back: $36 of a $5 budget.
    ui = SteppingUI(clock, "downloading", 36000.0, at=1)
    result = _run_stepping(project, ui, clock)
    assert result.outcome == "stopped"
    assert "while fetching outputs, so b.txt, c.txt stayed behind" in result.message
    assert (project / "got" / "a.txt").read_text() == "a\n"
    assert not (project / "got" / "b.txt").exists() and not (project / "got" / "c.txt").exists()
    report = json.loads(result.report_path.read_text())
    assert [o["fetched"] for o in report["outputs"]] == [True, False, False]
