"""The scaling model: runtime T(scale, workers) and peak memory, fitted to measured runs.

Runtime candidates are linear in their coefficients, so each is fitted by non-negative least
squares (``scipy.optimize.nnls``) on *relative* residuals (every row divided by its runtime), so a
0.5 s point counts as much as a 50 s one:

* ``amdahl``  T = a + b·s/w                         (serial part + perfectly parallel part)
* ``ernest``  T = a + b·s/w + c·log w + d·w         (Venkataraman et al., NSDI 2016)
* ``usl``     T = a + b·s/w + c·s(w-1)/w + d·s(w-1)  (Gunther's Universal Scalability Law:
  T = a + θ·s·(1 + α(w-1) + βw(w-1))/w, with c = θα contention and d = θβ coherency)

Each family is tried as it is (scale form ``s``) and with one more feature, ``s·ln(s/s_ref)/w``
(scale form ``s log s``; ``s_ref`` is the smallest scale measured, below which the term is 0):
work growing like n·log n in an unknown unit n ∝ s is b·s + e·s·ln(s/s_ref) for some b, e ≥ 0.
Six candidates in all.

The choice is made by cross-validation over *points* (all repeats of one (scale, workers) pair
are held out together): the leave-one-point-out mean absolute percentage error, averaged with the
error of predicting the largest measured scale from the smaller ones (the extrapolation the model
is for). The simplest candidate within 25 % (relative) of the best score wins (on a noisy desktop a
richer model must earn its extra coefficients clearly): fewer coefficients
first, then ``s`` before ``s log s``. An ``s log s`` form is only eligible with at least
``MIN_SCALES_FOR_CURVATURE`` scales measured and when it beats its family's ``s`` form by more
than half the median spread between repeats of a point: with three scales the curvature rests on
one degree of freedom, and extrapolating noise 10-100x is the worst error the model can make
(measured: benchmarks/README.md "Predictor accuracy").

Runs on the real fleet (imported or calibration runs) weigh ``CLOUD_WEIGHT`` desktop runs in the
fit (see profiler.runs). Each point is fitted by its fastest repeat: on a shared desktop interference only ever adds
time, so the fastest run is the best estimate of the app's own runtime. The spread of the repeats
still reaches the prediction interval through the residuals.

Prediction intervals come from a residual bootstrap with a fixed seed (``BOOTSTRAP_SEED``): the
relative residuals of the fitted points are resampled onto the fitted values, the model is
refitted ``BOOTSTRAP_SAMPLES`` times, and each refit's prediction is multiplied by a resampled
residual of one run (every repeat counts: the noise of a single future run). p50 is the median of the refits' predictions (the
fitted runtime: noise on a shared desktop is one-sided, so it would only bias the median up);
p90 is the 90th percentile of the predictions with their noise.
The refitted coefficients and noise factors are stored, so predicting is a dot product.

Memory: the peak RSS per worker and of the master are each fitted as ``m0 + m1·s`` by NNLS.
When a host's working set (workers on it × per-worker peak + the master) exceeds
``USABLE_MEMORY_FRACTION`` of its memory, the part that does not fit is served from swap or spill
files; that part is assumed to run ``SPILL_SLOWDOWN`` times slower. This is a rough figure
(memory against local SSD paging differs by 10-100x in bandwidth, but apps overlap spilling with
work): it makes a fleet whose data does not fit clearly slower, and a job speed up more than
linearly once its data fits. Measured runs that were themselves memory-bound on the profiling
host are divided by the same factor before fitting, so the fitted model is the in-memory regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from d2c.errors import UsageError
from profiler.prediction import Estimate, MemoryEstimate

FAMILIES = ("amdahl", "ernest", "usl")
SCALE_FORMS = ("s", "slogs")
BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_SEED = 20160316
PARSIMONY = 0.25
MIN_SCALES_FOR_CURVATURE = 4
USABLE_MEMORY_FRACTION = 0.9
SPILL_SLOWDOWN = 5.0

_FEATURE_COUNT = {"amdahl": 2, "ernest": 4, "usl": 4}


def _features(family: str, scale_form: str) -> int:
    return _FEATURE_COUNT[family] + (scale_form == "slogs")


@dataclass(frozen=True)
class Observation:
    """One measured run as the model sees it."""

    scale: float
    workers: float
    wall_s: float
    worker_rss_mb: float | None = None
    master_rss_mb: float | None = None
    host_memory_mb: float | None = None
    """Memory of the host the run was measured on, to recognise memory-bound runs."""
    weight: float = 1.0
    """How much the run counts in the fit relative to a desktop run."""


@dataclass(frozen=True)
class Candidate:
    """One fitted candidate model and how well it cross-validates."""

    family: str
    scale_form: str
    coefficients: tuple[float, ...]
    cv_error: float
    """Leave-one-point-out mean absolute percentage error, as a fraction."""
    extrapolation_error: float | None
    """Error predicting the largest measured scale from the smaller ones (None if not possible)."""

    @property
    def name(self) -> str:
        """E.g. ``ernest (s)`` or ``usl (s log s)``."""
        return f"{self.family} ({'s' if self.scale_form == 's' else 's log s'})"

    @property
    def score(self) -> float:
        """What the choice minimises."""
        if self.extrapolation_error is None:
            return self.cv_error
        return 0.5 * (self.cv_error + self.extrapolation_error)


@dataclass(frozen=True)
class MemoryModel:
    """Peak RSS per worker and of the master, each ``m0 + m1·scale`` MB."""

    per_worker: tuple[float, float] = (0.0, 0.0)
    master: tuple[float, float] = (0.0, 0.0)

    def estimate(self, scale: float) -> MemoryEstimate:
        """Predicted peak memory at ``scale``."""
        return MemoryEstimate(
            per_worker_mb=self.per_worker[0] + self.per_worker[1] * scale,
            master_mb=self.master[0] + self.master[1] * scale,
        )


@dataclass
class FittedModel:
    """The chosen runtime model, its bootstrap, every candidate, and the memory model.

    Satisfies :class:`profiler.prediction.RuntimePredictor`.
    """

    family: str
    scale_form: str
    s_ref: float
    coefficients: tuple[float, ...]
    candidates: tuple[Candidate, ...]
    bootstrap_coefficients: np.ndarray
    bootstrap_noise: np.ndarray
    memory_model: MemoryModel
    full_scale: float
    spill_slowdown: float = SPILL_SLOWDOWN
    usable_memory_fraction: float = USABLE_MEMORY_FRACTION
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The chosen candidate's name."""
        return next(c.name for c in self.candidates if (c.family, c.scale_form) == (self.family, self.scale_form))

    def point(self, scale: float, workers: float) -> float:
        """The fitted runtime (no interval, no memory regime) in seconds."""
        row = design_matrix(self.family, self.scale_form, self.s_ref, np.array([scale]), np.array([workers]))[0]
        return float(row @ np.asarray(self.coefficients))

    def spill_factor(self, scale: float, workers: float, host_memory_mb: float, workers_per_host: float) -> float:
        """How much slower a host runs when its working set does not fit in its memory."""
        working_set = self.memory(scale, workers).per_host_mb(workers_per_host, includes_master=True)
        return spill_factor(working_set, host_memory_mb, self.usable_memory_fraction, self.spill_slowdown)

    def runtime(
        self,
        scale: float,
        workers: float,
        *,
        host_memory_mb: float | None = None,
        workers_per_host: float | None = None,
    ) -> Estimate:
        """Predicted wall seconds (p50, p90) at ``scale`` with ``workers`` effective workers."""
        key = (scale, workers)
        if key not in self._cache:
            row = design_matrix(self.family, self.scale_form, self.s_ref, np.array([scale]), np.array([workers]))[0]
            fits = self.bootstrap_coefficients @ row
            p50 = np.percentile(fits, 50)
            p90 = np.percentile(fits * self.bootstrap_noise, 90)
            self._cache[key] = (max(float(p50), 0.0), max(float(p90), float(p50), 0.0))
        p50, p90 = self._cache[key]
        if host_memory_mb and workers_per_host:
            factor = self.spill_factor(scale, workers, host_memory_mb, workers_per_host)
            p50, p90 = p50 * factor, p90 * factor
        return Estimate(p50=p50, p90=p90)

    def memory(self, scale: float, workers: float) -> MemoryEstimate:
        """Predicted peak memory at ``scale`` (per worker does not depend on the worker count)."""
        return self.memory_model.estimate(scale)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in profile.json under ``model``."""
        return {
            "chosen": self.name,
            "family": self.family,
            "scale_form": self.scale_form,
            "s_ref": self.s_ref,
            "coefficients": list(self.coefficients),
            "candidates": [
                {
                    "name": c.name,
                    "family": c.family,
                    "scale_form": c.scale_form,
                    "coefficients": list(c.coefficients),
                    "cv_error": c.cv_error,
                    "extrapolation_error": c.extrapolation_error,
                }
                for c in self.candidates
            ],
            "bootstrap": {
                "seed": BOOTSTRAP_SEED,
                "coefficients": self.bootstrap_coefficients.tolist(),
                "noise": self.bootstrap_noise.tolist(),
            },
            "memory": {"per_worker_mb": list(self.memory_model.per_worker), "master_mb": list(self.memory_model.master)},
            "spill": {"usable_memory_fraction": self.usable_memory_fraction, "slowdown": self.spill_slowdown},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], full_scale: float) -> "FittedModel":
        """Rebuild a model from its ``to_dict`` form (KeyError/TypeError/ValueError if malformed)."""
        candidates = tuple(
            Candidate(
                family=c["family"],
                scale_form=c["scale_form"],
                coefficients=tuple(float(x) for x in c["coefficients"]),
                cv_error=float(c["cv_error"]),
                extrapolation_error=None if c["extrapolation_error"] is None else float(c["extrapolation_error"]),
            )
            for c in data["candidates"]
        )
        family, scale_form = data["family"], data["scale_form"]
        if family not in FAMILIES or scale_form not in SCALE_FORMS:
            raise ValueError(f"unknown model {family}/{scale_form}")
        coefficients = tuple(float(x) for x in data["coefficients"])
        boot = np.asarray(data["bootstrap"]["coefficients"], dtype=float)
        noise = np.asarray(data["bootstrap"]["noise"], dtype=float)
        if boot.ndim != 2 or boot.shape[1] != len(coefficients) or noise.shape != (boot.shape[0],):
            raise ValueError("bootstrap shape does not match the coefficients")
        memory = data["memory"]
        return cls(
            family=family,
            scale_form=scale_form,
            s_ref=float(data["s_ref"]),
            coefficients=coefficients,
            candidates=candidates,
            bootstrap_coefficients=boot,
            bootstrap_noise=noise,
            memory_model=MemoryModel(
                per_worker=tuple(float(x) for x in memory["per_worker_mb"]),
                master=tuple(float(x) for x in memory["master_mb"]),
            ),
            full_scale=full_scale,
            spill_slowdown=float(data["spill"]["slowdown"]),
            usable_memory_fraction=float(data["spill"]["usable_memory_fraction"]),
        )


def spill_factor(working_set_mb: float, host_memory_mb: float, usable_fraction: float = USABLE_MEMORY_FRACTION, slowdown: float = SPILL_SLOWDOWN) -> float:
    """Runtime multiplier for a host whose working set may not fit: 1 when it fits, else
    1 + (slowdown - 1) × the fraction of the working set that does not fit."""
    usable = host_memory_mb * usable_fraction
    if working_set_mb <= usable or working_set_mb <= 0:
        return 1.0
    overflow = (working_set_mb - usable) / working_set_mb
    return 1.0 + (slowdown - 1.0) * overflow


def design_matrix(family: str, scale_form: str, s_ref: float, scale: np.ndarray, workers: np.ndarray) -> np.ndarray:
    """The feature rows of ``family`` (with the ``s log s`` column for that scale form)."""
    g = np.asarray(scale, dtype=float)
    w = np.asarray(workers, dtype=float)
    # A fleet may be worth less than one desktop core; its coordination terms are those of one.
    c = np.maximum(w, 1.0)
    one = np.ones_like(g)
    if family == "amdahl":
        columns = [one, g / w]
    elif family == "ernest":
        columns = [one, g / w, np.log(c), c]
    elif family == "usl":
        columns = [one, g / w, g * (c - 1) / c, g * (c - 1)]
    else:
        raise ValueError(f"unknown model family {family!r}")
    if scale_form == "slogs":
        columns.append(g * np.maximum(np.log(g / s_ref), 0.0) / w)
    elif scale_form != "s":
        raise ValueError(f"unknown scale form {scale_form!r}")
    return np.column_stack(columns)


def nnls_relative(matrix: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative coefficients minimising the (weighted) sum of squared *relative* residuals."""
    from scipy.optimize import nnls

    root = np.ones(len(target)) if weights is None else np.sqrt(weights)
    weighted = matrix * (root / target)[:, None]
    norms = np.linalg.norm(weighted, axis=0)
    norms[norms == 0] = 1.0
    solution, _ = nnls(weighted / norms, root, maxiter=50 * matrix.shape[1] + 100)
    return solution / norms


