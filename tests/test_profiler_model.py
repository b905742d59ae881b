"""The scaling model: recovering known coefficients, choosing the family by cross-validation,
prediction intervals, the memory regime, and the profile file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from d2c.errors import UsageError
from profiler.calibration import append_calibration
from profiler.design import ExperimentDesign
from profiler.host_facts import HostFacts, parse_facts
from profiler.model import Observation, fit_model, spill_factor
from profiler.profile_file import build_profile, load_profile, save_profile
from profiler.runs import RunRecord

SCALES = (0.01, 0.02, 0.05, 0.1)
WORKERS = (1, 2, 4, 8)


def synthetic(truth, *, noise=0.0, seed=1, scales=SCALES, workers=WORKERS, repeats=2):
    rng = np.random.default_rng(seed)
    return [
        Observation(s, w, truth(s, w) * (1 + rng.normal(0, noise)))
        for s in scales
        for w in workers
        for _ in range(repeats)
    ]


def test_amdahl_coefficients_are_recovered_exactly_without_noise():
    model = fit_model(synthetic(lambda s, w: 0.8 + 120 * s / w), full_scale=1.0)
    assert model.family == "amdahl" and model.scale_form == "s"
    a, b = model.coefficients
    assert a == pytest.approx(0.8, rel=1e-6) and b == pytest.approx(120, rel=1e-6)
    assert model.runtime(1.0, 32).p50 == pytest.approx(0.8 + 120 / 32, rel=1e-6)


def test_ernest_coefficients_are_recovered_under_noise():
    truth = (0.5, 80.0, 0.3, 0.05)
    model = fit_model(synthetic(lambda s, w: truth[0] + truth[1] * s / w + truth[2] * math.log(w) + truth[3] * w, noise=0.01), full_scale=1.0)
    assert model.family == "ernest"
    for got, want in zip(model.coefficients, truth):
        assert got == pytest.approx(want, rel=0.15, abs=0.02)
    # A fleet worth less than one desktop core is slower than one core, never faster.
    assert model.runtime(1.0, 0.5).p50 > model.runtime(1.0, 1.0).p50 > model.runtime(1.0, 4.0).p50


@pytest.mark.parametrize(
    ("family", "scale_form", "truth"),
    [
        ("amdahl", "s", lambda s, w: 1.0 + 60 * s / w),
        ("ernest", "s", lambda s, w: 0.2 + 60 * s / w + 0.6 * math.log(w) + 0.1 * w),
        # USL with coherency: past a point, more workers make it slower.
        ("usl", "s", lambda s, w: 0.2 + 60 * s * (1 + 0.05 * (w - 1) + 0.02 * w * (w - 1)) / w),
        ("amdahl", "slogs", lambda s, w: 0.3 + 40 * s * (1 + math.log(s / 0.01)) / w),
        ("ernest", "slogs", lambda s, w: 0.3 + 40 * s * math.log(s / 0.001) / w + 0.5 * math.log(w)),
    ],
)
def test_cross_validation_picks_the_family_that_generated_the_data(family, scale_form, truth):
    model = fit_model(synthetic(truth, noise=0.01, seed=3), full_scale=1.0)
    assert (model.family, model.scale_form) == (family, scale_form)
    chosen = next(c for c in model.candidates if c.name == model.name)
    assert chosen.cv_error < 0.03


def test_extrapolation_tenfold_stays_within_five_percent_on_clean_data():
    truth = lambda s, w: 0.4 + 90 * s / w + 0.2 * math.log(w)  # noqa: E731
    model = fit_model(synthetic(truth, noise=0.01, seed=5), full_scale=1.0)
    for w in (1, 8, 64):
        assert model.runtime(1.0, w).p50 == pytest.approx(truth(1.0, w), rel=0.05)


def test_bootstrap_interval_is_ordered_deterministic_and_widens_with_noise():
    truth = lambda s, w: 0.5 + 50 * s / w  # noqa: E731
    quiet = fit_model(synthetic(truth, noise=0.01), full_scale=1.0)
    again = fit_model(synthetic(truth, noise=0.01), full_scale=1.0)
    noisy = fit_model(synthetic(truth, noise=0.10), full_scale=1.0)
    q, n = quiet.runtime(1.0, 16), noisy.runtime(1.0, 16)
    assert q == again.runtime(1.0, 16)
    assert q.p50 <= q.p90 and n.p50 <= n.p90
    assert (n.p90 - n.p50) / n.p50 > 2 * (q.p90 - q.p50) / q.p50
    assert q.p50 == pytest.approx(truth(1.0, 16), rel=0.03)


def test_memory_model_and_spilling_regime():
    observations = [
        Observation(s, w, 1 + 10 * s / w, worker_rss_mb=20 + 300 * s, master_rss_mb=50 + 10 * s)
        for s in SCALES
        for w in (1, 2, 4)
    ]
    model = fit_model(observations, full_scale=10.0)
    memory = model.memory(10.0, 4)
    assert memory.per_worker_mb == pytest.approx(3020, rel=0.01)
    assert memory.master_mb == pytest.approx(150, rel=0.01)
    fits = model.runtime(10.0, 8, host_memory_mb=64_000, workers_per_host=8)
    tight = model.runtime(10.0, 8, host_memory_mb=16_000, workers_per_host=8)
    assert fits == model.runtime(10.0, 8)
    assert tight.p50 > 2.5 * fits.p50
    # Doubling a fleet whose data does not fit, to one where it does: more than a 2x speed-up.
    small_fleet = model.runtime(10.0, 4, host_memory_mb=8_000, workers_per_host=4)
    big_fleet = model.runtime(10.0, 8, host_memory_mb=8_000, workers_per_host=2)
    assert small_fleet.p50 / big_fleet.p50 > 2.0
    assert spill_factor(100, 1000) == 1.0 and spill_factor(2000, 1000) == pytest.approx(1 + 4 * 1100 / 2000)


def test_memory_bound_profiling_runs_are_fitted_in_the_in_memory_regime():
    clean = lambda s, w: 1 + 10 * s / w  # noqa: E731
    observations = []
    for s in (1.0, 2.0, 4.0):
        for w in (1, 2, 4):
            working_set = (100 + 1000 * s) * w
            slow = spill_factor(working_set, 8000)
            observations.append(Observation(s, w, clean(s, w) * slow, worker_rss_mb=100 + 1000 * s, host_memory_mb=8000))
    model = fit_model(observations, full_scale=8.0)
    assert model.point(8.0, 16) == pytest.approx(clean(8.0, 16), rel=0.02)


def test_too_few_points_say_which_runs_to_add():
    one_worker = [Observation(s, 2, 1 + s) for s in (1, 2, 4)]
    with pytest.raises(UsageError, match=r"every run used 2 workers.*add runs with 4 workers"):
        fit_model(one_worker, 1.0)
    one_scale = [Observation(1.0, w, 1 + 1 / w) for w in (1, 2)]
    with pytest.raises(UsageError, match=r"every run used scale 1 .*add runs at scale 2"):
        fit_model(one_scale, 1.0)
    two_points = [Observation(1.0, 1, 2.0), Observation(2.0, 2, 2.0)]
    with pytest.raises(UsageError, match=r"add scale 1 with 2 workers"):
        fit_model(two_points, 1.0)


HOST = HostFacts(name="local", cpu_model="Test CPU", physical_cores=2, logical_cores=4, memory_mb=8000.0, speed=1.2, speed_loops_per_s=1.8e7, python="3.11")


def _runs():
    return [RunRecord(scale=s, workers=float(w), wall_s=0.5 + 20 * s / w, peak_rss_mb=30 + 100 * s) for s in (0.05, 0.1, 0.2) for w in (1, 2)]


def test_profile_round_trip_keeps_predictions_and_digest(tmp_path):
    profile = build_profile("app", 1.0, HOST, _runs() + [RunRecord(scale=0.4, workers=2.0, wall_s=3.0, status="partial", exit_status=None)])
    path = tmp_path / "profile.json"
    save_profile(path, profile)
    loaded = load_profile(path)
    assert loaded.digest == profile.digest and loaded.digest.startswith("sha256:")
    assert json.loads(path.read_text())["version"] == 3
    assert loaded.host.speed == 1.2 and loaded.full_scale == 1.0
    assert loaded.predictor.runtime(1.0, 8) == profile.predictor.runtime(1.0, 8)
    assert loaded.predictor.memory(1.0, 8) == profile.predictor.memory(1.0, 8)
    assert [r.status for r in loaded.runs].count("partial") == 1


@pytest.mark.parametrize("content", [None, "{not json", '{"version": 99}', '{"version": 1, "app": "x"}'])
def test_missing_or_invalid_profile_is_a_usage_error(tmp_path, content):
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=r"profile\.json.*run 'd2c profile' first"):
        load_profile(path)


def test_calibration_point_is_appended_and_the_model_refitted(tmp_path):
    path = tmp_path / "profile.json"
    save_profile(path, build_profile("app", 1.0, HOST, _runs()))
    before = load_profile(path)
    append_calibration(path, scale=1.0, workers=16.0, wall_s=5.0, instance_type="c5.xlarge", count=4, peak_rss_mb=120.0)
    after = load_profile(path)
    assert after.digest != before.digest
    added = after.runs[-1]
    assert (added.source, added.instance_type, added.count, added.workers, added.wall_s) == ("calibration", "c5.xlarge", 4, 16.0, 5.0)
    old, new = before.predictor.point(1.0, 16), after.predictor.point(1.0, 16)
    assert new - old > (5.0 - old) / 3, "the refit moves toward the cloud measurement"
    assert not list(tmp_path.glob(".*.tmp"))


def test_design_starts_cheap_climbs_scales_and_respects_the_box():
    design = ExperimentDesign([1, 2, 4], [1, 2], repeats=2)
    first = design.next_point([], 100)
    assert (first.scale, first.workers) == (1, 2)
    done = [RunRecord(scale=1, workers=2.0, wall_s=1.0)]
    second = design.next_point(done, 100)
    # A worker count not yet seen, at the cheap scale, beats repeating or climbing.
    assert (second.scale, second.workers, second.repeat) == (1, 1, 1)
    # Scale 4 is not tried before scale 2 has a run.
    done += [RunRecord(scale=1, workers=1.0, wall_s=2.0), RunRecord(scale=1, workers=2.0, wall_s=1.0, repeat=2), RunRecord(scale=1, workers=1.0, wall_s=2.0, repeat=2)]
    assert design.next_point(done, 100).scale == 2
    # Scale 2 with 2 workers is estimated at 2.0 s, so it needs 2.0 x 1.3 + 0.3 = 2.9 s of the box.
    assert design.estimate_cost(2, 2, done) == 2.0
    fits = design.next_point(done, 3.0)
    assert (fits.scale, fits.workers) == (2, 2)
    assert design.next_point(done, 2.8) is None
    assert design.next_point(done, 0.5) is None
    # A killed point is never retried.
    killed = done + [RunRecord(scale=2, workers=2.0, wall_s=9.0, status="partial", exit_status=None)]
    for _ in range(10):
        point = design.next_point(killed, 1000)
        if point is None:
            break
        assert (point.scale, point.workers) != (2, 2)
        killed.append(RunRecord(scale=point.scale, workers=float(point.workers), wall_s=1.0, repeat=point.repeat))
    assert len(killed) <= design.planned + 1


def test_host_facts_parse_and_convert_speed_to_the_c5_scale():
    text = "cpu_model=Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz\nlogical=4\nphysical=2\nmemory_kb=8000000\npage_size=4096\nclock_ticks=100\nloops_per_s=15000000\npython=3.11\n"
    facts = parse_facts(text, "vm")
    assert (facts.cpu_model, facts.logical_cores, facts.physical_cores) == ("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", 4, 2)
    assert facts.memory_mb == pytest.approx(7812.5)
    assert facts.speed == 1.0
    assert parse_facts("logical=2\n", "vm").speed == 1.0
