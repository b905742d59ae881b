"""What a researcher types and what gets uploaded: the durations grammar, ``.d2cignore`` and
``exclude:``, and a catalog refresh that fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor
from d2c.durations import format_clock, parse_duration
from d2c.errors import UsageError
from executor.uploads import plan_copies
from tests.fixtures.executor import write_plans


def d2c(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("3h", 10800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("600", 600),
        ("0:05:00", 300), ("3:00:00", 10800), ("02:30:15", 9015), ("5:00", 300), ("1-12:00:00", 129600),
        ("2-0", 172800), ("1-02:30", 95400), ("36:00:00", 129600),
    ],
)
def test_durations_read_like_slurm_and_like_people(text, seconds):
    assert parse_duration(text, "--deadline") == seconds


@pytest.mark.parametrize("text", ["0:60:00", "1:00:60", "1:2:3:4", "1--2", "-1:00:00", "0:00:00", "3x", "h:mm:ss", "1-", ":30"])
def test_bad_durations_name_the_option_and_the_forms(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--deadline")
    assert caught.value.message.startswith(f"--deadline: '{text}' ")
    assert "0:05:00" in caught.value.message


def test_clock_form_prints_whole_seconds_with_days():
    assert [format_clock(s) for s in (0, 59.9, 247, 3600, 90061)] == ["0:00:00", "0:00:59", "0:04:07", "1:00:00", "1-01:01:01"]


def test_recommend_takes_a_slurm_deadline(fitted_project):
    done = d2c("recommend", "--budget", "5", "--deadline", "0:30:00", "--catalog", "catalog.csv", "--json", cwd=fitted_project)
    assert done.returncode == 0, done.stderr
    plans = json.loads(done.stdout)
    assert plans["inputs"]["deadline_s"] == 1800
    assert all(p["time_s"]["p90"] <= 1800 for p in plans["plans"])


def app_folder(root: Path) -> Path:
    folder = root / "app"
    for name in ("run.sh", "data/in.dat", "data/keep.png", "plot.png", "plans.json", "profile.json", "results/old.json", "src/model.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    return folder


def test_d2cignore_and_exclude_leave_files_behind(tmp_path):
    folder = app_folder(tmp_path)
    (folder / ".d2cignore").write_text("# the researcher's plots and d2c's own files\n*.png\n!data/keep.png\nresults/\n")
    copies = plan_copies([(folder, "/w")], patterns=("plans.json", "profile.json"))
    sent = sorted(c.remote for c in copies)
    assert sent == ["/w/.d2cignore", "/w/data/in.dat", "/w/data/keep.png", "/w/run.sh", "/w/src/model.py"]
    assert sorted(c.remote for c in plan_copies([(folder, "/w")]))[:3] == ["/w/.d2cignore", "/w/data/in.dat", "/w/data/keep.png"]


def test_exclude_pattern_is_checked_when_the_descriptor_loads(tmp_path):
    app_folder(tmp_path)
    (tmp_path / "d2c.yaml").write_text("name: demo\nroles:\n  - {name: master, image: app, command: ./run.sh}\nexclude: ['!']\n")
    with pytest.raises(UsageError, match=r"d2c.yaml: exclude\[0\]: '!' is not a gitignore pattern"):
        load_descriptor(tmp_path / "d2c.yaml")
    (tmp_path / "d2c.yaml").write_text("name: demo\nroles:\n  - {name: master, image: app, command: ./run.sh}\nexclude: '*.png'\n")
    done = d2c("check", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "exclude: must be a list" in done.stderr


def test_rehearsal_uploads_what_the_ignores_leave(tmp_path):
    folder = app_folder(tmp_path)
    (folder / "run.sh").write_text("#!/bin/sh\nmkdir -p out\nfind . -type f -not -path './.d2c/*' -not -path './out/*' | sort > out/files.txt\n")
    (folder / "run.sh").chmod(0o755)
    (folder / ".d2cignore").write_text("*.png\nresults/\n")
    (tmp_path / "d2c.yaml").write_text(
        "name: demo\nworkdir: d2c-work\nroles:\n  - {name: master, image: app, command: ./run.sh}\n"
        "outputs:\n  - {remote: out, local: fetched}\nexclude: [plans.json, profile.json]\n"
    )
    write_plans(tmp_path / "plans.json", "demo", [("master", 1, 1)])
    done = d2c("run", "--provider", "local", "--poll", "0.2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = (tmp_path / "fetched" / "files.txt").read_text().split()
    assert listed == ["./.d2cignore", "./data/in.dat", "./run.sh", "./src/model.py"]


def test_refresh_without_network_exits_1_and_names_the_fallback(tmp_path):
    env = {**__import__("os").environ, "D2C_PRICING_BULK_URL": "http://127.0.0.1:9"}
    done = d2c("catalog", "refresh", "--regions", "us-east-1", "--source", "bulk", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith("falling back to the catalog already here: on-demand prices from ") and "snapshot" in line for line in lines), done.stderr
    assert lines[-1].startswith("error: catalog not refreshed: ")
    assert "Traceback" not in done.stderr
    chained = subprocess.run(f"{sys.executable} -m d2c catalog refresh --regions us-east-1 --source bulk && echo planned",
                             shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "planned" not in chained.stdout, "refresh && recommend must not go on after a failed refresh"
    shown = json.loads(d2c("catalog", "show", "--region", "us-east-1", "--json", cwd=tmp_path, env=env).stdout)
    assert shown["offers"], "the fallback catalog is still there to use"
