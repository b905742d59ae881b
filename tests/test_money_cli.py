"""Bad input about money and bounds: one line, exit 2, nothing launched."""

from __future__ import annotations

import subprocess
import sys

from executor.journal import open_journal
from tests.fixtures.executor import app_project, write_plans


def test_a_deadman_shorter_than_boot_plus_p90_is_refused_with_the_minimum(tmp_path):
    project = app_project(tmp_path, "short", {"job.sh": "#!/bin/bash\ntrue\n"}, "roles:\n  - {name: master, image: app, command: ./job.sh}\n")
    write_plans(project / "plans.json", "short", [("master", 1, 1)], time_p50=1200.0)  # p90 30 min
    done = subprocess.run(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--yes", "--deadman", "20m"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --deadman 20m: shorter than the plan's boot (3m) plus its p90 time (30m); give at least 33m"
    assert open_journal().runs() == [], "nothing was started"
