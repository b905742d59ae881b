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

Every run is a row of the fit (repeats included): a prediction is for one future run, so p50 is
the fit through the typical run, not through the fastest one.

**Out-of-sample errors.** Each candidate is refitted on *folds* and asked to predict what was
left out: leave-one-point-out (all repeats of one (scale, workers) pair held out together), and
the extrapolations the model is for: the runs above each measured scale from the scales below,
and the runs above each measured worker count from the counts below. Each left-out run gives a
log error ``e = ln(measured / predicted)`` and the *leverage* ``h`` of its point under the fold's
fit, ``h = x'(A'A)⁻¹x / T(x)²`` with ``A`` the fold's relative design (rows divided by their
runtime): the variance of the fold's relative
prediction error at ``x`` in units of one run's noise. ``h`` grows with the distance beyond the
measured range in workers and in scale.

**Model choice tied to the noise.** A candidate's score is its leave-one-point-out mean absolute
percentage error averaged with its extrapolation error, the latter weighted by ``1 +
log10(full_scale / largest measured scale)`` (capped at 3): the further the real run lies beyond
the profile, the more extrapolating well counts. The simplest candidate whose score is within
``margin`` of the best wins (fewer coefficients first, then ``s`` before ``s log s``), where
``margin`` is half the relative spread measured between repeats of a point (the standard
deviation of ln wall between repeats, pooled): a richer model must beat a simpler one by more
than the noise it could be fitting. Without repeats, ``PARSIMONY`` (25 %) of the best score.
An ``s log s`` form also needs ``MIN_SCALES_FOR_CURVATURE`` scales and to beat its family's ``s``
form by more than that margin: extrapolating curvature fitted to noise is the worst error the
model can make (benchmarks/README.md "Predictor accuracy").

**Calibrated interval.** The chosen candidate's out-of-sample errors are standardised, ``r = e /
sqrt(1 + h)``: what one future run's noise looks like once the fold's own parameter error is
taken out, but with every misfit the model makes when extrapolating left in. A residual
bootstrap (fixed seed ``BOOTSTRAP_SEED``) resamples the centred scores onto the fitted runtimes
and refits ``BOOTSTRAP_SAMPLES`` times; each refit's prediction is multiplied by ``exp`` of a
resampled score (the noise of one future run) and by the host speed factor ``exp(ε · σ_speed ·
z)``, z standard normal: ``σ_speed`` is the relative spread of the host's speed score
(profiler.host_facts) and ``ε = -d ln T / d ln w`` at the target, since a cloud fleet is
converted to desktop-core workers through that score. p50 is the NNLS fit; p90 is the ``level``
percentile of those draws, ``level = ⌈0.9 (m + 1)⌉ / m`` for ``m`` scores (the split-conformal
finite-sample correction, Lei et al., JASA 2018), and never less than p50 times ``exp`` of that
percentile of the noise draws alone: no prediction is surer than one future run of a measured
point.

The bootstrap resamples around, and refits, the *unconstrained* least-squares fit of the chosen
model (:func:`least_squares_relative`), not the NNLS one. Where a coefficient's truth lies near
0, as Ernest's and USL's coordination terms do within a few workers, NNLS clips every fit that
would go below it, so its fits are skewed upward, and a percentile bootstrap of NNLS refits adds
that skew a second time: p90 covered 99-100 % of simulated runs at 10x the measured workers,
2-2.5x p50. Least squares is unbiased in a model linear in its coefficients, so the percentile of
its refits is calibrated where NNLS's is not; non-negativity still shapes p50, and p90 is never
below it. The refits spread further the further the target lies beyond the measured range, so
the interval grows with the extrapolation in workers and in scale.

**Misfit beyond the measured range.** The refits' spread is what the noise can do to a model of
the right form. A real app's form is only close: its error grows with the distance, so that the
2x folds miss by a few percent and a run 8x beyond by 20-30 % (examples/montecarlo, whose time
grows a little faster than its scale). Each held-out run that lay beyond its fold's largest
scale (or worker count) by ``δ = ln(s / s_max)`` says the log error grows by ``e / δ`` per unit
of ln distance. Their mean ``b`` is a systematic growth only where it stands out of their
spread: ``κ = sqrt(max(0, b² - (3·se)²))``, ``se`` the mean's standard error
(``MISFIT_SIGNIFICANCE`` = 3, so that a model of the right form rarely gets one: 7 % of
simulated Amdahl histories). At a target outside the measured range by ``D_s`` and ``D_w`` (ln
of the factors of profiler.prediction.Extrapolation, e.g. ``ln(s / s_max)`` above the range),
each draw is further multiplied by ``exp(sqrt((κ_s D_s)² + (κ_w D_w)²) · z)``, z standard normal.
Coverage of simulated future runs, per family, at 2x and 10x in scale and in workers:
tests/test_profiler_calibration.py; on real apps: benchmarks/predictor_accuracy.py.

