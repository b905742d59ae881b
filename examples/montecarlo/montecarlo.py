#!/usr/bin/env python3
"""Monte Carlo pricing of an arithmetic-average Asian call option on a process pool.

A small but real parallel job, shaped like many research codes:

* a serial set-up: a pilot simulation in the main process estimates the coefficient of the
  control variate (the geometric-average Asian call, whose price has a closed form);
* a parallel part: a fixed number of tasks, each simulating a block of price paths with its own
  random stream, spread over ``--workers`` processes;
* a serial reduction of the per-task sums into the estimate and its standard error.

``--scale s`` sets the number of paths (work grows like s) and the size of each task's block of
paths held in memory at once (memory per worker grows like s). Because every task has its own
seed derived from ``--seed`` and its index, the result does not depend on the worker count: the
``checksum`` is the same for 1 or 16 workers.

The output JSON holds the geometric-average price estimated by plain Monte Carlo next to its
exact value, so a run can be checked: the two must agree within a few standard errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

PATHS_AT_FULL_SCALE = 64_000_000
STEPS = 64
PILOT_FRACTION = 0.05
DEFAULT_TASKS = 256

# The option: spot, strike, risk-free rate, volatility, maturity in years.
SPOT, STRIKE, RATE, VOLATILITY, MATURITY = 100.0, 100.0, 0.05, 0.2, 1.0


def normal_cdf(x: float) -> float:
    """The standard normal distribution function."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def geometric_asian_call_exact(steps: int = STEPS) -> float:
    """Closed-form price of the discretely monitored geometric-average Asian call (Kemna–Vorst)."""
    mean_log = math.log(SPOT) + (RATE - 0.5 * VOLATILITY**2) * MATURITY * (steps + 1) / (2 * steps)
    var_log = VOLATILITY**2 * MATURITY * (steps + 1) * (2 * steps + 1) / (6 * steps**2)
    sd_log = math.sqrt(var_log)
    d1 = (mean_log - math.log(STRIKE) + var_log) / sd_log
    d2 = d1 - sd_log
    forward = math.exp(mean_log + 0.5 * var_log)
    return math.exp(-RATE * MATURITY) * (forward * normal_cdf(d1) - STRIKE * normal_cdf(d2))


def simulate(paths: int, seed: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Discounted arithmetic and geometric Asian payoffs of ``paths`` simulated price paths."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    dt = MATURITY / STEPS
    # The whole block of paths is held at once: this is what makes memory grow with the scale.
    log_paths = rng.standard_normal((paths, STEPS))
    log_paths *= VOLATILITY * math.sqrt(dt)
    log_paths += (RATE - 0.5 * VOLATILITY**2) * dt
    np.cumsum(log_paths, axis=1, out=log_paths)
    geometric = SPOT * np.exp(log_paths.mean(axis=1))
    np.exp(log_paths, out=log_paths)
    arithmetic = SPOT * log_paths.mean(axis=1)
    discount = math.exp(-RATE * MATURITY)
    return (
        discount * np.maximum(arithmetic - STRIKE, 0.0),
        discount * np.maximum(geometric - STRIKE, 0.0),
    )


Sums = tuple[float, float, float, float, float, int]
"""Per block: sums of A, A², G, G², A·G over its paths (A, G the two payoffs), and the path count."""


def block_sums(paths: int, seed: tuple[int, ...]) -> Sums:
    """Simulate one block of paths and return the sums the reduction needs."""
    arithmetic, geometric = simulate(paths, seed)
    return (
        float(arithmetic.sum()),
        float((arithmetic * arithmetic).sum()),
        float(geometric.sum()),
        float((geometric * geometric).sum()),
        float((arithmetic * geometric).sum()),
        paths,
    )


def run_task(job: tuple[int, int, int]) -> Sums:
    """One task of the parallel part: its own random stream, derived from the seed and its index."""
    seed, index, paths = job
    return block_sums(paths, (seed, 1, index))


def control_coefficient(paths: int, block: int, seed: int) -> float:
    """The control-variate coefficient cov(A, G) / var(G) from a pilot run in the main process.

    The pilot runs in blocks of the tasks' size so that it needs no more memory than a worker.
    """
    blocks = [block_sums(min(block, paths - i * block), (seed, 0, i)) for i in range(math.ceil(paths / block))]
    sum_a, _, sum_g, sum_gg, sum_ag, count = (sum(column) for column in zip(*blocks))
    return (sum_ag - sum_a * sum_g / count) / (sum_gg - sum_g * sum_g / count)


def combine(sums: list[Sums], beta: float, exact: float) -> dict:
    """Reduce per-task sums, in task order, into estimates and standard errors."""
    sum_a = sum_aa = sum_g = sum_gg = sum_ag = 0.0
    count = 0
    for a, aa, g, gg, ag, n in sums:
        sum_a, sum_aa, sum_g, sum_gg, sum_ag, count = sum_a + a, sum_aa + aa, sum_g + g, sum_gg + gg, sum_ag + ag, count + n
    mean_a, mean_g = sum_a / count, sum_g / count
    var_a = (sum_aa - count * mean_a**2) / (count - 1)
    var_g = (sum_gg - count * mean_g**2) / (count - 1)
    cov_ag = (sum_ag - count * mean_a * mean_g) / (count - 1)
    var_cv = max(var_a + beta**2 * var_g - 2 * beta * cov_ag, 0.0)
    return {
        "arithmetic": {
            "estimate": mean_a - beta * (mean_g - exact),
            "stderr": math.sqrt(var_cv / count),
            "stderr_without_control": math.sqrt(var_a / count),
            "control_coefficient": beta,
        },
        "geometric": {"estimate": mean_g, "stderr": math.sqrt(var_g / count), "exact": exact},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="problem size; 1.0 = %d paths" % PATHS_AT_FULL_SCALE)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes in the pool")
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="blocks the paths are split into")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=Path("out/result.json"))
    args = parser.parse_args(argv)
    if not args.scale > 0:
        parser.error("--scale must be positive")
    if args.workers < 1 or args.tasks < 1:
        parser.error("--workers and --tasks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    paths = max(args.tasks * 16, round(args.scale * PATHS_AT_FULL_SCALE))
    per_task = [paths // args.tasks + (1 if i < paths % args.tasks else 0) for i in range(args.tasks)]
    exact = geometric_asian_call_exact()
    beta = control_coefficient(max(1000, round(PILOT_FRACTION * paths)), max(per_task), args.seed)
    setup_done = time.perf_counter()

    jobs = [(args.seed, index, count) for index, count in enumerate(per_task)]
    with Pool(processes=args.workers) as pool:
        sums = pool.map(run_task, jobs, chunksize=1)
    parallel_done = time.perf_counter()

    result = combine(sums, beta, exact)
    result.update(
        app="montecarlo",
        scale=args.scale,
        workers=args.workers,
        tasks=args.tasks,
        paths=paths,
        steps=STEPS,
        seed=args.seed,
        checksum=hashlib.sha256(json.dumps([beta, sums]).encode()).hexdigest(),
        timings={
            "setup_s": round(setup_done - started, 4),
            "parallel_s": round(parallel_done - setup_done, 4),
            "total_s": round(time.perf_counter() - started, 4),
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(args.out)
    line = result["arithmetic"]
    print(f"asian call {line['estimate']:.5f} ± {line['stderr']:.5f} ({paths} paths, {args.workers} workers, "
          f"{result['timings']['total_s']:.2f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
