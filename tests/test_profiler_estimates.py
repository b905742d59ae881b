"""Estimates a researcher can bet on: single-scale histories, memory-bound runs, the host speed
score's spread, extrapolation said out loud, every family rated or left out, import bookkeeping
and profile.json checked field by field."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from d2c.errors import UsageError
from profiler.fleet import family_speed, instance_capacity
from profiler.host_facts import parse_facts
from profiler.model import Observation, fit_model

SIGMA = 0.03


def d2c(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def noisy(truth, points, seed=11, repeats=2, **extra):
    rng = np.random.default_rng(seed)
    return [Observation(s, w, truth(s, w) * math.exp(rng.normal(0, SIGMA)), **extra) for s, w in points for _ in range(repeats)]


# -- single-scale histories ---------------------------------------------------------------


def test_runs_at_one_scale_fit_and_predict_that_scale_only():
    truth = lambda s, w: 3.0 + 60.0 * s / w  # noqa: E731
    model = fit_model(noisy(truth, [(1.0, w) for w in (1, 2, 4)]), full_scale=1.0)
    assert model.measured.single_scale
    assert model.runtime(1.0, 8).p50 == pytest.approx(truth(1.0, 8), rel=0.08)
    with pytest.raises(UsageError, match=r"all used scale 1.*cannot predict scale 2"):
        model.runtime(2.0, 16)
    # Ernest needs four worker counts at one scale; with three it is not a candidate.
    assert "ernest" not in {c.family for c in model.candidates}
    four = fit_model(noisy(lambda s, w: 1.0 + 60 * s / w + 0.5 * math.log(w), [(1.0, w) for w in (1, 2, 4, 8)]), full_scale=1.0)
    assert "ernest" in {c.family for c in four.candidates}


def test_two_worker_counts_at_one_scale_say_what_to_add():
    with pytest.raises(UsageError, match=r"every run used scale 1 with 2 worker counts.*add runs with 4 workers at scale 1, or add runs at scale 2"):
        fit_model([Observation(1.0, w, 1 + 1 / w) for w in (1, 2)], 1.0)


def test_single_scale_import_predicts_its_scale_and_refuses_another(tmp_path):
    rows = ["scale,workers,wall_s,repeat"] + [f"1,{w},{2 + 80 / w:.3f},1" for w in (1, 2, 4, 8)] + [f"1,{w},{(2 + 80 / w) * 1.02:.3f},2" for w in (1, 2, 4, 8)]
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n")
    imported = d2c("profile", "import", "runs.csv", "--host-speed", "1.0", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    same = d2c("predict", "--type", "c5.4xlarge", "--scale", "1", "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    answer = json.loads(same.stdout)
    assert answer["runtime_s"]["p50"] == pytest.approx(2 + 80 / answer["effective_workers"], rel=0.1)
    other = d2c("predict", "--type", "c5.4xlarge", "--scale", "2", cwd=tmp_path)
    assert other.returncode == 2
    assert "all used scale 1" in error_line(other) and "cannot predict scale 2" in error_line(other)


# -- memory-bound runs --------------------------------------------------------------------


CLEAN = lambda s, w: 2.0 + 40.0 * s / w  # noqa: E731
GRID = [(s, w) for s in (1.0, 2.0, 4.0) for w in (1, 2, 4, 8)]


def _cliff(with_memory: bool) -> list[Observation]:
    """Cloud runs on 8 GB hosts, one worker per host, input 4000 MB per unit of scale: at 1 worker
    scales 2 and 4 do not fit and ran 5x slower."""
    rng = np.random.default_rng(5)
    runs = []
    for s, w in GRID:
        for _ in range(2):
            wall = CLEAN(s, w) * math.exp(rng.normal(0, SIGMA))
            spilled = 4000 * s / w > 0.9 * 8000
            extra = {"host_memory_mb": 8000.0, "hosts": int(w), "working_set_mb": 4000 * s / w} if with_memory else {}
            runs.append(Observation(s, w, wall * (5.0 if spilled else 1.0), **extra))
    return runs


@pytest.mark.parametrize("with_memory", [True, False], ids=["input_mb over memory", "super-linear only"])
def test_a_planted_memory_cliff_does_not_widen_p90_beyond_the_noise(with_memory):
    clean = fit_model([Observation(s, w, CLEAN(s, w) * math.exp(np.random.default_rng(5 + i).normal(0, SIGMA))) for i, (s, w) in enumerate(GRID) for _ in range(2)], full_scale=16.0)
    planted = fit_model(_cliff(with_memory), full_scale=16.0)
    assert planted.excluded, "the spilled runs are named, not fitted as noise"
    reason = "memory-bound" if with_memory else "super-linear"
    assert all(reason in line for line in planted.excluded)
    assert any("scale 4 with 1 and 2 workers" in line for line in planted.excluded) or any("scale 4 with 1 workers" in line for line in planted.excluded)
    assert len(set(planted.excluded)) == len(planted.excluded)
    for target in ((16.0, 8), (16.0, 32)):
        wide, narrow = planted.runtime(*target), clean.runtime(*target)
        assert wide.p50 == pytest.approx(CLEAN(*target), rel=0.1)
        # p90/p50 stays at the noise: within 3 points of the clean fit's, not +190 %.
        assert wide.p90 / wide.p50 < narrow.p90 / narrow.p50 + 0.03


def test_imported_runs_get_their_instance_memory_and_spilling_runs_are_noted(tmp_path):
    rows = ["scale,workers,wall_s,instance_type,count,input_mb"]
    for s in (1, 2, 4):
        for count in (1, 2, 4):
            spilled = 4000 * s / count > 0.9 * 8192
            rows.append(f"{s},{4 * count},{(2 + 40 * s / (count * 2.4)) * (5 if spilled else 1):.3f},c5.xlarge,{count},{4000 * s}")
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n")
    imported = d2c("profile", "import", "runs.csv", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "note: scale 4 with 2.4 workers: working set 16000 MB per host" in imported.stderr and "memory-bound" in imported.stderr
    profile = json.loads((tmp_path / "profile.json").read_text())
    # Cloud runs only: no desktop score was taken.
    assert (profile["host"]["speed"], profile["host"]["speed_basis"]) == (1.0, "cloud runs")
    assert all(r["host_memory_mb"] == pytest.approx(8192) for r in profile["runs"])
    shown = d2c("profile", "show", cwd=tmp_path)
    assert "left out:" in shown.stdout


# -- the host speed score -----------------------------------------------------------------


def test_speed_score_is_the_median_of_five_with_its_spread():
    disturbed = "loops_per_s=15000000,15300000,14700000,5000000,15100000\npython=3.11\n"
    facts = parse_facts(disturbed, "desktop")
    assert facts.speed == pytest.approx(15.0e6 / 15.0e6, rel=0.01), "one disturbed repeat does not move the median"
    assert 0.0 < facts.speed_spread < 0.05
    assert parse_facts("loops_per_s=15000000\n", "vm").speed_spread == 0.0


def test_speed_score_under_load_reports_its_spread_and_it_widens_p90(tmp_path):
    from d2c.transport.local import LocalHost
    from profiler.host_facts import measure_host

    hogs = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"]) for _ in range(3)]
    try:
        loaded = measure_host(LocalHost())
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert loaded.speed > 0 and loaded.speed_basis == "measured"
    assert 0.0 <= loaded.speed_spread < 2.0
    truth = lambda s, w: 1.0 + 50 * s / w  # noqa: E731
    points = [(s, w) for s in (0.1, 0.2, 0.4) for w in (1, 2, 4)]
    steady = fit_model(noisy(truth, points), 1.0)
    shaky = fit_model(noisy(truth, points), 1.0, speed_spread=max(loaded.speed_spread, 0.2))
    assert shaky.runtime(1.0, 16).p50 == steady.runtime(1.0, 16).p50
    assert shaky.runtime(1.0, 16).p90 > steady.runtime(1.0, 16).p90


# -- extrapolation said out loud ----------------------------------------------------------


def test_extrapolation_is_measured_against_the_runs():
    model = fit_model(noisy(lambda s, w: 0.2 + 10 * s / w, [(s, w) for s in (0.01, 0.02) for w in (1, 2)]), full_scale=1.0)
    far = model.extrapolation(1.0, 203.0)
    assert far.beyond and far.workers_factor == pytest.approx(101.5) and far.scale_factor == pytest.approx(50)
    assert far.text == "203 effective workers, 102x the most measured (2); scale 1, 50x the largest measured (0.02)"
    assert far.to_dict()["beyond"] is True
    inside = model.extrapolation(0.015, 1.5)
    assert not inside.beyond and inside.text.startswith("within the measured range")
    # Further out, a wider interval.
    near, away = model.runtime(0.04, 4), model.runtime(1.0, 203)
    assert away.p90 / away.p50 > near.p90 / near.p50


# -- every family rated or left out -------------------------------------------------------


def test_families_outside_the_table_get_a_speed_from_processor_facts_or_none():
    c4 = family_speed("c4")
    assert c4 is not None and c4.speed != 1.0 and "processor facts" in c4.basis
    assert family_speed("c5a").speed == pytest.approx(0.98 * 3.3 / 3.6, rel=1e-3)
    assert family_speed("a1").speed < 0.5, "first Graviton cores are far slower than a c5's"
    assert family_speed("c5d").basis == "family table (c5)"
    unknown = instance_capacity("zz9", "x86_64", 8)
    assert unknown.speed == 0.0 and not unknown.known and "no speed basis" in unknown.basis
    burstable = instance_capacity("t4g", "arm64", 2)
    assert burstable.speed < family_speed("t4g").speed, "a burstable family runs at its baseline, not its processor's speed"
    assert not instance_capacity("t1", "x86_64", 1).known
    assert instance_capacity("zz9", "x86_64", 8, assume_speed=1.0).known


def test_plans_leave_out_a_family_without_a_speed_basis():
    from datetime import datetime, timezone

    from planner.candidates import Limits, build_candidates
    from planner.catalog import Catalog, InstanceOffer

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    offers = tuple(InstanceOffer(t, "us-east-1", 8, 16.0, "x86_64", 0.3, fetched_at=now) for t in ("zz9.2xlarge", "c4.2xlarge", "c5.2xlarge"))
    chosen = {c.instance_type for c in build_candidates(Catalog(offers, "test", now), Limits(budget_usd=10, market="on-demand"))}
    assert chosen == {"c4.2xlarge", "c5.2xlarge"}


# -- import bookkeeping -------------------------------------------------------------------


def said(result: subprocess.CompletedProcess) -> str:
    """Standard output as one line (the console wraps at 80 columns)."""
    return " ".join(result.stdout.split())


def test_import_counts_skips_exact_duplicates_and_replaces_on_request(tmp_path):
    first = "scale,workers,wall_s\n1,1,10\n1,2,5.2\n2,1,20\n2,2,10.3\n"
    (tmp_path / "runs.csv").write_text(first)
    once = d2c("profile", "import", "runs.csv", "--host-speed", "1", cwd=tmp_path)
    assert once.returncode == 0 and "imported 4 runs" in said(once)
    twice = d2c("profile", "import", "runs.csv", cwd=tmp_path)
    assert twice.returncode == 0 and "nothing new: all 4 runs" in said(twice)
    (tmp_path / "more.csv").write_text(first + "4,2,20.5\n")
    more = d2c("profile", "import", "more.csv", cwd=tmp_path)
    assert "imported 1 runs from more.csv into profile.json (it held 4, 4 exact duplicates skipped); now 5 runs" in said(more)
    assert len(json.loads((tmp_path / "profile.json").read_text())["runs"]) == 5
    replaced = d2c("profile", "import", "runs.csv", "--replace", "--host-speed", "1", cwd=tmp_path)
    assert replaced.returncode == 0 and "now 4 runs" in said(replaced)
    clash = d2c("profile", "import", "more.csv", "--host-speed", "2", cwd=tmp_path)
    assert clash.returncode == 2 and "--replace" in error_line(clash)


# -- profile.json checked field by field --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("full_scale",), -1, "full_scale = -1"),
        (("host", "speed"), -2.0, "host.speed"),
        (("host", "logical_cores"), 0, "host.logical_cores"),
        (("runs", 0, "workers"), 0, "runs: workers"),
        (("model", "coefficients", 0), float("nan"), "model.coefficients"),
        (("model", "measured", "scales"), [2.0, 1.0], "model.measured.scales"),
        (("model", "spill", "slowdown"), 0.5, "model.spill"),
    ],
)
def test_out_of_range_profile_fields_are_refused_naming_the_field(tmp_path, path, value, named):
    (tmp_path / "runs.csv").write_text("scale,workers,wall_s\n1,1,10\n1,2,5.2\n2,1,20\n2,2,10.3\n")
    assert d2c("profile", "import", "runs.csv", "--host-speed", "1", cwd=tmp_path).returncode == 0
    data = json.loads((tmp_path / "profile.json").read_text())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "profile.json").write_text(json.dumps(data))
    result = d2c("predict", "--type", "c5.xlarge", cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert named in line and "profile.json" in line


# -- profiling that pays for itself -------------------------------------------------------


def test_the_next_point_is_the_one_that_narrows_the_full_scale_prediction_most_per_second():
    from profiler.design import ExperimentDesign
    from profiler.runs import RunRecord

    truth = lambda s, w: 0.5 + 4.0 * s / w  # noqa: E731
    done = [RunRecord(scale=s, workers=float(w), wall_s=truth(s, w) * (1.02 if r == 2 else 1.0), repeat=r) for s in (1, 2) for w in (1, 2) for r in (1, 2)]
    model = fit_model([r.observation(None) for r in done], full_scale=40.0)
    design = ExperimentDesign([1, 2, 4], [1, 2], repeats=3)
    narrowing = design.narrowing(model, done, (40.0, 2.0))
    # A run at scale 4 says more about scale 40 than another run at scale 1 does.
    assert narrowing(4, 2) > narrowing(2, 2) and narrowing(4, 2) > narrowing(1, 2)
    chosen = design.next_point(done, 1000, model, (40.0, 2.0))

    def per_second(s, w):
        return narrowing(s, w) / (design.estimate_cost(s, w, done) * 1.3 + 0.3)

    # Per second spent: the chosen point narrows at least as much as any other allowed one.
    assert all(per_second(chosen.scale, chosen.workers) >= per_second(s, w) - 1e-12 for s in (1, 2, 4) for w in (1, 2))
    # With little time left, the cheaper informative point wins or nothing is run.
    assert design.next_point(done, 0.1, model, (40.0, 2.0)) is None


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_profile_is_read_by_refitting_its_runs(tmp_path, version):
    """Version 1 had an in-sample bootstrap, version 2 a bootstrap of NNLS refits and no misfit
    term: both intervals were miscalibrated, so their models are refitted, never trusted."""
    from profiler.profile_file import load_profile

    (tmp_path / "runs.csv").write_text("scale,workers,wall_s\n1,1,10\n1,2,5.2\n2,1,20\n2,2,10.3\n")
    assert d2c("profile", "import", "runs.csv", "--host-speed", "1", cwd=tmp_path).returncode == 0
    current = load_profile(tmp_path / "profile.json")
    data = json.loads((tmp_path / "profile.json").read_text())
    data["version"] = version
    if version == 1:
        data["model"] = {"chosen": "amdahl (s)", "bootstrap": {"seed": 1, "coefficients": [[0.0, 1.0]], "noise": [1.0]}}
    else:
        del data["model"]["interval"]["misfit"]
        data["model"]["interval"]["bootstrap"] = [[0.0, 100.0]] * len(data["model"]["interval"]["noise"])
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_profile(tmp_path / "old.json")
    assert old.predictor.runtime(4.0, 8) == current.predictor.runtime(4.0, 8)