**Single-scale histories.** Runs at one scale identify T(s0, w) from the worker counts alone
(three counts; Ernest needs four, ``s log s`` forms are not tried). They cannot tell serial time
from scale-dependent time, so a prediction at another scale is *refused* (UsageError naming the
measured scale), never guessed.

**Memory-bound runs.** A run whose host working set exceeds ``USABLE_MEMORY_FRACTION`` of its
memory (per-worker RSS × workers per host + the master, or the host's share of the input when no
RSS was recorded: see profiler.runs) ran in another regime, and so does the slower end of a
*super-linear* speed-up (more than ``SUPERLINEAR_TOLERANCE`` × the worker ratio at one scale,
the signature of data that fits in memory only once spread over more hosts). Both are left out
of the in-memory fit, each with a note in the model (``excluded``), instead of being read as
noise. When leaving them out would leave too few points, memory-bound runs are kept, divided by
the spill factor below. For plans, a host whose working set does not fit is assumed to serve the
part that does not fit ``SPILL_SLOWDOWN`` times slower (a rough figure: memory against local SSD
paging differs by 10-100x in bandwidth, but apps overlap spilling with work).

Runs on the real fleet (imported or calibration runs) weigh ``CLOUD_WEIGHT`` desktop runs in the
fit (see profiler.runs). Memory: the peak RSS per worker and of the master are each fitted as
``m0 + m1·s`` by NNLS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from d2c.errors import UsageError
from profiler.prediction import Estimate, Extrapolation, MeasuredRange, MemoryEstimate

FAMILIES = ("amdahl", "ernest", "usl")
SCALE_FORMS = ("s", "slogs")
PARSIMONY = 0.25
MIN_SCALES_FOR_CURVATURE = 4
USABLE_MEMORY_FRACTION = 0.9
SPILL_SLOWDOWN = 5.0
SUPERLINEAR_TOLERANCE = 1.25
P90_LEVEL = 0.9
BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_SEED = 20160316
MISFIT_SIGNIFICANCE = 3.0

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
    """Memory of one host the run was measured on, to recognise memory-bound runs."""
    weight: float = 1.0
    """How much the run counts in the fit relative to a desktop run."""
    hosts: int = 1
    """Hosts the workers were spread over (a cloud run's instance count)."""
    working_set_mb: float | None = None
    """One host's working set when known without RSS (its share of the input)."""


@dataclass(frozen=True)
class Candidate:
    """One fitted candidate model and how well it predicts what it had not seen."""

    family: str
    scale_form: str
    coefficients: tuple[float, ...]
    cv_error: float
    """Leave-one-point-out mean absolute percentage error, as a fraction."""
    extrapolation_error: float | None
    """Mean absolute percentage error predicting runs beyond the fold's scales or worker counts
    (None when no such fold can be fitted)."""
    extrapolation_weight: float = 1.0

    @property
    def name(self) -> str:
        """E.g. ``ernest (s)`` or ``usl (s log s)``."""
        return f"{self.family} ({'s' if self.scale_form == 's' else 's log s'})"

    @property
    def score(self) -> float:
        """What the choice minimises."""
        if self.extrapolation_error is None:
            return self.cv_error
        weight = self.extrapolation_weight
        return (self.cv_error + weight * self.extrapolation_error) / (1.0 + weight)


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


