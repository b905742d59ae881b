#!/usr/bin/env python3
"""Wall time of ``d2c --help`` against the bare interpreter's start-up, measured in the same run.

Goal: ``d2c --help`` under 0.3 s, which holds only while heavy libraries (boto3, pandas, numpy,
pulp, scipy, matplotlib, paramiko, rich, psutil) are imported inside the commands that use them.
The runs of each command are interleaved so that a burst of load on a shared machine hits both
alike. Prints a markdown table and the machine it ran on.

    python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 0.3


def cpu_model() -> str:
    """The CPU model as lscpu names it (or the platform's guess where lscpu is missing)."""
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def wall_time(command: list[str]) -> float:
    """Seconds from spawning ``command`` until it exits; fails loudly if the command fails."""
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (median reported)")
    args = parser.parse_args(argv)

    commands = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "python -m d2c --help": [sys.executable, "-m", "d2c", "--help"],
    }
    # The installed console script itself, not a version manager's shim in front of it.
    script = Path(sysconfig.get_path("scripts")) / "d2c"
    if script.is_file():
        commands["d2c --help (installed script)"] = [str(script), "--help"]
    for command in commands.values():
        wall_time(command)  # warm the file cache once, outside the measurement
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(args.runs):
        for label, command in commands.items():
            times[label].append(wall_time(command))

    baseline = statistics.median(times["python -c pass (baseline)"])
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; {args.runs} runs each\n")
    print("| command | median s | min s | max s | over baseline s |")
    print("| --- | --- | --- | --- | --- |")
    for label, samples in times.items():
        median = statistics.median(samples)
        print(f"| {label} | {median:.3f} | {min(samples):.3f} | {max(samples):.3f} | {median - baseline:+.3f} |")
    help_median = max(statistics.median(samples) for label, samples in times.items() if "--help" in label)
    verdict = "meets" if help_median < GOAL_S else "MISSES"
    print(f"\n`d2c --help` median {help_median:.3f} s (the slower way of starting it) {verdict} the goal of {GOAL_S} s.")
    return 0 if help_median < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
