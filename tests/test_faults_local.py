"""Faults and hostile apps on the rehearsal provider: what the user sees, and what is left behind.

Every run here is real: the local provider's hosts are folders, the app's processes are real
processes started detached, and outputs are fetched by executor.fetch. A kill "at a state" is a
controller that dies (an exception no handler catches, as SIGKILL leaves no handler to run) the
moment it has journaled that state; ``d2c run --resume`` then picks the run up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
from executor.providers.local import LocalProvider
from planner.plans import load_plans
from tests.fixtures.executor import app_project, write_plans

FAST = RunSettings(poll_s=0.1, states_every_s=0.3, reserve_s=60)

HOSTILE_APP = {
    "hostile.sh": (
        "#!/bin/bash\n"
        "mkdir -p out/sub\n"
        "echo real > out/sub/real.txt\n"
        "ln -s ../.. out/parent_link\n"
        "ln -s /etc/ssh out/etcssh_link\n"
        "ln -s / out/root_link\n"
        "ln -s nowhere out/dangling\n"
        "ln -s loop_b out/loop_a\n"
        "ln -s loop_a out/loop_b\n"
        "ln -s sub/real.txt out/inside_link\n"
        "ln -s ../../x out/sub/escape\n"
        "mkfifo out/fifo\n"
        "env > out/env.txt\n"
    ),
}


def d2c(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_hostile_links_never_bring_anything_from_outside_and_the_app_sees_no_secrets(tmp_path):
    project = app_project(
        tmp_path,
        "hostile",
        HOSTILE_APP,
        "roles:\n  - {name: master, image: app, command: ./hostile.sh}\noutputs:\n  - {remote: out, local: results}\nenv: {GREETING: hello there}\n",
    )
    write_plans(project / "plans.json", "hostile", [("master", 1, 1)])
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", AWS_SESSION_TOKEN="token-from-the-desktop")
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=project, env=env)
    assert result.returncode == 0, result.stderr

    results = project / "results"
    assert (results / "sub" / "real.txt").read_text() == "real\n"
    for name in ("parent_link", "etcssh_link", "root_link", "fifo"):
        assert not os.path.lexists(results / name), f"{name} was not brought back"
    assert not os.path.lexists(results / "sub" / "escape")
    assert os.readlink(results / "inside_link") == "sub/real.txt" and (results / "inside_link").read_text() == "real\n"
    assert os.readlink(results / "dangling") == "nowhere", "a dangling link inside survives as a link"
    assert os.readlink(results / "loop_a") == "loop_b" and os.readlink(results / "loop_b") == "loop_a"
    everything = sorted(os.path.relpath(os.path.join(folder, name), results) for folder, dirs, files in os.walk(results) for name in dirs + files)
    assert everything == ["dangling", "env.txt", "inside_link", "loop_a", "loop_b", "sub", "sub/real.txt"], everything

    seen = dict(line.split("=", 1) for line in (results / "env.txt").read_text().splitlines() if "=" in line)
    assert "AWS_SECRET_ACCESS_KEY" not in seen and "AWS_SESSION_TOKEN" not in seen, "the controller's secrets never reach the app"
    assert seen["GREETING"] == "hello there" and seen["D2C_ROLE"] == "master", "the descriptor's env: and the cluster's variables do"
    assert set(seen) <= {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "OLDPWD", "_", "GREETING"} | {k for k in seen if k.startswith("D2C_")}

    [run] = open_journal().runs()
    report = json.loads((run.run_dir / "report.json").read_text())
    skipped = report["outputs"][0]["skipped"]
    assert len(skipped) == 5 and any("parent_link: a link to '../..', outside the output folder" in s for s in skipped)
    assert "not fetched: out/etcssh_link: a link to '/etc/ssh'" in result.stdout, "the user is told, in the report lines too"

    state = Path(os.environ["D2C_HOME"])
    for folder in (state, state / "runs", run.run_dir, run.run_dir / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for private in (state / "journal.sqlite", run.run_dir / "report.json", run.run_dir / "logs" / "master.log", state / "run.lock"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_the_output_itself_being_a_link_out_is_skipped(tmp_path):
    project = app_project(
        tmp_path,
        "outlink",
        {"job.sh": "#!/bin/bash\nln -s / out\n"},
        "roles:\n  - {name: master, image: app, command: ./job.sh}\noutputs:\n  - {remote: out, local: results}\n",
    )
    write_plans(project / "plans.json", "outlink", [("master", 1, 1)])
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=project)
    assert result.returncode == 0, result.stderr
    assert not (project / "results").exists()
    assert "not fetched: out: a link (to '/'); outputs are never fetched through links" in result.stdout


SLOW_APP = {"slow.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 ${STEPS:-30}); do echo step $i; sleep 0.1; done\necho $D2C_RUN > out/who.txt\n"}


def _slow_project(tmp_path: Path, steps: int = 30) -> Path:
    project = app_project(
        tmp_path, "slow", SLOW_APP, f"roles:\n  - {{name: master, image: app, command: STEPS={steps} ./slow.sh}}\noutputs:\n  - {{remote: out, local: results}}\n"
    )
    write_plans(project / "plans.json", "slow", [("master", 1, 1)])
    return project


def _wait_for_state(state: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = open_journal(read_only=True).runs()
        if runs and runs[0].state == state:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"the run never reached {state}")


def test_a_second_run_is_refused_naming_the_live_one_and_concurrent_runs_keep_their_own_outputs(tmp_path):
    project = _slow_project(tmp_path, steps=40)
    first = subprocess.Popen([sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        live = _wait_for_state("running")
        second = d2c("run", "--provider", "local", cwd=project)
        assert second.returncode == 2
        assert second.stderr.startswith(f"error: run {live.run_id} is running in this project (pid {first.pid})"), second.stderr
        assert "--allow-concurrent" in second.stderr
        assert len(open_journal(read_only=True).runs()) == 1, "the refused run left no trace"

        beside = d2c("run", "--provider", "local", "--poll", "0.2", "--allow-concurrent", cwd=project)
        assert beside.returncode == 0, beside.stderr
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    runs = open_journal().runs()
    other = next(r for r in runs if r.run_id != live.run_id)
    assert (project / "results" / "who.txt").read_text() == f"{live.run_id}\n", "the first run's outputs are its own"
    assert (project / "results" / other.run_id / "who.txt").read_text() == f"{other.run_id}\n", "the concurrent run's went to results/RUN/"
    assert all(r.outcome == "succeeded" for r in runs)


def test_a_run_whose_controller_died_blocks_a_new_run_until_resumed_or_downed(tmp_path):
    project = _slow_project(tmp_path, steps=20)
    controller = subprocess.Popen([sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = _wait_for_state("running")
    controller.send_signal(signal.SIGKILL)
    controller.wait(timeout=10)
    refused = d2c("run", "--provider", "local", cwd=project)
    assert refused.returncode == 2
    assert f"run {run.run_id} is still active in this project (its controller is gone); follow it with 'd2c run --resume {run.run_id}'" in refused.stderr
    resumed = d2c("run", "--resume", run.run_id, "--poll", "0.2", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert d2c("run", "--provider", "local", "--poll", "0.2", cwd=project).returncode == 0, "once it finished, the next run may start"


class Killed(BaseException):
    """The controller dying on the spot: no handler of the orchestrator catches it."""


class DiesAt(Orchestrator):
    """An orchestrator that dies right after journaling ``state`` (once)."""

    def __init__(self, *args, state: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.die_at = state

    def _state(self, run, state):
        super()._state(run, state)
        if state == self.die_at:
            raise Killed(state)


class DiesMidProvisioning(LocalProvider):
    """Launches the first host of the plan, journals it, and dies before the others."""

    def provision(self, request, journal):
        from dataclasses import replace

        first = replace(request, allocations=(replace(request.allocations[0], count=1),))
        super().provision(first, journal)
        raise Killed("provisioning")


CLUSTER_APP = {
    "master.sh": "#!/bin/bash\nmkdir -p out\nsleep 1\ncp \"$D2C_HOSTS\" out/hosts\necho done > out/done.txt\n",
    "worker.sh": "#!/bin/bash\nsleep 30\n",
}


def _cluster(tmp_path: Path) -> Path:
    project = app_project(
        tmp_path,
        "cluster",
        CLUSTER_APP,
        "roles:\n  - {name: master, image: app, command: ./master.sh}\n  - {name: worker, image: app, command: ./worker.sh, count: 2}\n"
        "outputs:\n  - {remote: out, local: results}\n",
    )
    write_plans(project / "plans.json", "cluster", [("master", 1, 1), ("worker", 2, 1)])
    return project


@pytest.mark.parametrize("state", ["created", "provisioning-half", "provisioning", "provisioned", "uploaded", "running", "fetching", "tearing_down"])
def test_resume_after_the_controller_dies_at_any_state_finishes_and_leaves_nothing(tmp_path, state):
    import psutil

    project = _cluster(tmp_path)
    planset = load_plans(project / "plans.json")
    descriptor = load_descriptor(project / "d2c.yaml")
    provider = DiesMidProvisioning() if state == "provisioning-half" else LocalProvider()
    dying = DiesAt(open_journal(), provider, ui=RecordingUI(), settings=FAST, state=state)
    with pytest.raises(Killed):
        if state == "created":
            # Dead between journaling the new run and its first step.
            original = dying._advance
            dying._advance = lambda run: (_ for _ in ()).throw(Killed("created"))
            dying.start(descriptor, planset, planset.plan(1), plans_path=project / "plans.json")
            dying._advance = original
        else:
            dying.start(descriptor, planset, planset.plan(1), plans_path=project / "plans.json")
    [run] = open_journal().runs()
    assert run.active

    result = Orchestrator(open_journal(), LocalProvider(), ui=RecordingUI(), settings=FAST).resume(run.run_id, descriptor, planset.plan(1))
    assert result.outcome == "succeeded", result.message
    assert (project / "results" / "done.txt").read_text() == "done\n"
    names = [line.split()[2] for line in (project / "results" / "hosts").read_text().splitlines()]
    assert names == ["master-1", "worker-1", "worker-2"], names
    assert result.report_path is not None and result.report_path.is_file()
    journal = open_journal()
    assert journal.run(run.run_id).state == "finished"
    assert all(not r.live for r in journal.resources(run.run_id)), "every host is torn down"
    assert not (run.run_dir / "hosts").exists() or not list((run.run_dir / "hosts").iterdir())
    hosts = str(run.run_dir / "hosts")
    assert not [p for p in psutil.process_iter(["cwd"]) if (p.info["cwd"] or "").startswith(hosts)], "no app process is left"


class BrokenStates(LocalProvider):
    """A provider with a bug that shows only while the app runs."""

    def states(self, run_id, journal):
        if open_journal().run(run_id).state == "running":
            raise RuntimeError("a bug in the provider")
        return super().states(run_id, journal)


def test_a_bug_mid_run_still_fetches_tears_down_and_reports(tmp_path):
    project = _slow_project(tmp_path, steps=100)
    planset = load_plans(project / "plans.json")
    orchestrator = Orchestrator(open_journal(), BrokenStates(), ui=RecordingUI(), settings=FAST)
    started = time.monotonic()
    result = orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=project / "plans.json")
    assert time.monotonic() - started < 8, "the run stopped at the bug, not at the app's end"
    assert result.outcome == "failed" and result.exit_code == 1
    assert result.message == "internal error: RuntimeError: a bug in the provider"
    report = json.loads(result.report_path.read_text())
    assert report["outcome"] == "failed" and report["instances"][0]["cost_usd"] > 0
    assert all(not r.live for r in open_journal().resources(result.run_id))
    pid_file = open_journal().run(result.run_id).run_dir / "hosts"
    assert not pid_file.exists() or not list(pid_file.iterdir())


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the state folder needs root (CI runs the tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_state(tmp_path, monkeypatch):
    """D2C_HOME on an 8 MB tmpfs, unmounted afterwards."""
    state = tmp_path / "small-state"
    _mount_tmpfs(state, "8m")
    monkeypatch.setenv("D2C_HOME", str(state))
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


FILLING_APP = {
    "fill.sh": "#!/bin/bash\nmkdir -p out\necho before > out/before.txt\nfor i in $(seq 1 20); do echo line $i; sleep 0.05; done\n"
    "dd if=/dev/zero of=filler bs=64k 2>/dev/null\nfor i in $(seq 1 300); do echo more $i; sleep 0.1; done\n",
}


def test_a_full_state_disk_mid_run_still_tears_down_and_status_and_down_work_on_it(tmp_path, small_state):
    import psutil

    project = app_project(tmp_path, "fill", FILLING_APP, "roles:\n  - {name: master, image: app, command: ./fill.sh}\noutputs:\n  - {remote: out, local: results}\n")
    write_plans(project / "plans.json", "fill", [("master", 1, 1)])
    started = time.monotonic()
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=project, timeout=90)
    assert time.monotonic() - started < 40, "the run stopped at the full disk, not at the app's end"
    assert result.returncode == 1, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "No space left on device" in line or "database or disk is full" in line, line
    assert "Traceback" not in result.stderr
    assert (project / "results" / "before.txt").read_text() == "before\n", "outputs were still fetched"
    run = open_journal(read_only=True).runs()[0]
    assert not [p for p in psutil.process_iter(["cwd"]) if (p.info["cwd"] or "").startswith(str(run.run_dir))], "the app was killed"
    assert not (run.run_dir / "hosts" / "master-1").exists(), "its host folder was removed"

    # Now the disk is full for everyone: status and down still answer.
    filler = small_state / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    assert shutil.disk_usage(small_state).free < 64 * 1024
    status = d2c("status", cwd=project)
    assert status.returncode == 0, status.stderr
    assert run.run_id in status.stdout
    assert json.loads(d2c("status", "--json", cwd=project).stdout)["runs"][0]["run_id"] == run.run_id
    down = d2c("down", "--all", cwd=project)
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr


def test_down_stops_a_run_left_behind_on_a_full_disk(tmp_path, small_state):
    project = _slow_project(tmp_path, steps=600)
    controller = subprocess.Popen([sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = _wait_for_state("running")
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        if controller.poll() is None:
            controller.kill()
    app_pid = int((run.run_dir / "hosts" / "master-1" / "d2c-work" / ".d2c" / "master.pid").read_text())
    assert _alive(app_pid)
    subprocess.run(["dd", "if=/dev/zero", f"of={small_state / 'filler'}", "bs=4k"], capture_output=True)
    assert shutil.disk_usage(small_state).free < 8 * 1024

    status = d2c("status", cwd=project)
    assert status.returncode == 0 and f"{run.run_id}: controller gone" in status.stdout, status.stderr
    down = d2c("down", run.run_id, cwd=project)
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr
    assert f"{run.run_id}: removed rehearsal host master-1" in down.stdout
    assert not _alive(app_pid), "the app was stopped although the disk is full"
    (small_state / "filler").unlink()
    again = d2c("down", run.run_id, cwd=project)
    assert again.returncode == 0 and "nothing of the run is left" in again.stdout
    assert open_journal(read_only=True).run(run.run_id).state == "finished"


@pytest.mark.parametrize(
    "link, target, inside",
    [
        ("a", "b", True),
        ("sub/a", "../b", True),
        ("sub/a", "../../b", False),
        ("a", "..", False),
        ("a", "/etc/ssh", False),
        ("a", "/", False),
        ("sub/deeper/a", "../../x/../y", True),
        ("sub/a", "x/../../../y", False),
        ("a", "a", True),
        ("a", "", False),
    ],
)
def test_which_links_stay_inside_the_output_folder(link, target, inside):
    from executor.fetch import link_stays_inside

    assert link_stays_inside(link, target) is inside


def test_a_read_only_journal_never_creates_or_writes(tmp_path):
    from executor.journal import Journal, JournalWriteError

    path = tmp_path / "state" / "journal.sqlite"
    empty = Journal(path, read_only=True)
    assert empty.runs() == [] and not (tmp_path / "state").exists()
    Journal(path).event("run-1", "created", "a first event")
    before = path.stat().st_mtime_ns
    journal = Journal(path, read_only=True)
    assert [e.message for e in journal.events("run-1")] == ["a first event"]
    with pytest.raises(JournalWriteError):
        journal.event("run-1", "more", "refused")
    Journal(path)  # opening an up-to-date journal for writing writes nothing either
    assert path.stat().st_mtime_ns == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