def _fit_memory(observations: Sequence[Observation]) -> MemoryModel:
    def line(pairs: list[tuple[float, float]]) -> tuple[float, float]:
        if not pairs:
            return (0.0, 0.0)
        from scipy.optimize import nnls

        scales = np.array([p[0] for p in pairs])
        values = np.array([p[1] for p in pairs])
        if len(set(scales.tolist())) < 2:
            return (float(values.max()), 0.0)
        solution, _ = nnls(np.column_stack([np.ones_like(scales), scales]), values)
        return (float(solution[0]), float(solution[1]))

    return MemoryModel(
        per_worker=line([(o.scale, o.worker_rss_mb) for o in observations if o.worker_rss_mb is not None]),
        master=line([(o.scale, o.master_rss_mb) for o in observations if o.master_rss_mb is not None]),
    )


def _points(observations: Sequence[Observation]) -> dict[tuple[float, float], list[float]]:
    points: dict[tuple[float, float], list[float]] = {}
    for o in observations:
        points.setdefault((o.scale, round(o.workers, 6)), []).append(o.wall_s)
    return points


def check_enough(observations: Sequence[Observation], scales_allowed: Sequence[float] = (), workers_allowed: Sequence[float] = ()) -> None:
    """Raise UsageError naming the runs to add when the observations cannot fit a model.

    A fit needs two scales, two worker counts and three distinct (scale, workers) points.
    """
    points = _points(observations)
    scales = sorted({s for s, _ in points})
    workers = sorted({w for _, w in points})
    have = ", ".join(f"(scale {s:g}, {w:g} workers)" for s, w in sorted(points)) or "nothing"
    if not observations:
        raise UsageError("too few points to fit: no completed run; profile at least 3 (scale, workers) points with 2 scales and 2 worker counts")
    if len(workers) < 2:
        other = next((w for w in workers_allowed if w not in workers), workers[0] * 2)
        raise UsageError(f"too few points to fit: every run used {workers[0]:g} workers (have {have}); add runs with {other:g} workers, e.g. scale {scales[0]:g} with {other:g} workers")
    if len(scales) < 2:
        other = next((s for s in scales_allowed if s not in scales), scales[0] * 2)
        raise UsageError(f"too few points to fit: every run used scale {scales[0]:g} (have {have}); add runs at scale {other:g}")
    if len(points) < 3:
        missing = [(s, w) for s in scales for w in workers if (s, w) not in points]
        s, w = missing[0]
        raise UsageError(f"too few points to fit: need 3 (scale, workers) points, have {have}; add scale {s:g} with {w:g} workers")


