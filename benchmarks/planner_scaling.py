"""Planner scaling: time to find the top-5 plans against catalog size, ILP against brute force.

Catalogs of 100 to 50,000 candidate (type, region, market; spot per zone) rows are built from the reference
sample (/work/shared/data/aws-ec2-vms-sample.csv, read in place): smaller ones are seeded
subsets of its regions, larger ones add synthetic regions whose prices are the real ones times a
seeded factor in [0.9, 1.1]. The app is single-role (every instance runs workers, 1..63 of them)
with a known Amdahl model, $50 budget and a 3 h deadline.

Measured per size, in one run:

* ``build``: candidates, capacity levels, per-region problems and dominance pruning;
* ``cbc`` / ``highs``: the exact top-5 search (``planner.ranking.best_plans``) after the build;
* ``brute``: the original Desktop to Cloud search, every type x count 1..63 evaluated one at a
  time (``planner.enumeration.best_homogeneous_loop``) over all rows, build included;
* exactness: the ILP restricted to single-type fleets (``--homogeneous``) must find exactly the
  brute force's optimum, and the mixed ILP's plan may only be cheaper.

End to end (a second table): what ``d2c recommend`` computes after loading the catalog, the top
5 distinct worker mixes plus the cost/time frontier (``planner.recommend.build_problem`` and
``recommend``), for a master + worker app (1 master, 1..64 workers, the master's ranks counted,
at most 2 worker types) with static and with dynamic balance: the default search (at most two
types: ``planner.pair_search``), the integer program in HiGHS (``ilp.solve`` with
``combinatorial=False``, patched in for the run) and in CBC, against the same brute force over
the same problems, on the whole sample and on 50,000 rows. All must give the same plan costs.

Usage: ``python benchmarks/planner_scaling.py [--sizes 100,1000,...] [--e2e-sizes 0,50000]
[--repeats 3]``; prints Markdown tables for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner import ilp, ranking  # noqa: E402
from planner.billing import BillingRules  # noqa: E402
from planner.candidates import Limits, build_candidates  # noqa: E402
from planner.catalog import Catalog  # noqa: E402
from planner.catalog.csvfile import read_catalog_csv  # noqa: E402
from planner.enumeration import best_homogeneous_loop  # noqa: E402
from planner.problem import RoleGroup, build_levels, build_subproblems, capacity_range  # noqa: E402
from profiler.prediction import Estimate, MemoryEstimate  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aws-ec2-vms-sample.csv"
SIZES = (100, 300, 1000, 3000, 0, 10_000, 20_000, 50_000)
"""Candidate rows; 0 stands for the whole sample (all types, all regions, both markets)."""
BUDGET, DEADLINE = 50.0, 3 * 3600.0
WORKERS = RoleGroup("app", 1, 63, works=True, hosts_master=True)
MASTER_WORKERS = (RoleGroup("worker", 1, 64, works=True, hosts_master=False), RoleGroup("master", 1, 1, works=True, hosts_master=True))


@dataclasses.dataclass(frozen=True)
class Amdahl:
    """T = 300·s + 72000·s/w (20 h on one desktop core), p90 15 % above; 400 MB per worker."""

    full_scale: float = 1.0

    def runtime(self, scale, workers, *, host_memory_mb=None, workers_per_host=None) -> Estimate:
        p50 = 300.0 * scale + 72_000.0 * scale / workers
        return Estimate(p50, 1.15 * p50)

    def memory(self, scale, workers) -> MemoryEstimate:
        return MemoryEstimate(per_worker_mb=400.0, master_mb=800.0)


def offer_rows(offer) -> int:
    """Candidate rows of one offer: one on demand, one spot per zone priced (or one for the region)."""
    return 1 + (len(offer.spot_zones) or (offer.spot_usd_h is not None))


def rows(catalog: Catalog) -> int:
    return sum(offer_rows(o) for o in catalog.offers)


def catalog_of(sample: Catalog, size: int, seed: int = 7) -> Catalog:
    """About ``size`` candidate rows from the sample (0: the sample itself)."""
    if size == 0:
        return sample
    rng = np.random.default_rng(seed)
    regions = sorted({o.region for o in sample.offers})
    per_region = rows(sample) / len(regions)
    offers = list(sample.offers)
    copy = 1
    while len(offers) * 2 < size:
        factor = {o.instance_type: rng.uniform(0.9, 1.1) for o in sample.offers}
        offers += [
            dataclasses.replace(
                o,
                region=f"{o.region}-x{copy}",
                on_demand_usd_h=round(o.on_demand_usd_h * factor[o.instance_type], 5),
                spot_usd_h=None if o.spot_usd_h is None else round(o.spot_usd_h * factor[o.instance_type], 5),
                spot_zones=tuple((zone, round(price * factor[o.instance_type], 5)) for zone, price in o.spot_zones),
            )
            for o in sample.offers
        ]
        copy += 1
    if size < rows(sample):
        keep = set(rng.choice(regions, size=max(1, int(round(size / per_region))), replace=False))
        offers = [o for o in offers if o.region in keep]
    # Trim to the size with a seeded choice of rows.
    picked = rng.permutation(len(offers))
    chosen, total = [], 0
    for index in picked:
        if total >= size:
            break
        chosen.append(offers[index])
        total += offer_rows(offers[index])
    return Catalog(tuple(chosen), "benchmark", sample.fetched_at)


def build(catalog: Catalog, limits: Limits, prune: bool = True):
    candidates = build_candidates(catalog, limits)
    lo, hi = capacity_range(candidates, WORKERS, limits.max_instances)
    levels = build_levels(Amdahl(), 1.0, lo, hi)
    return build_subproblems(
        candidates, WORKERS, None, levels, BillingRules(), max_instances=limits.max_instances, homogeneous=limits.homogeneous, prune=prune
    ), len(candidates)


def runs(function, repeats: int):
    """Each run's seconds, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def timed(function, repeats: int):
    times, result = runs(function, repeats)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--brute-repeats", type=int, default=1, help="brute force is slow at large sizes")
    parser.add_argument("--e2e-sizes", default="0,50000", help="sizes for the end-to-end table ('' for none)")
    parser.add_argument("--e2e-no-brute", action="store_true", help="end to end: CBC as the only baseline (the brute force takes minutes)")
    args = parser.parse_args()
    sample = read_catalog_csv(SAMPLE, source="sample")
    limits = Limits(budget_usd=BUDGET, deadline_s=DEADLINE)
    homogeneous = dataclasses.replace(limits, homogeneous=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print("| candidate rows | kept after pruning | build s | ILP top-5 CBC s | ILP top-5 HiGHS s | brute force 1..63 s | brute / (build + CBC) | #1 $ ILP (mixed) | #1 $ brute (single type) | single-type ILP = brute |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for size in (int(s) for s in args.sizes.split(",") if s):
        catalog = catalog_of(sample, size)
        build_s, (subs, n_rows) = timed(lambda: build(catalog, limits), args.repeats)
        kept = sum(len(s.workers.cands) for s in subs)
        cbc_s, top_cbc = timed(lambda: ranking.best_plans(subs, top=5, budget_usd=BUDGET, deadline_s=DEADLINE, solver="cbc"), args.repeats)
        highs_s, top_highs = timed(lambda: ranking.best_plans(subs, top=5, budget_usd=BUDGET, deadline_s=DEADLINE, solver="highs"), args.repeats)
        assert [round(f.evaluation.cost50, 9) for f in top_cbc] == [round(f.evaluation.cost50, 9) for f in top_highs]

        def brute():
            full, _ = build(catalog, limits, prune=False)
            return best_homogeneous_loop(full, budget_usd=BUDGET, deadline_s=DEADLINE, max_count=63)

        brute_s, baseline = timed(brute, args.brute_repeats)
        single_subs, _ = build(catalog, homogeneous)
        single = ranking.best_plans(single_subs, top=1, budget_usd=BUDGET, deadline_s=DEADLINE, solver="cbc")
        exact = bool(single) and baseline is not None and abs(single[0].evaluation.cost50 - baseline.evaluation.cost50) <= 1e-9
        assert exact, f"size {size}: single-type ILP {single[0].evaluation.cost50 if single else None} != brute force {baseline.evaluation.cost50 if baseline else None}"
        assert top_cbc[0].evaluation.cost50 <= baseline.evaluation.cost50 + 1e-9
        print(
            f"| {n_rows:,}{' (whole sample)' if size == 0 else ''} | {kept:,} | {build_s:.2f} | {cbc_s:.2f} | {highs_s:.2f} | {brute_s:.2f} | "
            f"{brute_s / (build_s + cbc_s):.1f}x | {top_cbc[0].evaluation.cost50:.4f} | {baseline.evaluation.cost50:.4f} | {'yes' if exact else 'NO'} |",
            flush=True,
        )


    if args.e2e_sizes:
        end_to_end(sample, [int(s) for s in args.e2e_sizes.split(",")], args.repeats, brute_force=not args.e2e_no_brute)


@contextlib.contextmanager
def integer_program():
    """Every solve through the integer program (HiGHS), as before the pair search."""
    solve = ilp.solve
    ilp.solve = functools.partial(solve, combinatorial=False)
    try:
        yield
    finally:
        ilp.solve = solve


def cells(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ({', '.join(f'{t:.2f}' for t in times)})"


def end_to_end(sample: Catalog, sizes: list[int], repeats: int, brute_force: bool = True) -> None:
    """The second table: top 5 + frontier for a master + worker app, static and dynamic."""
    from planner import recommend as planning

    print()
    print("| candidate rows | balance | recommend s (runs) | HiGHS ILP s (runs) | CBC ILP s | brute force 1..64 s | brute / recommend | plans | #1 $ | #1 $ brute (single type) |")
    print("|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        catalog = catalog_of(sample, size)
        for balance in ("static", "dynamic"):
            limits = Limits(budget_usd=BUDGET, deadline_s=DEADLINE, balance=balance, arch="x86_64")

            def run(solver):
                subs = planning.build_problem(Amdahl(), catalog, MASTER_WORKERS, limits, scale=1.0, rules=BillingRules())
                return planning.recommend(subs, limits, top=5, solver=solver)

            # Interleaved, so that a change of load on the shared machine touches both alike.
            times, ilp_times = [], []
            for _ in range(repeats):
                seconds, result = runs(lambda: run("highs"), 1)
                times += seconds
                with integer_program():
                    seconds, by_ilp = runs(lambda: run("highs"), 1)
                ilp_times += seconds
            cbc_s, cbc = timed(lambda: run("cbc"), 1)
            costs = lambda r: [p.cost_usd.p50 for p in r.plans[:5]]  # noqa: E731
            assert costs(cbc) == costs(result) == costs(by_ilp), (costs(result), costs(by_ilp), costs(cbc))

            def brute():
                subs = planning.build_problem(Amdahl(), catalog, MASTER_WORKERS, limits, scale=1.0, rules=BillingRules())
                return best_homogeneous_loop(subs, budget_usd=BUDGET, deadline_s=DEADLINE, max_count=64)

            median = statistics.median(times)
            if brute_force:
                brute_s, baseline = timed(brute, 1)
                assert result.plans[0].cost_usd.p50 <= baseline.evaluation.cost50 + 1e-4
                brute_cells = f"{brute_s:.2f} | {brute_s / median:.1f}x | {len(result.plans)} | {result.plans[0].cost_usd.p50:.4f} | {baseline.evaluation.cost50:.4f} |"
            else:
                brute_cells = f"— | — | {len(result.plans)} | {result.plans[0].cost_usd.p50:.4f} | — |"
            print(
                f"| {rows(catalog):,}{' (whole sample)' if size == 0 else ''} | {balance} | {cells(times)} | {cells(ilp_times)} | "
                f"{cbc_s:.2f} | {brute_cells}",
                flush=True,
            )


if __name__ == "__main__":
    main()
