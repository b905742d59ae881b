#!/usr/bin/env python3
"""How long the dashboard takes to answer each page, and a live run's refresh with many hosts.

The project is the dashboard tests' (``tests/fixtures/ui.py``: a profile imported from a runs CSV,
plans from the bundled catalog, a finished local rehearsal and a live run journaled through
executor.journal). The server is ``d2c.cli.ui.server.DashboardServer`` on a loopback port in this
process; each page is fetched ``--repeats`` times over HTTP, interleaved with the baseline, a GET
of the static script (the server's own cost with no page to build). Then the live run is given
``--hosts`` more hosts and its refresh (``live.json``) is timed again. Prints markdown tables.

    python benchmarks/ui_pages.py [--repeats 15] [--hosts 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cli_startup import cpu_model  # noqa: E402
from tests.fixtures.ui import add_host, build_ui_project  # noqa: E402


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def measure(base: str, paths: list[str], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(repeats):
        for path in paths:
            times[path].append(timed_get(base + path))
    return times


def table(times: dict[str, list[float]], baseline: str) -> list[str]:
    base = statistics.median(times[baseline])
    lines = ["| page | median ms | min ms | max ms | over baseline ms |", "| --- | --- | --- | --- | --- |"]
    for path, values in times.items():
        median = statistics.median(values)
        label = f"/{path}" + (" (baseline)" if path == baseline else "")
        lines.append(f"| {label} | {median * 1000:.1f} | {min(values) * 1000:.1f} | {max(values) * 1000:.1f} | {(median - base) * 1000:+.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--hosts", type=int, default=64)
    args = parser.parse_args()

    import os

    from d2c.cli.ui.project import Project
    from d2c.cli.ui.server import DashboardServer, new_access

    with tempfile.TemporaryDirectory(prefix="d2c-ui-bench-") as folder:
        os.environ["D2C_CACHE_DIR"] = str(Path(folder) / "cache")
        project = build_ui_project(Path(folder))
        server = DashboardServer(("127.0.0.1", 0), Project(project.root, project.state), new_access(True))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.port}/"
        baseline = "static/dashboard.js"
        paths = [baseline, "", "profile", "plans", "runs", f"runs/{project.finished_run}", f"runs/{project.live_run}", f"runs/{project.live_run}/live.json"]
        timed_get(base + "profile")  # first use imports the page modules and parses the files
        print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d')}\n")
        print(f"Pages of the fixture project, median of {args.repeats}:\n")
        print("\n".join(table(measure(base, paths, args.repeats), baseline)))
        now = time.time()
        for index in range(2, args.hosts + 2):
            add_host(project, "worker", index, "c6i.large", 0.085, launched_at=now - 300 + index)
        live = [baseline, f"runs/{project.live_run}", f"runs/{project.live_run}/live.json"]
        print(f"\nThe live run with {args.hosts + 1} hosts, median of {args.repeats}:\n")
        print("\n".join(table(measure(base, live, args.repeats), baseline)))
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