def fit_model(observations: Sequence[Observation], full_scale: float, *, bootstrap_samples: int = BOOTSTRAP_SAMPLES) -> FittedModel:
    """Fit every candidate, cross-validate, choose one, and bootstrap its prediction interval.

    ``bootstrap_samples=0`` skips the bootstrap (p50 = p90 = the fit), for quick progress figures.
    Raises UsageError (naming the runs to add) when there are too few points.
    """
    check_enough(observations)
    memory_model = _fit_memory(observations)
    walls = []
    for o in observations:
        factor = 1.0
        if o.host_memory_mb:
            working_set = memory_model.estimate(o.scale).per_host_mb(o.workers, includes_master=True)
            factor = spill_factor(working_set, o.host_memory_mb)
        walls.append(o.wall_s / factor)
    all_scale = np.array([o.scale for o in observations])
    all_workers = np.array([o.workers for o in observations])
    all_wall = np.array(walls)
    keys = list(zip(all_scale.tolist(), np.round(all_workers, 6).tolist()))
    unique = sorted(set(keys))
    point_scale = np.array([k[0] for k in unique])
    point_workers = np.array([k[1] for k in unique])
    point_wall = np.array([min(w for k, w in zip(keys, all_wall) if k == u) for u in unique])
    all_weight = [o.weight for o in observations]
    point_weight = np.array([max(w for k, w in zip(keys, all_weight) if k == u) for u in unique])
    s_ref = float(point_scale.min())

    candidates = []
    for family in FAMILIES:
        for scale_form in SCALE_FORMS:
            if len(unique) < _features(family, scale_form) + 1 and (family, scale_form) != ("amdahl", "s"):
                continue
            candidates.append(_fit_candidate(family, scale_form, s_ref, point_scale, point_workers, point_wall, point_weight))
    # s·log s extrapolates steeply: it needs MIN_SCALES_FOR_CURVATURE scales and must beat its
    # family's linear form by more than half the spread between repeats, or the curvature it
    # fits may be noise.
    noise = _repeat_spread(keys, all_wall)
    linear = {c.family: c.score for c in candidates if c.scale_form == "s"}
    curvature_ok = len(set(point_scale.tolist())) >= MIN_SCALES_FOR_CURVATURE
    candidates_eligible = [
        c for c in candidates
        if c.scale_form == "s" or c.family not in linear or (curvature_ok and c.score < linear[c.family] - noise / 2)
    ]
    best = min(c.score for c in candidates_eligible)
    order = sorted(candidates_eligible, key=lambda c: (_features(c.family, c.scale_form), SCALE_FORMS.index(c.scale_form), FAMILIES.index(c.family)))
    chosen = next(c for c in order if c.score <= best * (1 + PARSIMONY) + 1e-9)

    matrix = design_matrix(chosen.family, chosen.scale_form, s_ref, point_scale, point_workers)
    fitted_points = matrix @ np.asarray(chosen.coefficients)
    fitted_runs = design_matrix(chosen.family, chosen.scale_form, s_ref, all_scale, all_workers) @ np.asarray(chosen.coefficients)
    residuals = all_wall / np.maximum(fitted_runs, 1e-12) - 1.0
    point_residuals = point_wall / np.maximum(fitted_points, 1e-12) - 1.0
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    boot = np.empty((bootstrap_samples, matrix.shape[1]))
    for b in range(bootstrap_samples):
        resampled = fitted_points * (1.0 + rng.choice(point_residuals, size=len(fitted_points)))
        boot[b] = nnls_relative(matrix, np.maximum(resampled, 1e-9), point_weight)
    noise = 1.0 + rng.choice(residuals, size=bootstrap_samples)
    if bootstrap_samples == 0:
        boot, noise = np.asarray([chosen.coefficients]), np.ones(1)
    return FittedModel(
        family=chosen.family,
        scale_form=chosen.scale_form,
        s_ref=s_ref,
        coefficients=chosen.coefficients,
        candidates=tuple(candidates),
        bootstrap_coefficients=boot,
        bootstrap_noise=np.maximum(noise, 0.0),
        memory_model=memory_model,
        full_scale=full_scale,
    )


