"""Tampered and malformed inputs are refused before anything exists: exit 2, one line naming the field.

Each case edits a real plans.json (as written by planner.plans) or a descriptor, runs ``d2c run
--provider local`` as a user would, and checks what the user sees (exit code, the one line) and
what is left behind: no state folder at all (no journal, no run folder, no lock file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.executor import app_project, write_plans

APP = {"job.sh": "#!/bin/bash\nmkdir -p out\necho ran > out/ran.txt\n"}
DESCRIPTOR = "roles:\n  - {name: master, image: app, command: ./job.sh}\n  - {name: worker, image: app, count: auto, min: 1, max: 4}\noutputs:\n  - {remote: out, local: results}\n"


def d2c(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path) -> Path:
    project = app_project(tmp_path, "tamper", APP, DESCRIPTOR)
    write_plans(project / "plans.json", "tamper", [("master", 1, 1), ("worker", 2, 2)])
    return project


def _worker(raw: dict) -> dict:
    return raw["plans"][0]["roles"][1]


def _set(path, value):
    def edit(raw: dict) -> None:
        *parents, last = path
        target = raw
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


PLAN = ("plans", 0)
WORKER = ("plans", 0, "roles", 1)
TAMPERED = {
    "count above the role's max": (_set((*WORKER, "count"), 70), "allows 1 to 4"),
    "count 1.5": (_set((*WORKER, "count"), 1.5), "plans[0].roles[1].count: must be a whole number"),
    "count 10^12": (_set((*WORKER, "count"), 10**12), "plans[0].roles[1].count: must be between 1 and 1000"),
    "count 0": (_set((*WORKER, "count"), 0), "plans[0].roles[1].count: must be between 1 and 1000"),
    "count as text": (_set((*WORKER, "count"), "2"), "plans[0].roles[1].count: must be a whole number"),
    "price as text": (_set((*WORKER, "price_usd_h"), "0.1"), "plans[0].roles[1].price_usd_h: must be a number"),
    "price NaN": (_set((*WORKER, "price_usd_h"), float("nan")), "plans[0].roles[1].price_usd_h: nan is not a usable amount"),
    "price infinite": (_set((*WORKER, "price_usd_h"), float("inf")), "plans[0].roles[1].price_usd_h: inf is not a usable amount"),
    "price zero": (_set((*WORKER, "price_usd_h"), 0), "plans[0].roles[1].price_usd_h: 0 is not a usable amount"),
    "price negative": (_set((*WORKER, "price_usd_h"), -0.1), "plans[0].roles[1].price_usd_h: -0.1 is not a usable amount"),
    "market reserved": (_set((*WORKER, "market"), "reserved"), "plans[0].roles[1].market: 'reserved' is not one of on-demand, spot"),
    "workers_per_instance -4": (_set((*WORKER, "workers_per_instance"), -4), "plans[0].roles[1].workers_per_instance: must be between 0"),
    "workers_per_instance 0": (_set((*WORKER, "workers_per_instance"), 0), "gives role 'worker' 0 worker(s) per instance, but only a service role runs no ranks"),
    "unknown region": (_set((*PLAN, "region"), "moon-base-1"), "plans[0].region: 'moon-base-1' is not an AWS region code"),
    "role region differs": (_set((*WORKER, "region"), "eu-west-1"), "plans[0].roles[1].region: 'eu-west-1' differs from the plan's region"),
    "instance type with a space": (_set((*WORKER, "instance_type"), "t3.micro; rm -rf ~"), "plans[0].roles[1].instance_type"),
    "vcpus negative": (_set((*WORKER, "vcpus"), -2), "plans[0].roles[1].vcpus: must be between 1"),
    "memory NaN": (_set((*WORKER, "memory_gib"), float("nan")), "plans[0].roles[1].memory_gib"),
    "arch unknown": (_set((*WORKER, "arch"), "sparc"), "plans[0].roles[1].arch: 'sparc' is not one of x86_64, arm64"),
    "budget NaN": (_set(("inputs", "budget_usd"), float("nan")), "inputs.budget_usd: nan is not a usable amount"),
    "budget zero": (_set(("inputs", "budget_usd"), 0), "inputs.budget_usd: 0 is not a usable amount"),
    "budget as text": (_set(("inputs", "budget_usd"), "50"), "inputs.budget_usd: must be a number"),
    "deadline negative": (_set(("inputs", "deadline_s"), -5), "inputs.deadline_s: -5 is not a usable amount"),
    "scale zero": (_set(("inputs", "scale"), 0), "inputs.scale: 0 is not a usable amount"),
    "output_gb negative": (_set(("inputs", "output_gb"), -1), "inputs.output_gb: -1 is not a usable amount"),
    "market any-thing": (_set(("inputs", "market"), "cheap"), "inputs.market: 'cheap' is not one of"),
    "no roles": (_set((*PLAN, "roles"), []), "plans[0].roles: must be a non-empty list"),
    "roles not a list": (_set((*PLAN, "roles"), {"master": 1}), "plans[0].roles: must be a non-empty list"),
    "role missing its count": (lambda raw: _worker(raw).pop("count"), "plans[0].roles[1].count: missing"),
    "role is a number": (_set((*PLAN, "roles", 1), 7), "plans[0].roles[1]: must be a JSON object"),
    "time p90 below p50": (_set((*PLAN, "time_s"), {"p50": 100, "p90": 10}), "plans[0].time_s.p90: 10.0 is below p50 100.0"),
    "rank as text": (_set((*PLAN, "rank"), "1"), "plans[0].rank: must be a whole number"),
    "on_frontier as text": (_set((*PLAN, "on_frontier"), "yes"), "plans[0].on_frontier: must be true or false"),
    "master twice": (_set(("plans", 0, "roles", 0, "count"), 2), "gives role 'master' 2 host(s)"),
    "version 2": (_set(("version",), 2), "version 2 is not supported"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_plans_are_refused_before_anything_is_created(project, case):
    edit, expected = TAMPERED[case]
    path = project / "plans.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))  # NaN and Infinity are written as JSON's usual extensions
    result = d2c("run", "--provider", "local", cwd=project)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not Path(os.environ["D2C_HOME"]).exists(), "no journal, run folder or lock was created"
    assert not (project / "results").exists()


def test_plans_file_that_is_not_json_or_not_an_object(project):
    for text, expected in (("{", "not a valid plans file"), ("[1, 2]", "(top level): must be a JSON object"), ("", "not a valid plans file")):
        (project / "plans.json").write_text(text)
        result = d2c("run", "--provider", "local", cwd=project)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert not Path(os.environ["D2C_HOME"]).exists()


HOSTILE_DESCRIPTORS = {
    "workdir with a newline": ("workdir: \"d2c-work\\ntouch /tmp/owned\"\n", "workdir: 'd2c-work\\ntouch /tmp/owned' holds '\\n'"),
    "workdir with ;": ("workdir: 'work; rm -rf ~'\n", "workdir: 'work; rm -rf ~' holds ';'"),
    "workdir with $()": ("workdir: 'w$(id)'\n", "holds '$'"),
    "remote output with ;": ("outputs:\n  - {remote: 'out;id', local: results}\n", "outputs[0].remote: 'out;id' holds ';'"),
    "remote input with a quote": ("inputs:\n  - {remote: \"in'put\", local: app}\n", "inputs[0].remote"),
    "done_file with a backtick": ("done_file: 'done`id`'\n", "done_file: 'done`id`' holds '`'"),
    "user with a newline": (None, "roles[0].user"),
    "env name with a space": ("env: {'BAD NAME': x}\n", "env.BAD NAME: is not a variable name"),
    "env claims D2C_": ("env: {D2C_ROLE: master}\n", "env.D2C_ROLE: names starting with D2C_"),
    "env value a list": ("env: {A: [1, 2]}\n", "env.A: must be a string or a number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DESCRIPTORS))
def test_hostile_names_in_the_descriptor_are_refused(tmp_path, case):
    extra, expected = HOSTILE_DESCRIPTORS[case]
    if extra is None:
        tail = "roles:\n  - {name: master, image: app, command: ./job.sh, user: \"root\\nid\"}\n"
    else:
        tail = "roles:\n  - {name: master, image: app, command: ./job.sh}\n" + extra
    project = app_project(tmp_path, "hostile", APP, tail)
    if "workdir" in case:
        text = (project / "d2c.yaml").read_text().replace("workdir: d2c-work\n", "", 1)
        (project / "d2c.yaml").write_text(text)
    write_plans(project / "plans.json", "hostile", [("master", 1, 1)])
    result = d2c("run", "--provider", "local", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr, result.stderr
    assert not Path(os.environ["D2C_HOME"]).exists()


RUNS_CSV_CASES = {
    "10^20 workers": ("scale,workers,wall_s\n0.1,1,10\n0.1,1e20,5\n", "line 3: workers = 1e20 is above the largest plausible value"),
    "a century of wall time": ("scale,workers,wall_s\n0.1,1,10\n0.1,2,3.2e9\n", "line 3: wall_s = 3.2e9 is above"),
    "10^9 repeats": ("scale,workers,wall_s,repeat\n0.1,1,10,1\n0.1,2,5,1000000000\n", "line 3: repeat = 1000000000 is above"),
}


@pytest.mark.parametrize("case", sorted(RUNS_CSV_CASES))
def test_runs_csv_out_of_range_is_refused(tmp_path, case):
    text, expected = RUNS_CSV_CASES[case]
    (tmp_path / "runs.csv").write_text(text)
    result = d2c("profile", "import", "runs.csv", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert not (tmp_path / "profile.json").exists()
