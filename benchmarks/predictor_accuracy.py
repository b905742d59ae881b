"""How well the profiler's model extrapolates, per model family, on real workloads.

For each workload: profile it at small scales with 1 and 2 workers (the design and sampling
``d2c profile`` uses, time box 60 s), fit every candidate model, then run the app at larger
scales (4-16x the largest profiled) and compare. This machine is shared, so like the fit the
larger runs are compared by their ``own`` time (the time spent waiting for CPUs taken by other
work removed, see profiler.sampling), corrected for the machine's drift since profiling (see
``measure``). The same comparison against raw wall times (fitted and measured) is a second table.

Reported per family (its linear-scale form, fitted to the same runs in the same run): the
mean absolute percentage error over the larger runs; Ernest's model (Venkataraman et al., NSDI
2016) is the baseline. ``chosen`` is the model cross-validation picks, predicting its p50. Also the profiling time as a
fraction of the predicted full run (full scale = 100x the largest profiled scale).

Usage: python benchmarks/predictor_accuracy.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from d2c.descriptor import ProfileSpec  # noqa: E402
from d2c.transport.local import LocalHost  # noqa: E402
from profiler.experiment import run_point  # noqa: E402
from profiler.host_facts import measure_host  # noqa: E402
from profiler.model import FAMILIES, design_matrix, fit_model, mape  # noqa: E402
from profiler.sampling import LocalTreeSampler  # noqa: E402
from profiler.session import profile_app  # noqa: E402
from tests.fixtures.profiler import POOL_APP, XZ_COMMAND, write_text_data  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    command: str
    scales: tuple[float, ...]
    targets: tuple[tuple[float, int], ...]


WORKLOADS = (
    Workload("xz -3 (Debian xz-utils)", XZ_COMMAND, (2, 4, 8), ((32, 1), (32, 2), (64, 2))),
    Workload("pigz -9 (Debian pigz)", "head -c {scale}M data.txt | pigz -p {workers} -9 -c > /dev/null", (4, 8, 16), ((64, 1), (64, 2), (128, 2))),
    Workload("Python process pool", f"{sys.executable} pool.py {{scale}} {{workers}}", (0.25, 0.5, 1.0), ((4, 1), (4, 2), (8, 2))),
    Workload(
        "examples/montecarlo",
        f"{sys.executable} {ROOT / 'examples/montecarlo/montecarlo.py'} --scale {{scale}} --workers {{workers}} --out out/result.json",
        (0.005, 0.01, 0.02),
        ((0.08, 1), (0.08, 2), (0.16, 2)),
    ),
)


def own_and_wall(host: LocalHost, workload: Workload, scale: float, workers: int) -> tuple[float, float]:
    """Own time and wall time of one run."""
    command = workload.command.replace("{scale}", f"{scale:g}").replace("{workers}", str(workers))
    outcome = run_point(host, command, scale=scale, workers=workers, repeat=1, sampler_factory=LocalTreeSampler, stop_at=time.monotonic() + 300)
    if not outcome.result.ok:
        raise SystemExit(f"{workload.name}: {command} failed: {outcome.result.stderr_tail[-300:]}")
    return outcome.record.own_wall_s, outcome.record.wall_s


def measure(host: LocalHost, workload: Workload, runs, scale: float, workers: int) -> tuple[float, float]:
    """The target's own time at the machine speed the profile saw, and its raw wall time.

    Each of two attempts first re-runs the largest profiled point with the same workers; its own
    time now over its own time in the profile is the machine's drift (other work slows the same
    work down beyond waiting for a CPU), which the target's own time is divided by. The attempt
    with the smaller corrected time counts; the raw wall time is the faster of the two.
    """
    reference = max(workload.scales)
    profiled = min(r.own_wall_s for r in runs if (r.scale, r.workers) == (reference, float(workers)) and r.fitted)
    corrected, walls = [], []
    for _ in range(2):
        drift = own_and_wall(host, workload, reference, workers)[0] / profiled
        own, wall = own_and_wall(host, workload, scale, workers)
        corrected.append(own / drift)
        walls.append(wall)
    return min(corrected), min(walls)


def family_errors(model, targets, measured) -> dict[str, float]:
    """MAPE of each family's linear-scale form (Ernest's own form is the baseline) and of the chosen model."""
    errors = {}
    scales = np.array([t[0] for t in targets], dtype=float)
    workers = np.array([t[1] for t in targets], dtype=float)
    for family in FAMILIES:
        linear = [c for c in model.candidates if c.family == family and c.scale_form == "s"]
        if linear:
            predicted = design_matrix(family, "s", model.s_ref, scales, workers) @ np.array(linear[0].coefficients)
            errors[family] = mape(predicted, measured)
    errors["chosen"] = mape([model.runtime(s, w).p50 for s, w in targets], measured)
    return errors


def run(quick: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="d2c-bench-"))
    try:
        write_text_data(work / "data.txt", 130)
        (work / "pool.py").write_text(POOL_APP)
        host = LocalHost(root=work)
        facts = measure_host(host)
        print(f"machine: {facts.cpu_model}, {facts.logical_cores} logical cores, {facts.memory_mb:.0f} MB, speed {facts.speed:g} x c5; "
              f"Python {platform.python_version()}; load average {open('/proc/loadavg').read().split()[0]}")
        rows_own, rows_wall, costs = [], [], []
        for workload in WORKLOADS[:2] if quick else WORKLOADS:
            spec = ProfileSpec(command=workload.command, scales=workload.scales, workers=(1, 2), full_scale=100 * max(workload.scales), repeats=2)
            started = time.monotonic()
            runs = profile_app(host, spec, max_time_s=60, sampler_factory=LocalTreeSampler, host_memory_mb=facts.memory_mb)
            profiling_s = time.monotonic() - started
            own_model = fit_model([r.observation(facts.memory_mb) for r in runs if r.fitted], spec.full_scale)
            wall_model = fit_model([replace(r, contention=None).observation(facts.memory_mb) for r in runs if r.fitted], spec.full_scale)
            measured = [measure(host, workload, runs, s, w) for s, w in workload.targets]
            rows_own.append((workload, own_model, family_errors(own_model, workload.targets, [m[0] for m in measured])))
            rows_wall.append((workload, wall_model, family_errors(wall_model, workload.targets, [m[1] for m in measured])))
            full = own_model.runtime(spec.full_scale, 2).p50
            costs.append((workload.name, profiling_s, full, profiling_s / full))
            print(f"  {workload.name}: {len(runs)} runs in {profiling_s:.1f}s; targets {workload.targets}; own {[round(m[0], 2) for m in measured]}; wall {[round(m[1], 2) for m in measured]}", flush=True)
        for title, rows in (("own time (contention and drift removed)", rows_own), ("raw wall time", rows_wall)):
            print(f"\n### Extrapolation MAPE, {title}\n")
            print("| workload | profiled scales | predicted | amdahl | ernest (baseline) | usl | chosen (model) |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for workload, model, errors in rows:
                cells = [f"{errors.get(f, float('nan')):.1%}" for f in ("amdahl", "ernest", "usl")]
                print(f"| {workload.name} | {', '.join(f'{s:g}' for s in workload.scales)} | {', '.join(f'{s:g}@{w}' for s, w in workload.targets)} | {' | '.join(cells)} | {errors['chosen']:.1%} ({model.name}) |")
            means = {f: np.nanmean([e.get(f, np.nan) for _, _, e in rows]) for f in ("amdahl", "ernest", "usl", "chosen")}
            print(f"| **mean** | | | {means['amdahl']:.1%} | {means['ernest']:.1%} | {means['usl']:.1%} | {means['chosen']:.1%} |")
        print("\n### Profiling cost\n")
        print("| workload | profiling (s) | predicted full run at 100x, 2 workers (s) | fraction |")
        print("| --- | --- | --- | --- |")
        for name, spent, full, fraction in costs:
            print(f"| {name} | {spent:.1f} | {full:.0f} | {fraction:.1%} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the first two workloads")
    run(parser.parse_args().quick)