@dataclass(frozen=True)
class Interval:
    """What the p90 needs: the bootstrap refits of the chosen model, the future-run noise draws
    (resampled out-of-sample scores), and the host speed score's spread with its normal draws."""

    bootstrap: np.ndarray
    """BOOTSTRAP_SAMPLES x coefficients."""
    noise: np.ndarray
    """One log noise draw per bootstrap sample."""
    speed_spread: float = 0.0
    level: float = P90_LEVEL
    """The percentile taken: P90_LEVEL with the split-conformal finite-sample correction."""
    misfit: tuple[float, float] = (0.0, 0.0)
    """κ in scale and in workers: log error growth per unit ln distance beyond the measured
    range (module docstring, "Misfit beyond the measured range")."""

    @property
    def speed_draws(self) -> np.ndarray:
        """Standard normal draws, one per bootstrap sample (fixed seed)."""
        return np.random.default_rng(BOOTSTRAP_SEED + 1).standard_normal(len(self.noise))

    @property
    def noise_quantile(self) -> float:
        """The ``level`` percentile of the noise draws alone: one future run's log noise, the
        least p90 may add to p50."""
        return float(np.percentile(self.noise, 100 * self.level))

    @property
    def misfit_draws(self) -> np.ndarray:
        """Standard normal draws for the misfit beyond the measured range (fixed seed)."""
        return np.random.default_rng(BOOTSTRAP_SEED + 2).standard_normal(len(self.noise))


