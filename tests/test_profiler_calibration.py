"""Does p90 mean p90? Simulated future runs of apps with known coefficients and known noise.

For each model family: 1,000 simulations, each a fresh set of measured runs (scales 1, 2, 4 with
1, 2, 4 and 8 workers, two repeats, log-normal noise of 5 %), a fit restricted to that family,
and one future run at each target, 2x and 10x beyond the measured range in scale and in workers.
The share of future runs at or under p90 is the coverage. Fixed seeds, so the figures are the
same on every machine.
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
    for name in ("scale 2x", "scale 10x"):
        assert 0.88 <= covered[name] <= 0.92, (name, covered, width)
        assert width[name] < 1.15, "an interval that covers by being huge is no use"
    # In workers, Ernest's and USL's coordination terms are barely visible within 8 workers:
    # their p90 10x beyond is conservative (wider than the noise needs), never short.
    for name in ("workers 2x", "workers 10x"):
        assert covered[name] >= (0.88 if family == "amdahl" and name == "workers 10x" else 0.85), (name, covered, width)
    assert width["workers 10x"] >= width["workers 2x"] >= width["scale 2x"] * 0.99, "the interval grows with the distance"
