"""The dashboard's pages and charts as HTML and SVG text: what they say for odd or partial input."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from d2c.cli.ui import page_plans, page_runs
from d2c.cli.ui.html import MISSING, tick_duration
from d2c.cli.ui.project import Project
from d2c.cli.ui.svg import Axis, Chart, time_axis
from executor.journal import Journal, Resource, RunRecord
from executor.providers.base import Machine


def test_ticks_are_round_numbers_and_round_times():
    assert Axis(0, 2.2, "usd").tick_values() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert Axis(0.02, 1.2, "scale", log=True).tick_values() == [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert [tick_duration(v) for v in time_axis(0, 1900, "t", tick_duration).tick_values()] == ["0", "10m", "20m", "30m"]
    assert [tick_duration(v) for v in time_axis(150, 2100, "t", tick_duration, log=True).tick_values()] == ["5m", "10m", "15m", "30m"]
    assert tick_duration(5400) == "1h30m" and tick_duration(7200) == "2h" and tick_duration(30) == "30s"


def test_marker_labels_that_would_overlap_are_moved_apart():
    chart = Chart(Axis(0, 100, "x"), Axis(0, 10, "y"), "test")
    chart.vline(50, "p50", "p50 5m")
    chart.vline(50.5, "p90", "p90 5m")
    svg = chart.render()
    wide = svg.split('class="narrow"')[0]
    baselines = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="start">p[59]0', wide)]
    assert len(baselines) == 2 and abs(baselines[0] - baselines[1]) >= 14, "the second label sits a line lower"
    assert 'class="wide"' in svg and 'class="narrow"' in svg, "drawn for a wide and a phone screen"


def test_rank_labels_of_plans_drawn_on_one_spot():
    assert page_plans.rank_label([3]) == "#3"
    assert page_plans.rank_label([1, 2, 3, 4, 5]) == "#1-5"
    assert page_plans.rank_label([1, 4, 7]) == "#1,4,7"


@dataclass(frozen=True)
class _PlanWithBreakdown:
    rank: int = 1
    cost_breakdown: dict = field(default_factory=lambda: {"compute_usd": 0.8, "ebs_usd": 0.01, "public_ipv4_usd": 0.005})


def test_cost_breakdown_is_shown_where_plans_json_has_one_and_a_dash_where_not():
    shown = page_plans._breakdown_html(_PlanWithBreakdown())
    assert "compute $0.8000" in shown and "ebs $0.0100" in shown and "public ipv4 $0.0050" in shown
    assert page_plans._breakdown_html(object()) == MISSING


def test_run_command_names_a_plans_file_that_is_not_the_default(tmp_path):
    assert page_plans.run_command(2, tmp_path / "plans.json", tmp_path / "plans.json") == "d2c run --plan 2"
    assert page_plans.run_command(2, tmp_path / "big.json", tmp_path / "plans.json") == f"d2c run --plan 2 --plans {tmp_path / 'big.json'}"


def _orphaned_run(state: Path) -> str:
    """A running run whose controller (a pid that cannot exist) is gone, one host launched."""
    journal = Journal(state / "journal.sqlite")
    now = time.time()
    run_dir = state / "runs" / "orphan-1"
    journal.create_run(
        RunRecord(
            run_id="orphan-1", provider="aws", region="eu-west-1", state="running", descriptor="d2c.yaml", plans_file="plans.json",
            plan_rank=2, budget_usd=10.0, deadline_s=None, hourly_usd=0.5, run_dir=run_dir, created_at=now - 1200,
            details={"controller": {"pid": 2**22 + 7, "started_at": 1.0}},
        )
    )
    machine = Machine("orphan-1", "i-0abc", "master", "master-1", "c6i.large", "spot", 0.5, "10.0.0.5", "198.51.100.5", now - 1100, "ubuntu", 2)
    journal.add_resource(Resource("orphan-1", "instance", "i-0abc", "eu-west-1", "master", now - 1100, details=machine.to_details()))
    return "orphan-1"


def test_a_run_whose_controller_is_gone_says_how_to_resume_or_stop_it(tmp_path):
    run_id = _orphaned_run(tmp_path / ".d2c")
    project = Project(tmp_path, tmp_path / ".d2c")
    title, body = page_runs.render_run(project, run_id)
    assert f"d2c run --resume {run_id}" in body and f"d2c down {run_id}" in body
    assert "no deadline" in body and "no log lines yet" in body, "what the journal lacks is said, not invented"
    assert "c6i.large" in body and "spot" in body
    assert page_runs.render_run(project, "nope") is None
    _, listing = page_runs.render_list(project)
    assert "orphan-1" in listing and "gone" in listing


def test_a_report_with_a_cost_breakdown_shows_each_billed_item():
    report = {
        "predicted": {"time_s": {"p50": 300, "p90": 360}, "cost_usd": {"p50": 0.5, "p90": 0.6}, "boot_setup_s": 180},
        "total_s": 320.0, "wall_s": 130.0, "cost_usd": 0.52, "simulated": False,
        "cost_breakdown": {"actual": {"compute": 0.5, "ebs": 0.01, "public_ipv4": 0.01, "snapshots": 0.0}, "predicted": {"compute": 0.48, "ebs": 0.01, "public_ipv4": 0.01, "snapshots": 0.0}},
    }
    html = page_runs.report_html(report)
    assert 'id="cost-items"' in html and "public ipv4" in html and "$0.5000" in html
    assert "snapshots" not in html, "items nobody was billed for are left out"
    assert 'id="cost-items"' not in page_runs.report_html({k: v for k, v in report.items() if k != "cost_breakdown"})


def _model_with_two_close_candidates(noise: float, margin: float):
    """A fitted model whose chosen (simpler) candidate scores a little above the best, as the margin allows."""
    from dataclasses import replace

    from profiler.model import Candidate, Observation, fit_model

    runs = [Observation(scale, workers, 10 + 100 * scale / workers) for scale in (0.1, 0.2, 0.4) for workers in (1, 2, 4)]
    model = fit_model(runs, full_scale=1.0, families=("amdahl",), bootstrap_samples=0)
    simple = Candidate("amdahl", "s", (1.0, 2.0), cv_error=0.10, extrapolation_error=0.10)
    rich = Candidate("usl", "s", (1.0, 2.0, 3.0), cv_error=0.09, extrapolation_error=0.09)
    return replace(model, family="amdahl", scale_form="s", candidates=[simple, rich], noise=noise, margin=margin)


def test_why_a_model_was_chosen_names_the_margin_the_fit_used():
    from d2c.cli.ui.page_profile import why_chosen

    measured = why_chosen(_model_with_two_close_candidates(noise=0.04, margin=0.02))
    assert "usl (s) scores lowest (9.0 %)" in measured and "amdahl (s) (10.0 %)" in measured
    assert "margin (2.0 %, half the 4.0 % noise measured between repeats" in measured
    guessed = why_chosen(_model_with_two_close_candidates(noise=0.0, margin=0.0225))
    assert "margin (2.2 %, 25 % of the best score, as no point was repeated" in guessed


def test_the_plans_table_says_a_service_role_runs_no_ranks(tmp_path):
    from planner.plans import load_plans
    from tests.fixtures.executor import write_plans

    path = write_plans(tmp_path / "plans.json", "demo", [("master", 1, 2), ("io", 2, 0)])
    html = page_plans.plans_table(load_plans(path), path, path)
    assert "master: " in html and "2 worker(s) each" in html
    assert re.search(r"io: .*2× .*t3\.micro.*service, no ranks", html)


def test_the_plans_table_names_a_spot_plans_zone_once_under_its_region(tmp_path):
    from planner.plans import load_plans
    from tests.fixtures.executor import write_plans

    path = write_plans(tmp_path / "plans.json", "demo", [("master", 1, 2), ("worker", 2, 2)], market="spot", zone="use1-az4")
    html = page_plans.plans_table(load_plans(path), path, path)
    assert html.count("use1-az4") == 1, "once for the plan, not once per role"
    assert re.search(r"us-east-1</span><br><span[^>]*>zone use1-az4<", html)
