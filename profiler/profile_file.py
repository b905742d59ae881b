"""profile.json: what ``d2c profile`` learnt about the app, and the model fitted to it.

Format, version 3 (a JSON object)::

    {
      "version": 3,
      "app": "montecarlo",                # the descriptor's name
      "created": "2026-11-25T12:00:00Z",   # last written (profiling, import or calibration)
      "full_scale": 1.0,                   # the scale of the real run
      "host": {                            # profiler.host_facts.HostFacts
        "name": "local", "cpu_model": "AMD EPYC", "physical_cores": 2, "logical_cores": 2,
        "memory_mb": 24105.0, "speed": 1.4,          # single-core speed, c5 core = 1.0
        "speed_loops_per_s": 2.1e7, "python": "3.11", "page_size": 4096, "clock_ticks": 100,
        "speed_spread": 0.03,              # relative spread of the repeated score
        "speed_basis": "measured" | "given" | "cloud runs" | "assumed"
      },
      "runs": [                            # profiler.runs.RunRecord, one per measured run
        {"scale": 0.02, "workers": 2.0, "wall_s": 0.61, "repeat": 1,
         "source": "profile" | "import" | "calibration", "status": "ok" | "partial",
         "exit_status": 0, "instance_type": "c5.xlarge", "count": 8,    # cloud runs only
         "peak_rss_mb": 41.2,              # per worker
         "master_rss_mb": 60.1, "input_mb": 12.0,
         "contention": 0.12,               # share of runnable time spent waiting for a CPU
                                           # taken by other work; the fit uses
                                           # wall_s * (1 - contention) (profiler.runs)
         "summary": {"samples": 3, "cpu_user_s": 1.1, "cpu_system_s": 0.02,
                     "utilisation_mean": 1.8, "utilisation_peak": 2.0, "peak_rss_mb": 95.0,
                     "master_rss_mb": 60.1, "worker_rss_mb": 41.2, "read_mb": 0.1,
                     "write_mb": 0.0, "max_processes": 3, "max_threads": 5}}
      ],
      "model": {                           # profiler.model.FittedModel.to_dict
        "chosen": "amdahl (s)", "family": "amdahl", "scale_form": "s", "s_ref": 0.02,
        "coefficients": [0.3, 28.1],
        "candidates": [{"name", "family", "scale_form", "coefficients", "cv_error",
                        "extrapolation_error", "extrapolation_weight"}, ...],
        "interval": {"seed": 20160316, "bootstrap": [[...], ...], "noise": [...],
                     "speed_spread": 0.03, "level": 0.91, "misfit": [0.0, 0.0]},
        "measured": {"scales": [0.02, 0.08], "workers": [1, 2], "single_scale": false},
        "excluded": ["scale 4 with 1 workers: ... left out of the in-memory fit"],
        "noise": 0.015,                    # sd of ln wall between repeats
        "memory": {"per_worker_mb": [m0, m1], "master_mb": [m0, m1]},
        "spill": {"usable_memory_fraction": 0.9, "slowdown": 5.0}
      }
    }

A version 1 file (its model had an in-sample bootstrap) or 2 (a bootstrap of NNLS refits, no
misfit term) is read by refitting its runs. Every
field is checked on reading: a value out of range (``full_scale: -1``, a negative speed, a
coefficient that is not a finite number) is refused naming the field.

Runtime is in seconds, memory in MB (10^6 bytes), ``workers`` in effective desktop-core workers
(see :mod:`profiler.fleet`). Partial runs (killed at the time box) are kept but not fitted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from d2c.errors import UsageError
from d2c.files import atomic_write_bytes
from profiler.host_facts import HostFacts
from profiler.model import FittedModel, fit_model
from profiler.runs import RunRecord

VERSION = 3
REFITTED_VERSIONS = (1, 2)
"""Older versions whose model is refitted from their runs on reading."""


@dataclass
class Profile:
    """A loaded or freshly fitted profile."""

    app: str
    full_scale: float
    host: HostFacts
    runs: list[RunRecord]
    model: FittedModel
    created: str
    digest: str = ""
    """``sha256:<hex>`` of the file as last read or written."""

    @property
    def predictor(self) -> FittedModel:
        """The fitted model (a :class:`profiler.prediction.RuntimePredictor`)."""
        return self.model

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "version": VERSION,
            "app": self.app,
            "created": self.created,
            "full_scale": self.full_scale,
            "host": self.host.to_dict(),
            "runs": [r.to_dict() for r in self.runs],
            "model": self.model.to_dict(),
        }


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_profile(app: str, full_scale: float, host: HostFacts, runs: Sequence[RunRecord]) -> Profile:
    """Fit the model to ``runs`` (UsageError naming the runs to add when too few)."""
    observations = [r.observation(host.memory_mb) for r in runs if r.fitted]
    model = fit_model(observations, full_scale, speed_spread=host.speed_spread)
    return Profile(app=app, full_scale=full_scale, host=host, runs=list(runs), model=model, created=_now())


def save_profile(path: Path, profile: Profile) -> None:
    """Write ``profile`` atomically and set its digest."""
    data = (json.dumps(profile.to_dict(), indent=1) + "\n").encode("utf-8")
    atomic_write_bytes(Path(path), data)
    profile.digest = "sha256:" + hashlib.sha256(data).hexdigest()


def load_profile(path: Path) -> Profile:
    """Read a profile.json; UsageError naming the file when it is missing or invalid."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: profile.json not found; run 'd2c profile' first (or 'd2c profile import RUNS.csv')") from None
    except OSError as exc:
        raise UsageError(f"{path}: profile.json cannot be read ({exc.strerror}); run 'd2c profile' first") from None
    try:
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version = raw.get("version")
        if version != VERSION and version not in REFITTED_VERSIONS:
            raise ValueError(f"version {version!r}, expected {VERSION}")
        full_scale = float(raw["full_scale"])
        if not (math.isfinite(full_scale) and full_scale > 0):
            raise ValueError(f"full_scale = {raw['full_scale']!r} must be a positive number")
        host = HostFacts.from_dict(raw["host"])
        host.validate()
        if not isinstance(raw["runs"], list):
            raise ValueError("runs must be a list")
        runs = [RunRecord.from_dict(r) for r in raw["runs"]]
        app, created = str(raw["app"]), str(raw.get("created", ""))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise _invalid(path, exc) from None
    if version in REFITTED_VERSIONS:
        profile = build_profile(app, full_scale, host, runs)
        profile.created = created
    else:
        try:
            model = FittedModel.from_dict(raw["model"], full_scale)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _invalid(path, exc) from None
        profile = Profile(app=app, full_scale=full_scale, host=host, runs=runs, model=model, created=created)
    profile.digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return profile


def _invalid(path: Path, exc: Exception) -> UsageError:
    reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return UsageError(f"{path}: profile.json is not a valid profile ({reason}); fix that field or run 'd2c profile' first")