@dataclass
class FittedModel:
    """The chosen runtime model, its calibrated interval, every candidate, and the memory model.

    Satisfies :class:`profiler.prediction.RuntimePredictor`.
    """

    family: str
    scale_form: str
    s_ref: float
    coefficients: tuple[float, ...]
    candidates: tuple[Candidate, ...]
    interval: Interval
    memory_model: MemoryModel
    full_scale: float
    measured: MeasuredRange
    excluded: tuple[str, ...] = ()
    """Why runs were left out of the in-memory fit, one line each."""
    noise: float = 0.0
    """Pooled relative spread (sd of ln wall) between repeats of a point; 0 without repeats."""
    margin: float = 0.0
    """How far above the best score the chosen (simplest) candidate's score may be."""
    spill_slowdown: float = SPILL_SLOWDOWN
    usable_memory_fraction: float = USABLE_MEMORY_FRACTION
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The chosen candidate's name."""
        return next(c.name for c in self.candidates if (c.family, c.scale_form) == (self.family, self.scale_form))

    def _row(self, scale: float, workers: float) -> np.ndarray:
        return design_matrix(self.family, self.scale_form, self.s_ref, np.array([scale]), np.array([workers]))[0]

    def point(self, scale: float, workers: float) -> float:
        """The fitted runtime (no interval, no memory regime) in seconds."""
        return float(self._row(scale, workers) @ np.asarray(self.coefficients))

    def spill_factor(self, scale: float, workers: float, host_memory_mb: float, workers_per_host: float) -> float:
        """How much slower a host runs when its working set does not fit in its memory."""
        working_set = self.memory(scale, workers).per_host_mb(workers_per_host, includes_master=True)
        return spill_factor(working_set, host_memory_mb, self.usable_memory_fraction, self.spill_slowdown)

    def check_scale(self, scale: float) -> None:
        """UsageError when ``scale`` cannot be predicted (a profile measured at one scale only)."""
        if self.measured.single_scale and not math.isclose(scale, self.measured.max_scale, rel_tol=1e-9):
            raise UsageError(
                f"the profile's runs all used scale {self.measured.max_scale:g}, which says how the app scales with workers "
                f"but not with scale; it cannot predict scale {scale:g}: add runs at another scale (d2c profile import) "
                f"or predict at scale {self.measured.max_scale:g}"
            )

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
            self.check_scale(scale)
            row = self._row(scale, workers)
            p50 = max(float(row @ np.asarray(self.coefficients)), 0.0)
            fits = np.maximum(self.interval.bootstrap @ row, 1e-12)
            elasticity = self._elasticity(scale, workers, p50)
            spread = elasticity * self.interval.speed_spread * self.interval.speed_draws
            beyond = self.extrapolation(scale, workers)
            misfit = math.hypot(self.interval.misfit[0] * math.log(beyond.scale_factor), self.interval.misfit[1] * math.log(beyond.workers_factor))
            spread = spread + misfit * self.interval.misfit_draws
            p90 = float(np.percentile(fits * np.exp(self.interval.noise + spread), 100 * self.interval.level)) if p50 > 0 else 0.0
            self._cache[key] = (p50, max(p90, p50 * math.exp(self.interval.noise_quantile), p50))
        p50, p90 = self._cache[key]
        if host_memory_mb and workers_per_host:
            factor = self.spill_factor(scale, workers, host_memory_mb, workers_per_host)
            p50, p90 = p50 * factor, p90 * factor
        return Estimate(p50=p50, p90=p90)

    def _elasticity(self, scale: float, workers: float, p50: float) -> float:
        """-d ln T / d ln w at (scale, workers), by a central difference of 1 %."""
        if p50 <= 0:
            return 0.0
        up, down = self.point(scale, workers * 1.01), self.point(scale, workers / 1.01)
        if up <= 0 or down <= 0:
            return 0.0
        return abs(math.log(down / up) / (2 * math.log(1.01)))

    def misfit_text(self, scale: float | None = None, workers: float | None = None) -> str | None:
        """The misfit term in words: how much more the held-out runs beyond their folds missed per
        doubling of the distance, in each direction (scale, workers) where it is not 0 and, when a
        target (scale and workers) is given, the target lies outside the measured range. None when
        it adds nothing."""
        target = None if scale is None or workers is None else self.extrapolation(scale, workers)
        parts = []
        for name, rate, factor in (
            ("scale", self.interval.misfit[0], math.inf if target is None else target.scale_factor),
            ("workers", self.interval.misfit[1], math.inf if target is None else target.workers_factor),
        ):
            if rate > 0 and factor > 1.0 + 1e-9:
                parts.append(f"{math.expm1(rate * math.log(2)):.1%} more per doubling of the {name}")
        if not parts:
            return None
        return f"the model misses more the further it extrapolates (held-out runs: {' and '.join(parts)}); p90 allows for that beyond the measured range"

    def extrapolation(self, scale: float, workers: float) -> Extrapolation:
        """How far (scale, workers) lies beyond the measured runs."""
        return self.measured.extrapolation(scale, workers)

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
                    "extrapolation_weight": c.extrapolation_weight,
                }
                for c in self.candidates
            ],
            "interval": {
                "seed": BOOTSTRAP_SEED,
                "bootstrap": self.interval.bootstrap.tolist(),
                "noise": self.interval.noise.tolist(),
                "speed_spread": self.interval.speed_spread,
                "level": self.interval.level,
                "misfit": list(self.interval.misfit),
            },
            "measured": self.measured.to_dict(),
            "excluded": list(self.excluded),
            "noise": self.noise,
            "margin": self.margin,
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
                extrapolation_weight=float(c.get("extrapolation_weight", 1.0)),
            )
            for c in data["candidates"]
        )
        family, scale_form = data["family"], data["scale_form"]
        if family not in FAMILIES or scale_form not in SCALE_FORMS:
            raise ValueError(f"model: unknown model {family}/{scale_form}")
        coefficients = tuple(_finite(x, "model.coefficients") for x in data["coefficients"])
        if len(coefficients) != _features(family, scale_form):
            raise ValueError(f"model.coefficients: {len(coefficients)} numbers, {family}/{scale_form} has {_features(family, scale_form)}")
        raw = data["interval"]
        boot = np.asarray(raw["bootstrap"], dtype=float)
        noise = np.asarray(raw["noise"], dtype=float)
        if boot.ndim != 2 or boot.shape[1] != len(coefficients) or noise.shape != (boot.shape[0],):
            raise ValueError("model.interval: bootstrap shape does not match the coefficients")
        if not (np.all(np.isfinite(boot)) and np.all(np.isfinite(noise))):
            raise ValueError("model.interval: bootstrap holds a number that is not finite")
        speed_spread = _finite(raw.get("speed_spread", 0.0), "model.interval.speed_spread")
        if speed_spread < 0:
            raise ValueError("model.interval.speed_spread: must be >= 0")
        level = _finite(raw.get("level", P90_LEVEL), "model.interval.level")
        if not 0.5 <= level <= 1:
            raise ValueError("model.interval.level: must be between 0.5 and 1")
        misfit = tuple(_finite(x, "model.interval.misfit") for x in raw["misfit"])
        if len(misfit) != 2 or min(misfit) < 0:
            raise ValueError("model.interval.misfit: must be two numbers >= 0 (scale, workers)")
        memory = data["memory"]
        slowdown = _finite(data["spill"]["slowdown"], "model.spill.slowdown")
        usable = _finite(data["spill"]["usable_memory_fraction"], "model.spill.usable_memory_fraction")
        if slowdown < 1 or not 0 < usable <= 1:
            raise ValueError("model.spill: slowdown must be >= 1 and usable_memory_fraction in (0, 1]")
        return cls(
            family=family,
            scale_form=scale_form,
            s_ref=_finite(data["s_ref"], "model.s_ref"),
            coefficients=coefficients,
            candidates=candidates,
            interval=Interval(bootstrap=boot, noise=noise, speed_spread=speed_spread, level=level, misfit=misfit),
            memory_model=MemoryModel(
                per_worker=tuple(_finite(x, "model.memory.per_worker_mb") for x in memory["per_worker_mb"]),
                master=tuple(_finite(x, "model.memory.master_mb") for x in memory["master_mb"]),
            ),
            full_scale=full_scale,
            measured=MeasuredRange.from_dict(data["measured"]),
            excluded=tuple(str(x) for x in data.get("excluded", ())),
            noise=_finite(data.get("noise", 0.0), "model.noise"),
            margin=_finite(data.get("margin", 0.0), "model.margin"),
            spill_slowdown=slowdown,
            usable_memory_fraction=usable,
        )


