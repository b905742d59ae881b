"""Does p90 mean p90? Simulated future runs of apps with known coefficients and known noise.

For each model family: 1,000 simulations, each a fresh set of measured runs (scales 1, 2, 4 with
1, 2, 4 and 8 workers, two repeats, log-normal noise of 5 %), a fit restricted to that family,
and one future run at each target, 2x and 10x beyond the measured range in scale and in workers.
The share of future runs at or under p90 is the coverage. Fixed seeds, so the figures are the
same on every machine. Before the bootstrap refitted unconstrained least squares instead of NNLS
(profiler.model, "Calibrated interval"), Ernest and USL covered 99-100 % at 10x in workers.

A misspecified form (the truth grows faster in scale than the model can) is the other half: the
misfit beyond the measured range widens p90 where the held-out runs beyond their folds say so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from profiler.model import Observation, fit_model

SIGMA = 0.05
SIMULATIONS = 1000
SCALES = (1.0, 2.0, 4.0)
WORKERS = (1, 2, 4, 8)
TRUTH = {
    "amdahl": lambda s, w: 2.0 + 30 * s / w,
    "ernest": lambda s, w: 1.0 + 30 * s / w + 0.8 * math.log(w) + 0.02 * w,
    "usl": lambda s, w: 1.0 + 30 * s * (1 + 0.03 * (w - 1) + 0.002 * w * (w - 1)) / w,
}
TARGETS = {"scale 2x": (8.0, 8), "scale 10x": (40.0, 8), "workers 2x": (4.0, 16), "workers 10x": (4.0, 80)}


def coverage(family: str) -> tuple[dict[str, float], dict[str, float]]:
    rng = np.random.default_rng(7)
    truth = TRUTH[family]
    hits = {name: 0 for name in TARGETS}
    widths: dict[str, list[float]] = {name: [] for name in TARGETS}
    for _ in range(SIMULATIONS):
        runs = [Observation(s, w, truth(s, w) * math.exp(rng.normal(0, SIGMA))) for s in SCALES for w in WORKERS for _ in range(2)]
        model = fit_model(runs, full_scale=40.0, families=(family,))
        for name, (scale, workers) in TARGETS.items():
            estimate = model.runtime(scale, workers)
            hits[name] += truth(scale, workers) * math.exp(rng.normal(0, SIGMA)) <= estimate.p90
            widths[name].append(estimate.p90 / estimate.p50)
    return {n: hits[n] / SIMULATIONS for n in TARGETS}, {n: float(np.median(widths[n])) for n in TARGETS}


@pytest.mark.parametrize("family", sorted(TRUTH))
def test_p90_covers_ninety_percent_of_future_runs(family):
    covered, width = coverage(family)
    # 1,000 simulations measure a coverage to within about 1 % (one standard error).
    for name in ("scale 2x", "scale 10x"):
        assert 0.88 <= covered[name] <= 0.93, (name, covered, width)
        assert width[name] < 1.15, "an interval that covers by being huge is no use"
    # In workers the figures are 88-95 %: Ernest's interval at 2x is held up by the floor of one
    # run's own noise where least squares would call the extrapolation surer than a repeat.
    for name in ("workers 2x", "workers 10x"):
        assert 0.86 <= covered[name] <= 0.96, (name, covered, width)
    assert width["workers 10x"] >= width["workers 2x"] >= width["scale 2x"] * 0.99, "the interval grows with the distance"


def test_p90_is_never_surer_than_a_repeat_of_a_measured_point():
    """With 5 % noise between repeats, one future run alone lies more than 3 % above the fit in
    about a quarter of runs: no p90 may be narrower than that, extrapolating or not (least
    squares alone gave 13 % of these Ernest histories a p90 within 3 % of p50 at 16 workers)."""
    rng = np.random.default_rng(11)
    truth = TRUTH["ernest"]
    for _ in range(100):
        runs = [Observation(s, w, truth(s, w) * math.exp(rng.normal(0, SIGMA))) for s in SCALES for w in WORKERS for _ in range(2)]
        model = fit_model(runs, full_scale=40.0, families=("ernest",))
        for scale, workers in TARGETS.values():
            estimate = model.runtime(scale, workers)
            assert estimate.p90 >= 1.03 * estimate.p50, (scale, workers, estimate)


def test_a_form_that_misses_growth_in_scale_widens_p90_beyond_the_measured_range():
    """Truth T = 1 + 30 s^1.15 / w, fitted as Amdahl with three scales (too few for s log s): at
    8x the largest scale the fit is short by about 30 %, and p90 must cover most future runs
    there; a truth of Amdahl's own form rarely gets the term (7 % of histories)."""
    rng = np.random.default_rng(3)
    hits, fired = 0, 0
    for _ in range(200):
        runs = [Observation(s, w, (1.0 + 30 * s**1.15 / w) * math.exp(rng.normal(0, SIGMA))) for s in SCALES for w in WORKERS for _ in range(2)]
        model = fit_model(runs, full_scale=32.0, families=("amdahl",))
        assert model.interval.misfit[0] > 0
        hits += (1.0 + 30 * 32.0**1.15 / 8) * math.exp(rng.normal(0, SIGMA)) <= model.runtime(32.0, 8).p90
        right_form = [Observation(s, w, (1.0 + 30 * s / w) * math.exp(rng.normal(0, SIGMA))) for s in SCALES for w in WORKERS for _ in range(2)]
        fired += fit_model(right_form, full_scale=32.0, families=("amdahl",)).interval.misfit[0] > 0
    assert hits / 200 >= 0.8
    assert fired / 200 <= 0.15
