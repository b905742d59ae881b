"""What a researcher sees while a run goes and after: the live line, ``d2c status``, ``--detach``.

The live display is driven through a real terminal: tmux at 80x24, read back with capture-pane.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from d2c.cli.run_display import RunDisplay, RunTargets, final_line, money, status_line
from executor.journal import open_journal
from tests.fixtures.executor import write_plans

REPO = Path(__file__).resolve().parents[1]
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
LIVE = re.compile(r"^running \d:\d\d:\d\d · ")


def d2c(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# -- the status line on its own --------------------------------------------------------------


TARGETS = RunTargets(started_at=1000.0, p50_s=300.0, p90_s=450.0, deadline_at=1000.0 + 1800, budget_usd=5.0, stop_usd=4.98, simulated=True)


@pytest.mark.parametrize("width", [80, 100, 160])
def test_status_line_keeps_eta_spend_and_budget_whole_at_any_width(width):
    line = status_line("running", 1000.0 + 125, TARGETS, 0.0123, width)
    assert len(line) <= width and "…" not in line
    assert line.startswith("running 0:02:05 · ETA 0:02:55")
    assert "$0.0123" in line and "$5.00" in line and "deadline" in line and "$4.98" in line


def test_status_line_says_all_of_it_when_there_is_room():
    line = status_line("running", 1000.0 + 125, TARGETS, 0.0123, 200)
    assert line == ("running 0:02:05 · ETA 0:02:55 (p90 0:05:25) · spent $0.0123 of $5.00 (simulated), watchdog stops at $4.98"
                    " · deadline in 0:27:55")


def test_status_line_past_p50_and_past_p90():
    assert "ETA 0:01:10 (past p50, to p90)" in status_line("running", 1000.0 + 380, TARGETS, 1.0, 200)
    assert "ETA passed: 0:00:50 past p90" in status_line("running", 1000.0 + 500, TARGETS, 1.0, 200)
    assert status_line("uploading", 1000.0 + 5, TARGETS, None, 200).startswith("uploading 0:00:05 · ETA 0:04:55 (p90 0:07:25) · budget $5.00")


def test_money_keeps_fractions_of_a_cent_and_round_budgets_short():
    assert [money(x) for x in (0.0017, 0.5, 4.98, 12.345, 2500)] == ["$0.0017", "$0.50", "$4.98", "$12.35", "$2,500"]
    assert [money(x, down=True) for x in (4.995, 0.49999, 0.12345, 1234.9)] == ["$4.99", "$0.4999", "$0.1234", "$1,234"]


def test_transfer_rows_go_when_done_even_when_a_late_stream_reports(tmp_path):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80, color_system=None)
    display = RunDisplay(TARGETS, console=console, clock=lambda: 1010.0)
    with display:
        display.progress("uploading", 9_900, 11_500)
        assert len(display.board.tasks) == 1
        display.progress("uploading", 11_500, 11_500)
        display.progress("uploading", 9_900, 11_500)  # a stream that finished first reports last
        assert display.board.tasks == [], "no stale upload row"
        display.progress("uploading", 100, 2_000)  # a new upload (a replacement host) gets a row again
        assert len(display.board.tasks) == 1
        display.live(5.0, 0.0017, 4.99)
    assert final_line(1010.0, TARGETS, 0.0017) in screen.getvalue()


def test_the_status_line_shows_the_stop_point_the_watchdog_keeps_now():
    display = RunDisplay(TARGETS, console=Console(file=io.StringIO(), width=200, color_system=None), clock=lambda: 1010.0)
    display.live(10.0, 0.25, 3.21)
    assert "spent $0.25 of $5.00 (simulated), watchdog stops at $3.21" in display.line(width=200)


# -- through a terminal ----------------------------------------------------------------------


class Tmux:
    """One tmux server of its own (``-L``) with one 80x24 session running a command; ``screen()`` is what the person sees."""

    def __init__(self, name: str, command: str, cwd: Path, env: dict[str, str]):
        self.name = name
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        script = f"cd {shlex.quote(str(cwd))} && env {exports} {command}; echo EXIT=$?; sleep 300"
        self.tmux("kill-server", check=False)
        self.tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", script)

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, check=check)
        return done.stdout

    def screen(self) -> list[str]:
        return [line.rstrip() for line in self.tmux("capture-pane", "-p", "-t", self.name).splitlines()]

    def history(self) -> list[str]:
        return [line.rstrip() for line in self.tmux("capture-pane", "-p", "-S", "-200", "-t", self.name).splitlines()]

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait_for(self, predicate, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if predicate(lines):
                return lines
            time.sleep(0.25)
        raise AssertionError("the screen never showed it:\n" + "\n".join(self.screen()))

    def close(self) -> None:
        self.tmux("kill-server", check=False)


def slow_montecarlo(tmp_path: Path, scale: str) -> Path:
    project = tmp_path / "montecarlo"
    shutil.copytree(REPO / "examples" / "montecarlo", project)
    text = (project / "d2c.yaml").read_text()
    (project / "d2c.yaml").write_text(text.replace("--scale 1.0 ", f"--scale {scale} ", 1))
    write_plans(project / "plans.json", "montecarlo", [("master", 1, 2)], deadline_s=1800, time_p50=300.0)
    return project


def terminal_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO), "D2C_HOME": os.environ["D2C_HOME"], "TERM": "xterm-256color", "LANG": "C.UTF-8"}


@needs_tmux
def test_run_at_80_columns_shows_eta_spend_and_budget_and_leaves_no_rows(tmp_path):
    project = slow_montecarlo(tmp_path, "0.2")
    tmux = Tmux("d2c-run-80", f"{shlex.quote(sys.executable)} -m d2c run --provider local --poll 0.3", project, terminal_env())
    try:
        lines = tmux.wait_for(lambda ls: any(LIVE.match(line) for line in ls))
        live = next(line for line in lines if LIVE.match(line))
        assert len(live) <= 80 and "…" not in live
        assert re.search(r" · ETA 0:0[45]:\d\d · ", live), live
        assert re.search(r"\$0\.\d{4}/\$5\.00 stop \$4\.99", live), live
        assert "deadline 0:2" in live
        assert not any("…" in line for line in lines), "no name or number is cut short"
        end = tmux.wait_for(lambda ls: any(line.startswith("EXIT=") for line in ls), timeout=180)
        assert "EXIT=0" in end
        seen = tmux.history()
        assert not any(LIVE.match(line) for line in seen), "the live line goes when the run ends"
        assert not any(line.lstrip().startswith(("uploading", "launching")) for line in seen), "no stale transfer rows"
        assert any(line.startswith("took 0:00:") and "(p50 0:05:00, p90 0:07:30)" in line for line in seen)
    finally:
        tmux.close()


@needs_tmux
def test_ctrl_c_asks_then_stops_with_nothing_stale_on_screen(tmp_path):
    project = slow_montecarlo(tmp_path, "1.0")
    tmux = Tmux("d2c-run-ctrl-c", f"{shlex.quote(sys.executable)} -m d2c run --provider local --poll 0.3", project, terminal_env())
    try:
        tmux.wait_for(lambda ls: any(LIVE.match(line) for line in ls))
        tmux.keys("C-c")
        asked = tmux.wait_for(lambda ls: any("(detach" in line for line in ls))
        assert not any(LIVE.match(line) for line in asked), "the live line is gone while the question is asked"
        tmux.keys("stop", "Enter")
        end = tmux.wait_for(lambda ls: any(line.startswith("EXIT=") for line in ls), timeout=120)
        assert "EXIT=1" in end
        seen = tmux.history()
        assert any("interrupted by the user (Ctrl-C)" in line for line in seen)
        assert not any(LIVE.match(line) for line in seen)
    finally:
        tmux.close()
    [run] = open_journal().runs()
    assert run.outcome == "stopped" and not open_journal().resources(run.run_id, live_only=True)


@needs_tmux
def test_profile_at_80_columns_counts_runs_against_the_time_box(tmp_path):
    project = slow_montecarlo(tmp_path, "0.01")
    text = (project / "d2c.yaml").read_text()
    (project / "d2c.yaml").write_text(text.replace("scales: [0.02, 0.05, 0.1]", "scales: [0.002, 0.004, 0.008]"))
    tmux = Tmux("d2c-profile-80", f"{shlex.quote(sys.executable)} -m d2c profile --max-time 40s", project, terminal_env())
    try:
        lines = tmux.wait_for(lambda ls: any(line.startswith("  now scale ") for line in ls))
        bar = next(line for line in lines if line.startswith("profiling ━"))
        assert re.search(r"━{20} +\d+/12 0:00:\d\d/0:00:40$", bar.replace("╸", "━").replace("╺", "━")), bar
        assert not any("…" in line for line in lines)
        end = tmux.wait_for(lambda ls: any(line.startswith("EXIT=") for line in ls), timeout=120)
        assert "EXIT=0" in end, "\n".join(tmux.history())
        seen = tmux.history()
        assert any(line.startswith("profiled ") for line in seen)
        measured = len(json.loads((project / "profile.json").read_text())["runs"])
        assert (measured == 12) != any(line.startswith(f"skipped {12 - measured} of 12 planned runs: ") for line in seen), "skipped runs are named"
    finally:
        tmux.close()


def test_skipped_runs_are_named_by_point():
    from d2c.cli.profile_progress import skipped_points
    from d2c.descriptor import ProfileSpec
    from profiler.runs import RunRecord

    spec = ProfileSpec(command="app {scale} {workers}", scales=(0.1, 0.2, 0.4), workers=(1, 2, 4), full_scale=1.0, repeats=2)
    ran = [RunRecord(scale=s, workers=w, wall_s=1.0, repeat=r) for s, w, r in
           [(0.1, 4, 1), (0.1, 4, 2), (0.1, 1, 1), (0.1, 2, 1), (0.1, 2, 2), (0.2, 4, 1), (0.2, 2, 1), (0.2, 2, 2)]]
    assert skipped_points(spec, ran) == (
        "10 of 18 planned runs: a repeat of scale 0.1 with 1 worker; scale 0.2 with 1 worker; "
        "a repeat of scale 0.2 with 4 workers; scale 0.4 with 1, 2 and 4 workers"
    )
    everything = [RunRecord(scale=s, workers=w, repeat=r, wall_s=1.0) for s in spec.scales for w in spec.workers for r in (1, 2)]
    assert skipped_points(spec, everything) == ""


# -- status ----------------------------------------------------------------------------------


def test_status_json_and_table_after_a_rehearsal(montecarlo_project):
    write_plans(montecarlo_project / "plans.json", "montecarlo", [("master", 1, 2)], budget_usd=3.0, deadline_s=3600)
    rows = ["scale,workers,wall_s"] + [f"{s},{w},{0.2 + 40 * s / w:.3f}" for s in (0.02, 0.05, 0.1) for w in (1, 2)]
    (montecarlo_project / "runs.csv").write_text("\n".join(rows) + "\n")
    assert d2c("profile", "import", "runs.csv", cwd=montecarlo_project).returncode == 0
    done = d2c("run", "--provider", "local", "--poll", "0.2", cwd=montecarlo_project)
    assert done.returncode == 0, done.stderr
    from profiler.profile_file import load_profile

    here = load_profile(montecarlo_project / "profile.json").predictor.runtime(0.01, 2)
    compared = next(line for line in done.stdout.splitlines() if line.startswith("on this machine the app took "))
    assert f"the profile predicts p50 {here.p50:.1f} s, p90 {here.p90:.1f} s here at scale 0.01 with 2 workers" in compared
    shown = json.loads(d2c("status", "--json", cwd=montecarlo_project).stdout)
    assert shown["version"] == 1
    [row] = shown["runs"]
    assert set(row) >= {"run_id", "started_at", "finished_at", "elapsed_s", "mix", "region", "state", "spent_usd", "budget_usd", "outcome", "simulated"}
    assert row["mix"] == [{"role": "master", "instance_type": "t3.micro", "market": "on-demand", "count": 1}]
    assert row["state"] == "finished" and row["outcome"] == "succeeded" and row["simulated"] is True
    assert row["budget_usd"] == 3.0 and row["deadline_s"] == 3600
    report = json.loads(d2c("report", row["run_id"], "--json", cwd=montecarlo_project).stdout)
    assert row["spent_usd"] == pytest.approx(report["cost_usd"], abs=1e-6)
    assert 0 < row["elapsed_s"] < 120 and row["started_at"].endswith("+00:00")

    env = {**os.environ, "COLUMNS": "80"}
    table = d2c("status", cwd=montecarlo_project, env=env).stdout
    assert row["run_id"] in table and "…" not in table
    assert "1x t3.micro in us-east-1" in table and "succeeded" in table and "/$3.00" in table
    assert max(len(line) for line in table.splitlines()) <= 80

    spend = json.loads(d2c("status", "--spend", "--json", cwd=montecarlo_project).stdout)
    assert spend["version"] == 1 and spend["month"] == time.strftime("%Y-%m", time.gmtime())
    assert spend["this_month"] == {"usd": 0.0, "runs": 0}, "a rehearsal spends nothing on AWS"
    assert spend["rehearsals"]["all_time"]["runs"] == 1
    assert spend["rehearsals"]["this_month"]["usd"] == pytest.approx(report["cost_usd"], abs=1e-6)
    words = d2c("status", "--spend", cwd=montecarlo_project).stdout
    assert f"spent this month ({spend['month']}, UTC): $0.00 over 0 runs" in words


def test_detach_prints_the_run_id_and_the_run_goes_on(tmp_path):
    project = slow_montecarlo(tmp_path, "0.1")
    started = time.monotonic()
    done = d2c("run", "--provider", "local", "--poll", "0.3", "--detach", cwd=project)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(r"montecarlo-\d{8}-\d{6}-[0-9a-f]{4}", run_id)
    assert f"d2c logs {run_id} -f" in done.stderr
    assert time.monotonic() - started < 30
    followed = d2c("logs", run_id, "-f", cwd=project, timeout=180)
    assert followed.returncode == 0 and "asian call" in followed.stdout
    deadline = time.monotonic() + 60
    while open_journal().run(run_id).active and time.monotonic() < deadline:
        time.sleep(0.3)
    record = open_journal().run(run_id)
    assert record.outcome == "succeeded"
    assert (project / "results" / "result.json").is_file()