def _finite(value: Any, name: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: {value!r} is not a finite number")
    return number


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


def least_squares_relative(matrix: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unconstrained coefficients minimising the weighted sum of squared *relative* residuals, for
    each row of ``targets`` (one fit per row). Where the columns are collinear (USL's contention
    column at a single scale) it is the minimum-norm solution, whose predictions within the
    columns' span are unique."""
    targets = np.atleast_2d(targets)
    root = np.sqrt(weights)
    weighted = matrix[None, :, :] * (root[None, :] / targets)[:, :, None]
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    solutions = np.einsum("bjn,n->bj", np.linalg.pinv(weighted / norms), root)
    return solutions / norms[:, 0, :]


def relative_covariance(matrix: np.ndarray, target: np.ndarray, weights: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(A'A)⁻¹ of the relative design ``A`` over the columns NNLS left free (zero rows and
    columns for those it holds at 0)."""
    size = matrix.shape[1]
    design = matrix * (np.sqrt(weights) / target)[:, None]
    free = coefficients > 0
    covariance = np.zeros((size, size))
    if free.any():
        covariance[np.ix_(free, free)] = np.linalg.pinv(design[:, free].T @ design[:, free])
    return covariance


def _leverage(row: np.ndarray, covariance: np.ndarray, value: float) -> float:
    if value <= 0:
        return 0.0
    return max(float(row @ covariance @ row) / value**2, 0.0)


def conformal_level(scores: int, level: float = P90_LEVEL) -> float:
    """The quantile level that makes ``level`` coverage with ``scores`` exchangeable scores:
    ⌈level·(m+1)⌉ / m, as a fraction (split-conformal, Lei et al. 2018)."""
    return min(1.0, level * (scores + 1) / scores) if scores else level


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


def _key(o: Observation) -> tuple[float, float]:
    return (o.scale, round(o.workers, 6))


def _points(observations: Sequence[Observation]) -> dict[tuple[float, float], list[float]]:
    points: dict[tuple[float, float], list[float]] = {}
    for o in observations:
        points.setdefault(_key(o), []).append(o.wall_s)
    return points


def _enough(observations: Sequence[Observation]) -> bool:
    try:
        check_enough(observations)
    except UsageError:
        return False
    return True


def check_enough(observations: Sequence[Observation], scales_allowed: Sequence[float] = (), workers_allowed: Sequence[float] = ()) -> None:
    """Raise UsageError naming the runs to add when the observations cannot fit a model.

    A fit needs two worker counts and three distinct (scale, workers) points; runs at a single
    scale need three worker counts.
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
    if len(scales) < 2 and len(workers) < 3:
        other_scale = next((s for s in scales_allowed if s not in scales), scales[0] * 2)
        other_workers = next((w for w in workers_allowed if w not in workers), workers[-1] * 2)
        raise UsageError(
            f"too few points to fit: every run used scale {scales[0]:g} with {len(workers)} worker counts (have {have}); "
            f"add runs with {other_workers:g} workers at scale {scales[0]:g}, or add runs at scale {other_scale:g}"
        )
    if len(points) < 3:
        missing = [(s, w) for s in scales for w in workers if (s, w) not in points]
        s, w = missing[0]
        raise UsageError(f"too few points to fit: need 3 (scale, workers) points, have {have}; add scale {s:g} with {w:g} workers")


def working_set(o: Observation, memory_model: MemoryModel) -> float | None:
    """One host's working set during run ``o``, MB (None when nothing says)."""
    if o.worker_rss_mb is not None:
        return memory_model.estimate(o.scale).per_host_mb(o.workers / max(o.hosts, 1), includes_master=True)
    return o.working_set_mb


def separate_regimes(observations: Sequence[Observation], memory_model: MemoryModel) -> tuple[list[Observation], list[str]]:
    """The runs of the in-memory regime, and a note for each point left out (see the module
    docstring); memory-bound runs are divided by the spill factor when they must be kept."""
    kept, notes = [], []
    memory_bound = []
    for o in observations:
        ws = working_set(o, memory_model)
        if o.host_memory_mb and ws is not None and ws > USABLE_MEMORY_FRACTION * o.host_memory_mb:
            memory_bound.append((o, ws))
        else:
            kept.append(o)
    if memory_bound and _enough(kept):
        for key in sorted({_key(o) for o, _ in memory_bound}):
            o, ws = next((o, ws) for o, ws in memory_bound if _key(o) == key)
            notes.append(f"scale {key[0]:g} with {key[1]:g} workers: working set {ws:.0f} MB per host over {USABLE_MEMORY_FRACTION:.0%} of {o.host_memory_mb:.0f} MB, memory-bound; left out of the in-memory fit")
    else:
        kept = [replace(o, wall_s=o.wall_s / spill_factor(ws, o.host_memory_mb)) for o, ws in memory_bound] + kept
        if memory_bound:
            notes.append(f"{len(memory_bound)} memory-bound runs kept (too few others to fit), divided by the assumed spill slowdown")
    spilled = _superlinear(kept)
    remaining = [o for o in kept if _key(o) not in spilled]
    if spilled and _enough(remaining):
        notes.extend(dict.fromkeys(spilled.values()))
        kept = remaining
    return kept, notes


def _superlinear(observations: Sequence[Observation]) -> dict[tuple[float, float], str]:
    """Points at the slow end of a super-linear speed-up, with the note that says so (one note
    per scale, naming every worker count left out)."""
    medians = {k: float(np.median(v)) for k, v in _points(observations).items()}
    found: dict[tuple[float, float], str] = {}
    for scale in sorted({s for s, _ in medians}):
        counts = sorted(w for s, w in medians if s == scale)
        worst = None
        for low, high in zip(counts, counts[1:]):
            speedup = medians[(scale, low)] / medians[(scale, high)]
            if speedup > SUPERLINEAR_TOLERANCE * high / low:
                worst = (low, high, speedup)
        if worst is None:
            continue
        low, high, speedup = worst
        slow = [w for w in counts if w <= low]
        note = (
            f"scale {scale:g} with {' and '.join(f'{w:g}' for w in slow)} workers: {speedup:.1f}x faster from {low:g} to {high:g} workers "
            f"({high / low:.2g}x the workers), a super-linear speed-up read as spilling (data fitting in memory only when spread wider); "
            "left out of the in-memory fit"
        )
        for w in slow:
            found[(scale, w)] = note
    return found


@dataclass(frozen=True)
class _Rows:
    """The fit's rows: one per run."""

    scale: np.ndarray
    workers: np.ndarray
    wall: np.ndarray
    weight: np.ndarray

    @property
    def keys(self) -> list[tuple[float, float]]:
        return list(zip(self.scale.tolist(), np.round(self.workers, 6).tolist()))


def _folds(rows: _Rows) -> list[tuple[str, np.ndarray]]:
    """(kind, held-out mask) for leave-one-point-out and the scale and worker extrapolations."""
    keys = rows.keys
    folds = [("point", np.array([k == u for k in keys])) for u in sorted(set(keys))]
    scales = sorted(set(rows.scale.tolist()))
    for threshold in scales[1:]:
        folds.append(("scale", rows.scale >= threshold))
    workers = sorted(set(np.round(rows.workers, 6).tolist()))
    for threshold in workers[2:]:
        folds.append(("workers", np.round(rows.workers, 6) >= threshold))
    return folds


def _trainable(rows: _Rows, keep: np.ndarray, features: int, single_scale: bool) -> bool:
    points = set(k for k, m in zip(rows.keys, keep) if m)
    if len(points) < max(features, 2):
        return False
    if len({w for _, w in points}) < 2:
        return False
    return single_scale or len({s for s, _ in points}) >= 2


@dataclass(frozen=True)
class _Assessment:
    candidate: Candidate
    errors: np.ndarray
    """Log errors of every held-out run (all folds)."""
    leverages: np.ndarray
    distances: np.ndarray
    """Per held-out run, ln of how far beyond its fold's largest scale and worker count it lay
    (0 inside), two columns."""


def _assess(family: str, scale_form: str, s_ref: float, rows: _Rows, single_scale: bool, extrapolation_weight: float) -> _Assessment:
    matrix = design_matrix(family, scale_form, s_ref, rows.scale, rows.workers)
    coefficients = nnls_relative(matrix, rows.wall, rows.weight)
    features = _features(family, scale_form)
    errors, leverages, point_errors, extrapolation_errors, distances = [], [], [], [], []
    for kind, held in _folds(rows):
        keep = ~held
        if not _trainable(rows, keep, features, single_scale):
            continue
        beta = nnls_relative(matrix[keep], rows.wall[keep], rows.weight[keep])
        covariance = relative_covariance(matrix[keep], rows.wall[keep], rows.weight[keep], beta)
        for i in np.flatnonzero(held):
            predicted = float(matrix[i] @ beta)
            if predicted <= 0:
                continue
            relative = abs(predicted - rows.wall[i]) / rows.wall[i]
            (point_errors if kind == "point" else extrapolation_errors).append(relative)
            errors.append(math.log(rows.wall[i] / predicted))
            leverages.append(_leverage(matrix[i], covariance, predicted))
            distances.append((max(0.0, math.log(rows.scale[i] / rows.scale[keep].max())), max(0.0, math.log(rows.workers[i] / rows.workers[keep].max()))))
    if not point_errors:
        point_errors = list(np.abs(matrix @ coefficients - rows.wall) / rows.wall)
    candidate = Candidate(
        family=family,
        scale_form=scale_form,
        coefficients=tuple(float(x) for x in coefficients),
        cv_error=float(np.mean(point_errors)),
        extrapolation_error=float(np.mean(extrapolation_errors)) if extrapolation_errors else None,
        extrapolation_weight=extrapolation_weight,
    )
    return _Assessment(candidate, np.asarray(errors), np.asarray(leverages), np.asarray(distances, dtype=float).reshape(-1, 2))


def misfit_rates(errors: np.ndarray, distances: np.ndarray) -> tuple[float, float]:
    """How fast the log error grows per unit of ln distance beyond the measured range, in scale
    and in workers (module docstring, "Misfit beyond the measured range"): ``κ = sqrt(max(0, b²
    - (MISFIT_SIGNIFICANCE · se)²))`` over the held-out runs that lay beyond their fold, ``b``
    the mean of ``e / δ`` and ``se`` its standard error; 0 from fewer than two such runs."""
    rates = []
    for axis in (0, 1):
        beyond = distances[:, axis] > 0
        ratios = errors[beyond] / distances[beyond, axis]
        if len(ratios) < 2:
            rates.append(0.0)
            continue
        mean, se = float(ratios.mean()), float(ratios.std(ddof=1) / math.sqrt(len(ratios)))
        rates.append(math.sqrt(max(0.0, mean**2 - (MISFIT_SIGNIFICANCE * se) ** 2)))
    return rates[0], rates[1]


def repeat_noise(observations: Sequence[Observation]) -> float:
    """Pooled standard deviation of ln wall between repeats of one point (0 without repeats)."""
    squares, dof = 0.0, 0
    for walls in _points(observations).values():
        if len(walls) > 1:
            logs = np.log(np.maximum(walls, 1e-12))
            squares += float(np.sum((logs - logs.mean()) ** 2))
            dof += len(walls) - 1
    return math.sqrt(squares / dof) if dof else 0.0


def measured_range(observations: Sequence[Observation]) -> MeasuredRange:
    """The scales and effective worker counts the fit saw."""
    scales = [o.scale for o in observations]
    workers = [o.workers for o in observations]
    return MeasuredRange(min_scale=min(scales), max_scale=max(scales), min_workers=min(workers), max_workers=max(workers), single_scale=len(set(scales)) == 1)


def fit_model(
    observations: Sequence[Observation],
    full_scale: float,
    *,
    families: Sequence[str] = FAMILIES,
    speed_spread: float = 0.0,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
) -> FittedModel:
    """Fit every candidate of ``families``, assess each out of sample, choose one, and calibrate
    its interval (module docstring). ``speed_spread`` is the relative spread of the host speed
    score the workers were converted with; ``bootstrap_samples=0`` skips the bootstrap (p90 = p50,
for quick progress figures). Raises UsageError (naming the runs to add) when there
    are too few points.
    """
    check_enough(observations)
    memory_model = _fit_memory(observations)
    fitted, excluded = separate_regimes(observations, memory_model)
    rows = _Rows(
        scale=np.array([o.scale for o in fitted], dtype=float),
        workers=np.array([o.workers for o in fitted], dtype=float),
        wall=np.maximum(np.array([o.wall_s for o in fitted], dtype=float), 1e-9),
        weight=np.array([o.weight for o in fitted], dtype=float),
    )
    measured = measured_range(fitted)
    single_scale = measured.single_scale
    scales = sorted(set(rows.scale.tolist()))
    worker_counts = len(set(np.round(rows.workers, 6).tolist()))
    points = len(set(rows.keys))
    s_ref = float(rows.scale.min())
    extrapolation_weight = 1.0 + min(2.0, math.log10(max(full_scale / measured.max_scale, 1.0)))

    assessments = []
    for family in families:
        for scale_form in SCALE_FORMS:
            features = _features(family, scale_form)
            if scale_form == "slogs" and len(scales) < MIN_SCALES_FOR_CURVATURE:
                continue
            if single_scale and family == "ernest" and worker_counts < 4:
                continue
            if points < features + 1 and (family, scale_form) != ("amdahl", "s") and not (single_scale and points >= features):
                continue
            assessments.append(_assess(family, scale_form, s_ref, rows, single_scale, extrapolation_weight))
    if not assessments:
        raise UsageError(f"too few points to fit {', '.join(families)}: have {points} (scale, workers) points; add runs with more worker counts")
    noise = repeat_noise(fitted)
    candidates = [a.candidate for a in assessments]
    best = min(c.score for c in candidates)
    margin = noise / 2 if noise > 0 else PARSIMONY * best
    linear = {c.family: c.score for c in candidates if c.scale_form == "s"}
    curvature_ok = len(scales) >= MIN_SCALES_FOR_CURVATURE
    eligible = [
        c for c in candidates
        if c.scale_form == "s" or c.family not in linear or (curvature_ok and c.score < linear[c.family] - margin)
    ]
    best = min(c.score for c in eligible)
    order = sorted(eligible, key=lambda c: (_features(c.family, c.scale_form), SCALE_FORMS.index(c.scale_form), FAMILIES.index(c.family)))
    chosen = next(c for c in order if c.score <= best + margin + 1e-12)
    assessment = next(a for a in assessments if a.candidate is chosen)

    matrix = design_matrix(chosen.family, chosen.scale_form, s_ref, rows.scale, rows.workers)
    coefficients = np.asarray(chosen.coefficients)
    fitted_values = np.maximum(matrix @ coefficients, 1e-12)
    scores = assessment.errors / np.sqrt(1.0 + assessment.leverages)
    if not len(scores):
        scores = np.log(rows.wall / fitted_values)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    centred = scores - scores.mean()
    unconstrained = np.maximum(matrix @ least_squares_relative(matrix, rows.wall, rows.weight)[0], 1e-12)
    resampled = unconstrained * np.exp(rng.choice(centred, size=(bootstrap_samples, len(fitted_values))))
    boot = least_squares_relative(matrix, resampled, rows.weight)
    draws = rng.choice(scores, size=bootstrap_samples)
    if bootstrap_samples == 0:
        boot, draws = coefficients[None, :], np.zeros(1)
    return FittedModel(
        family=chosen.family,
        scale_form=chosen.scale_form,
        s_ref=s_ref,
        coefficients=chosen.coefficients,
        candidates=tuple(candidates),
        interval=Interval(bootstrap=boot, noise=draws, speed_spread=speed_spread, level=conformal_level(len(scores)), misfit=misfit_rates(assessment.errors, assessment.distances)),
        memory_model=memory_model,
        full_scale=full_scale,
        measured=measured,
        excluded=tuple(excluded),
        noise=noise,
        margin=margin,
    )


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error, as a fraction."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) / m)) if len(m) else math.nan
