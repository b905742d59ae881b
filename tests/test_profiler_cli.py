"""``d2c profile``, ``profile import``, ``profile show`` and ``predict`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.profiler import write_app

GOOD_CSV = """scale,workers,wall_s,instance_type,count,peak_rss_mb,repeat
0.1,1,10.4,,,40,1
0.1,2,5.6,,,40,1
0.2,1,20.3,,,70,1
0.2,2,10.5,,,70,1
0.4,2,20.8,,,130,1
0.4,1,40.1,,,130,1
1.0,4,60.0,c5.xlarge,2,310,1
"""


def d2c(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_import_fits_desktop_and_cloud_runs_then_show_and_predict(tmp_path):
    (tmp_path / "runs.csv").write_text(GOOD_CSV)
    # The desktop rows were measured on a machine scoring 1.4 c5 cores, not on this one.
    imported = d2c("profile", "import", "runs.csv", "--host-speed", "1.4", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 7 runs" in imported.stdout and "a new profile" in imported.stdout
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["version"] == 3 and len(profile["runs"]) == 7
    cloud = profile["runs"][-1]
    speed = profile["host"]["speed"]
    assert (speed, profile["host"]["speed_basis"]) == (1.4, "given")
    # One c5.xlarge holds 8 GiB: the run records its host's memory for the memory regime.
    assert cloud["host_memory_mb"] == pytest.approx(8 * 1024)
    # 2 x c5.xlarge = 8 vCPUs, 4 workers started, each an x86 hyper-thread (0.6 core) of a c5 core.
    assert cloud["workers"] == pytest.approx(4 * 0.6 / speed, rel=1e-3)
    assert (cloud["instance_type"], cloud["count"], cloud["source"]) == ("c5.xlarge", 2, "import")

    shown = d2c("profile", "show", "--plot", "fit.png", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "CV error" in shown.stdout and "chosen" in shown.stdout and "c5.xlarge" in shown.stdout
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    predicted = d2c("predict", "--type", "c5.xlarge", "--count", "8", "--scale", "1.0", "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["effective_workers"] == pytest.approx(8 * 4 * 0.6 / speed, rel=1e-3)
    assert 0 < answer["runtime_s"]["p50"] <= answer["runtime_s"]["p90"]
    # About 100 s of one-worker work at scale 1 spread over ~19 workers.
    assert 3 < answer["runtime_s"]["p50"] < 15
    assert answer["memory_mb"]["per_worker"] == pytest.approx(310, rel=0.15)
    assert answer["memory_mb"]["per_host"] >= 4 * answer["memory_mb"]["per_worker"]
    assert "hyper-thread" in answer["assumptions"] and answer["profile"].startswith("sha256:")
    # Said out loud: 8 instances are far more workers than any measured run had.
    extrapolation = answer["extrapolation"]
    assert extrapolation["beyond"] and extrapolation["workers_factor"] > 5
    assert f"{answer['effective_workers']:.3g} effective workers" in extrapolation["text"] and "the most measured" in extrapolation["text"]
    assert answer["speed_basis"] == "c5: family table (c5)"
    human = d2c("predict", "--type", "c5.xlarge", "--count", "8", cwd=tmp_path)
    assert human.returncode == 0 and "p90" in human.stdout and "assumes" in human.stdout
    assert "extrapolates" in human.stdout and "the most measured" in human.stdout


def test_a_profile_whose_form_misses_more_further_out_says_so_and_widens_p90(tmp_path):
    # Time grows as scale^1.3, which no model with three measured scales can follow.
    rows = ["scale,workers,wall_s"]
    for scale in (1, 2, 4):
        for workers in (1, 2, 4):
            for jitter in (0.98, 1.02):
                rows.append(f"{scale},{workers},{(1 + 10 * scale**1.3 / workers) * jitter:.4f}")
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n")
    assert d2c("profile", "import", "runs.csv", "--host-speed", "1", cwd=tmp_path).returncode == 0
    shown = " ".join(d2c("profile", "show", cwd=tmp_path).stdout.split())
    assert "misses more the further it extrapolates" in shown and "more per doubling of the scale" in shown
    at = {}
    for scale in ("4", "32"):
        result = d2c("predict", "--type", "c5.large", "--count", "1", "--scale", scale, "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        at[scale] = json.loads(result.stdout)
    assert at["4"]["misfit"] is None
    assert "per doubling of the scale" in at["32"]["misfit"]
    width = {k: v["runtime_s"]["p90"] / v["runtime_s"]["p50"] for k, v in at.items()}
    # The truth at 32 lies (32/4)^0.3 = 1.87x above the measured growth; p90 reaches toward it.
    assert width["32"] > 1.3 * width["4"]
    human = d2c("predict", "--type", "c5.large", "--count", "1", "--scale", "32", cwd=tmp_path)
    assert "misses more the further it extrapolates" in " ".join(human.stdout.split())


def test_import_into_an_existing_profile_adds_to_its_runs(tmp_path):
    (tmp_path / "runs.csv").write_text(GOOD_CSV)
    assert d2c("profile", "import", "runs.csv", cwd=tmp_path).returncode == 0
    first = json.loads((tmp_path / "profile.json").read_text())
    (tmp_path / "more.csv").write_text("scale,workers,wall_s\n0.8,2,41.0\n0.8,1,80.5\n")
    again = d2c("profile", "import", "more.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    second = json.loads((tmp_path / "profile.json").read_text())
    assert len(second["runs"]) == 9 and second["host"] == first["host"]
    assert second["runs"][:7] == first["runs"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("scale,wall_s\n0.1,1\n", "missing column(s) workers"),
        ("scale,workers,wall_s\n0.1,1,1\n0.2,2,-3\n", "line 3: wall_s = -3 must be positive"),
        ("scale,workers,wall_s\n0.1,1,nan\n0.2,2,1\n", "line 2: wall_s is nan"),
        ("scale,workers,wall_s\n0.1,2,1\n0.2,2,2\n0.4,2,4\n", "every run has 2 effective workers"),
        ("scale,workers,wall_s,instance_type\n0.1,1,1,\n0.2,2,1,zz9.huge\n", "instance_type 'zz9.huge' is not in the instance catalog"),
    ],
)
def test_bad_runs_csv_is_one_line_exit_2_and_nothing_written(tmp_path, content, expected):
    (tmp_path / "runs.csv").write_text(content)
    result = d2c("profile", "import", "runs.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in error_line(result) and "runs.csv" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]


def test_predict_without_profile_or_with_unknown_type(tmp_path):
    missing = d2c("predict", "--type", "c5.xlarge", cwd=tmp_path)
    assert missing.returncode == 2 and "run 'd2c profile' first" in error_line(missing)
    (tmp_path / "runs.csv").write_text(GOOD_CSV)
    assert d2c("profile", "import", "runs.csv", cwd=tmp_path).returncode == 0
    unknown = d2c("predict", "--type", "c5.gigantic", cwd=tmp_path)
    assert unknown.returncode == 2 and "--type: 'c5.gigantic' is not in the instance catalog" in error_line(unknown)


def test_profile_stops_at_an_app_failure_and_shows_its_stderr(tmp_path):
    command = "python3 -c \"import sys,time; time.sleep({scale}/{workers}); sys.exit('input file corrupt at block 7') if {scale} > 0.15 else None\""
    # A full run long enough (scale 1000) that the 5 % share never ends the session first.
    write_app(tmp_path, command, scales=[0.05, 0.1, 0.2], workers=[1, 2], full_scale=1000.0, repeats=1)
    result = d2c("profile", "--max-time", "60s", cwd=tmp_path)
    assert result.returncode == 1
    line = error_line(result)
    assert "exited with status 1 at scale 0.2" in line and "input file corrupt at block 7" in line
    assert not (tmp_path / "profile.json").exists()


def test_an_app_that_never_finishes_is_killed_at_the_box_and_kept_as_partial(tmp_path):
    command = "python3 -c \"import time; time.sleep(1000 if {scale} > 0.25 else {scale}/{workers})\""
    write_app(tmp_path, command, scales=[0.05, 0.1, 0.2, 0.4], workers=[1, 2], full_scale=1000.0, repeats=1)
    # 8 s leaves room for the runs below scale 0.4 on a busy machine (each starts a Python); the
    # full run (scale 1000, about 500 s) is long enough that its 5 % share does not end it first.
    result = d2c("profile", "--max-time", "8s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = json.loads((tmp_path / "profile.json").read_text())["runs"]
    partial = [r for r in runs if r["status"] == "partial"]
    assert len(partial) == 1 and partial[0]["scale"] == 0.4
    assert len(runs) >= 4 and "partial" in result.stdout


def test_too_short_a_box_says_which_points_to_add(tmp_path):
    write_app(tmp_path, "sleep 30 # {scale} {workers}", scales=[1, 2], workers=[1, 2], full_scale=4, repeats=1)
    result = d2c("profile", "--max-time", "2s", cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "too few points to fit" in line and "was still running" in line and "raise --max-time" in line
    assert not (tmp_path / "profile.json").exists()


def test_bad_max_time_and_missing_profile_section(tmp_path):
    write_app(tmp_path, "true {scale} {workers}", scales=[1, 2], workers=[1, 2], full_scale=4)
    bad = d2c("profile", "--max-time", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "--max-time" in error_line(bad)
    (tmp_path / "d2c.yaml").write_text("name: app\nroles:\n  - {name: master, image: ., command: ./run}\n")
    none = d2c("profile", cwd=tmp_path)
    assert none.returncode == 2 and "profile: missing" in error_line(none)