def _repeat_spread(keys: list, walls: np.ndarray) -> float:
    """Median relative spread (slowest / fastest - 1) between repeats of one point; 0 without repeats."""
    groups: dict = {}
    for key, wall in zip(keys, walls):
        groups.setdefault(key, []).append(wall)
    spreads = [max(v) / min(v) - 1.0 for v in groups.values() if len(v) > 1]
    return float(np.median(spreads)) if spreads else 0.0


def _fit_candidate(family: str, scale_form: str, s_ref: float, scale: np.ndarray, workers: np.ndarray, wall: np.ndarray, weight: np.ndarray) -> Candidate:
    matrix = design_matrix(family, scale_form, s_ref, scale, workers)
    coefficients = nnls_relative(matrix, wall, weight)
    errors = []
    for i in range(len(wall)):
        keep = np.arange(len(wall)) != i
        if len(set(workers[keep].tolist())) < 2 or len(set(scale[keep].tolist())) < 2:
            continue
        beta = nnls_relative(matrix[keep], wall[keep], weight[keep])
        errors.append(abs(matrix[i] @ beta - wall[i]) / wall[i])
    if not errors:
        errors = [float(np.mean(np.abs(matrix @ coefficients - wall) / wall))]
    extrapolation = None
    largest = scale == scale.max()
    rest = ~largest
    if len(set(scale[rest].tolist())) >= 2 and len(set(workers[rest].tolist())) >= 2:
        beta = nnls_relative(matrix[rest], wall[rest], weight[rest])
        extrapolation = float(np.mean(np.abs(matrix[largest] @ beta - wall[largest]) / wall[largest]))
    return Candidate(
        family=family,
        scale_form=scale_form,
        coefficients=tuple(float(x) for x in coefficients),
        cv_error=float(np.mean(errors)),
        extrapolation_error=extrapolation,
    )


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error, as a fraction."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) / m)) if len(m) else math.nan
