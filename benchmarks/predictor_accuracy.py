"""How well the profiler's estimates hold: p50 error and p90 coverage, against Ernest's model.

For each local workload: profile it at small scales with 1 and 2 workers (``d2c profile``'s
design, sampling and stopping rules, time box 60 s, full scale 100x the largest profiled), fit
the chosen model and Ernest's model (Venkataraman et al., NSDI 2016; the same NNLS fit and
calibrated interval, restricted to its family) to the same runs, then run the app at larger
scales (4-16x the largest profiled) three times and compare. This machine is shared, so runs are
compared by their ``own`` time (waiting for CPUs taken by other work removed, see
profiler.sampling), corrected for the machine's drift since profiling (see ``measure``).

A public record of cloud runs: Ernest's own example, Spark ML logistic regression on RCV1 on
r3.xlarge instances (7 runs: cores, input fraction, seconds; amplab/ernest,
examples/rcv1-parsed.csv, https://github.com/amplab/ernest/blob/master/examples/rcv1-parsed.csv).
Each run is predicted from the other six (leave one out), and the largest (32 cores, input
0.125) from the runs at up to 16 cores and input 0.062, 2x beyond in both.

Reported: the p50 error (mean absolute percentage error of p50), the p90 coverage (share of
measured runs at or under p90), the median p90/p50, and the profiling time as a fraction of
the predicted full run.

Usage: python benchmarks/predictor_accuracy.py [--quick] [--save FILE | --replay FILE]

``--save`` keeps the measurements (each workload's profiled runs and the targets' own times) as
JSON; ``--replay`` scores a saved file without running anything, so a change to the model can be
judged on the very runs another version was judged on.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from d2c.descriptor import ProfileSpec  # noqa: E402
from d2c.errors import UsageError  # noqa: E402
from d2c.transport.local import LocalHost  # noqa: E402
from profiler.experiment import run_point  # noqa: E402
from profiler.host_facts import measure_host  # noqa: E402
from profiler.model import FAMILIES, Observation, fit_model, mape  # noqa: E402
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


ATTEMPTS = 3


def measure(host: LocalHost, workload: Workload, runs, scale: float, workers: int) -> list[float]:
    """The target's own time at the machine speed the profile saw, in each of ``ATTEMPTS`` attempts.

    Each attempt first re-runs the largest point profiled with the same workers; its own time
    now over its own time in the profile is the machine's drift (other work slows the same work
    down beyond waiting for a CPU). The targets' own times are divided by the median drift of the
    attempts, so that one disturbed reference run does not move a measurement.
    """
    reference = max(r.scale for r in runs if r.workers == float(workers) and r.fitted)
    profiled = min(r.own_wall_s for r in runs if (r.scale, r.workers) == (reference, float(workers)) and r.fitted)
    drifts, owns = [], []
    for _ in range(ATTEMPTS):
        drifts.append(own_and_wall(host, workload, reference, workers)[0] / profiled)
        owns.append(own_and_wall(host, workload, scale, workers)[0])
    drift = float(np.median(drifts))
    return [own / drift for own in owns]


ERNEST_RCV1 = (
    (32, 0.125, 7.94516801834),
    (4, 0.015625, 4.72029209137),
    (4, 0.021382, 4.87661099434),
    (12, 0.050164, 6.71376490593),
    (12, 0.055921, 6.71519398689),
    (12, 0.061678, 6.6739718914),
    (16, 0.061678, 6.83566999435),
)
"""(cores, input fraction, seconds) of amplab/ernest examples/rcv1-parsed.csv."""


@dataclass
class Score:
    """Predictions against measurements of one model on one workload."""

    predicted: list = None
    measured: list = None

    def __post_init__(self) -> None:
        self.predicted, self.measured = [], []

    def add(self, estimate, measured: float) -> None:
        self.predicted.append(estimate)
        self.measured.append(measured)

    @property
    def error(self) -> float:
        return mape([e.p50 for e in self.predicted], self.measured)

    @property
    def coverage(self) -> float:
        return float(np.mean([m <= e.p90 for e, m in zip(self.predicted, self.measured)]))

    @property
    def width(self) -> float:
        return float(np.median([e.p90 / e.p50 for e in self.predicted]))

    def cells(self) -> str:
        if not self.measured:
            return "n/a (too few points) | | "
        return f"{self.error:.1%} | {self.coverage:.0%} ({sum(m <= e.p90 for e, m in zip(self.predicted, self.measured))}/{len(self.measured)}) | {self.width:.2f}"


def public_record() -> tuple[Score, Score]:
    """Leave-one-out and one 2x extrapolation over Ernest's RCV1 runs, for d2c's choice and Ernest."""
    runs = [Observation(scale, cores, seconds, weight=5.0) for cores, scale, seconds in ERNEST_RCV1]
    chosen, ernest = Score(), Score()
    folds = [([r for j, r in enumerate(runs) if j != i], runs[i]) for i in range(len(runs))]
    folds.append(([r for r in runs if r.workers <= 16], runs[0]))
    for train, held in folds:
        for score, families in ((chosen, FAMILIES), (ernest, ("ernest",))):
            model = fit_model(train, full_scale=0.125, families=families)
            score.add(model.runtime(held.scale, held.workers), held.wall_s)
    return chosen, ernest


def measure_workloads(quick: bool) -> dict:
    """Profile and measure every local workload: the machine, and per workload its fitted
    observations, profiling time and each target's measured own times (JSON-ready)."""
    work = Path(tempfile.mkdtemp(prefix="d2c-bench-"))
    try:
        write_text_data(work / "data.txt", 130)
        (work / "pool.py").write_text(POOL_APP)
        host = LocalHost(root=work)
        facts = measure_host(host)
        machine = (
            f"{facts.cpu_model}, {facts.logical_cores} logical cores, {facts.memory_mb:.0f} MB, speed {facts.speed:g} x c5 "
            f"(spread {facts.speed_spread:.0%}); Python {platform.python_version()}; load average {open('/proc/loadavg').read().split()[0]}"
        )
        print(f"machine: {machine}", flush=True)
        workloads = []
        for workload in WORKLOADS[:2] if quick else WORKLOADS:
            spec = ProfileSpec(command=workload.command, scales=workload.scales, workers=(1, 2), full_scale=100 * max(workload.scales), repeats=2)
            started = time.monotonic()
            runs = profile_app(host, spec, max_time_s=60, sampler_factory=LocalTreeSampler, host_memory_mb=facts.memory_mb)
            profiling_s = time.monotonic() - started
            targets = [{"scale": scale, "workers": workers, "own_s": measure(host, workload, runs, scale, workers)} for scale, workers in workload.targets]
            workloads.append({
                "name": workload.name,
                "full_scale": spec.full_scale,
                "runs": len(runs),
                "profiling_s": profiling_s,
                "observations": [asdict(r.observation(facts.memory_mb)) for r in runs if r.fitted],
                "targets": targets,
            })
            print(f"  {workload.name}: {len(runs)} runs in {profiling_s:.1f}s", flush=True)
        return {"machine": machine, "load_after": open("/proc/loadavg").read().split()[0], "workloads": workloads}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(measured: dict) -> None:
    """Fit d2c's chosen model and Ernest's to each workload's runs and print the tables."""
    rows, costs = [], []
    for workload in measured["workloads"]:
        observations = [Observation(**o) for o in workload["observations"]]
        chosen_model = fit_model(observations, workload["full_scale"])
        try:
            ernest_model = fit_model(observations, workload["full_scale"], families=("ernest",))
        except UsageError:  # Ernest's four coefficients need five points; the session may stop before
            ernest_model = None
        chosen, ernest = Score(), Score()
        lines = []
        for target in workload["targets"]:
            scale, workers = target["scale"], target["workers"]
            predicted = chosen_model.runtime(scale, workers)
            for own in target["own_s"]:
                chosen.add(predicted, own)
                if ernest_model is not None:
                    ernest.add(ernest_model.runtime(scale, workers), own)
            lines.append(f"{scale:g}x{workers}: p50 {predicted.p50:.2f} p90 {predicted.p90:.2f} own {', '.join(f'{o:.2f}' for o in target['own_s'])}")
        rows.append((workload["name"], chosen_model.name, chosen, ernest))
        full = chosen_model.runtime(workload["full_scale"], 2).p50
        costs.append((workload["name"], workload["runs"], workload["profiling_s"], full, workload["profiling_s"] / full))
        print(f"  {workload['name']}: {chosen_model.name}; {'; '.join(lines)}")
    chosen, ernest = public_record()
    rows.append(("Spark LR on RCV1, 7 runs on r3.xlarge (Ernest's record)", "", chosen, ernest))
    print("\n### p50 error, p90 coverage and p90/p50\n")
    print("| workload | d2c model | d2c p50 error | d2c p90 coverage | d2c p90/p50 | Ernest p50 error | Ernest p90 coverage | Ernest p90/p50 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, model_name, d2c_score, ernest_score in rows:
        print(f"| {name} | {model_name} | {d2c_score.cells()} | {ernest_score.cells()} |")
    pooled = {k: Score() for k in ("d2c", "ernest")}
    for _, _, d2c_score, ernest_score in rows:
        for key, score in (("d2c", d2c_score), ("ernest", ernest_score)):
            for e, m in zip(score.predicted, score.measured):
                pooled[key].add(e, m)
    print(f"| **all** | | {pooled['d2c'].cells()} | {pooled['ernest'].cells()} |")
    print("\n### Profiling cost\n")
    print("| workload | runs | profiling (s) | predicted full run at 100x, 2 workers (s) | fraction |")
    print("| --- | --- | --- | --- | --- |")
    for name, count, spent, full, fraction in costs:
        print(f"| {name} | {count} | {spent:.1f} | {full:.0f} | {fraction:.1%} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the first two workloads")
    parser.add_argument("--save", type=Path, metavar="FILE", help="also write the measurements to FILE (JSON)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="score the measurements saved in FILE instead of running the apps")
    arguments = parser.parse_args()
    if arguments.replay:
        measurements = json.loads(arguments.replay.read_text())
        print(f"machine (replayed from {arguments.replay}): {measurements['machine']}")
    else:
        measurements = measure_workloads(arguments.quick)
        if arguments.save:
            arguments.save.write_text(json.dumps(measurements, indent=1))
    report(measurements)
