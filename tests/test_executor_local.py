"""The rehearsal provider end to end through ``d2c run --provider local`` and the run commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor.journal import open_journal
from tests.fixtures.executor import app_project, write_plans


def d2c(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def only_run():
    runs = open_journal().runs()
    assert len(runs) == 1
    return runs[0]


def test_montecarlo_rehearsal_end_to_end(montecarlo_project):
    write_plans(montecarlo_project / "plans.json", "montecarlo", [("master", 1, 2)])
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=montecarlo_project)
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout

    answer = json.loads((montecarlo_project / "results" / "result.json").read_text())
    geometric = answer["geometric"]
    assert abs(geometric["estimate"] - geometric["exact"]) < 4 * geometric["stderr"]
    assert answer["workers"] == 2, "D2C_WORKER_COUNT is the plan's total workers"
    assert (montecarlo_project / "results" / "note.txt").read_text() == "inputs reach the hosts\n"

    run = only_run()
    assert run.state == "finished" and run.outcome == "succeeded"
    resources = open_journal().resources(run.run_id)
    assert resources and all(not r.live for r in resources), "the journal shows every host torn down"
    assert not (run.run_dir / "hosts" / "master-1").exists()

    report = json.loads(d2c("report", run.run_id, "--json", cwd=montecarlo_project).stdout)
    assert report["outcome"] == "succeeded" and report["simulated"] is True
    assert report["wall_s"] > 0 and 0 < report["cost_usd"] < 5.0
    assert report["instances"][0]["instance_type"] == "t3.micro"
    assert report["predicted"]["time_s"]["p50"] == 30.0

    logs = d2c("logs", run.run_id, "-f", cwd=montecarlo_project, timeout=20)
    assert logs.returncode == 0 and "asian call" in logs.stdout, "following a finished run prints its log and ends"
    history = d2c("status", run.run_id, cwd=montecarlo_project).stdout
    assert "fetched: fetched 1 of 1 output(s)" in history and "torn-down" in history
    status = json.loads(d2c("status", "--json", cwd=montecarlo_project).stdout)
    assert status["runs"][0]["live_resources"] == []


def test_plan_for_another_descriptor_is_refused(montecarlo_project):
    write_plans(montecarlo_project / "plans.json", "other-app", [("master", 1, 2)])
    result = d2c("run", "--provider", "local", cwd=montecarlo_project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "'other-app'" in result.stderr and "Traceback" not in result.stderr
    assert open_journal().runs() == []


def test_plan_with_unknown_role_is_refused(montecarlo_project):
    write_plans(montecarlo_project / "plans.json", "montecarlo", [("master", 1, 1), ("gpu", 2, 1)])
    result = d2c("run", "--provider", "local", cwd=montecarlo_project)
    assert result.returncode == 2 and "gpu" in result.stderr


CLUSTER_APP = {
    "report.sh": "#!/bin/bash\nmkdir -p out\nenv | grep '^D2C_' | sort > out/env.txt\ncp \"$D2C_HOSTS\" out/hosts\ncp \"$D2C_MPI_HOSTFILE\" out/hostfile\necho partial > out/partial.txt\necho about to fail\nexit 3\n",
}


def test_cluster_context_and_failing_master(tmp_path):
    project = app_project(
        tmp_path,
        "cluster",
        CLUSTER_APP,
        "roles:\n  - {name: master, image: app, command: ./report.sh}\n  - {name: worker, image: app, count: 2}\n"
        "outputs:\n  - {remote: out, local: results}\n",
    )
    write_plans(project / "plans.json", "cluster", [("master", 1, 1), ("worker", 2, 4)])
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=project)
    assert result.returncode == 1
    assert "exited with status 3" in result.stderr and result.stderr.startswith("error: ")

    env = dict(line.split("=", 1) for line in (project / "results" / "env.txt").read_text().split())
    assert env["D2C_ROLE"] == "master" and env["D2C_WORKER_COUNT"] == "9"
    hosts = (project / "results" / "hosts").read_text().splitlines()
    assert [line.split()[1:] for line in hosts] == [["master", "master-1", "1"], ["worker", "worker-1", "4"], ["worker", "worker-2", "4"]]
    assert (project / "results" / "hostfile").read_text() == "127.0.0.1 slots=9\n"

    run = only_run()
    assert "about to fail" in (run.run_dir / "logs" / "master.log").read_text()
    assert all(not r.live for r in open_journal().resources(run.run_id))
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["outcome"] == "failed" and report["exit_status"] == 3
    assert len(report["instances"]) == 3


def test_a_service_role_runs_its_command_and_gets_no_mpi_slots(tmp_path):
    mark = tmp_path / "io-mark"
    app = {**CLUSTER_APP, "io.sh": "#!/bin/bash\necho \"io ran as $D2C_ROLE\" > \"$IO_MARK\"\n"}
    project = app_project(
        tmp_path,
        "services",
        app,
        "roles:\n  - {name: master, image: app, command: ./report.sh}\n  - {name: worker, image: app, count: 2, profiled: true}\n"
        "  - {name: io, image: app, command: ./io.sh, memory_mb: 2048}\n"
        f"env: {{IO_MARK: '{mark}'}}\noutputs:\n  - {{remote: out, local: results}}\n",
    )
    write_plans(project / "plans.json", "services", [("master", 1, 1), ("worker", 2, 4), ("io", 1, 0)])
    result = d2c("run", "--provider", "local", "--poll", "0.2", cwd=project)
    assert "exited with status 3" in result.stderr, result.stderr
    env = dict(line.split("=", 1) for line in (project / "results" / "env.txt").read_text().split())
    assert env["D2C_WORKER_COUNT"] == "9", "the service host adds no ranks"
    hosts = (project / "results" / "hosts").read_text().splitlines()
    assert ["io", "io-1", "0"] in [line.split()[1:] for line in hosts]
    assert mark.read_text() == "io ran as io\n"

    write_plans(project / "plans.json", "services", [("master", 1, 1), ("worker", 2, 4), ("io", 1, 2)])
    slotted = d2c("run", "--provider", "local", cwd=project)
    assert slotted.returncode == 2 and "gives role 'io' 2 worker(s) per instance, but a service role runs no ranks" in slotted.stderr


def test_the_mpi_hostfile_leaves_out_hosts_without_slots():
    from executor.contextualize import hostfile_text
    from executor.providers.base import Machine

    def host(role: str, address: str, slots: int) -> Machine:
        return Machine("r1", f"i-{address}", role, f"{role}-1", "c5.large", "on-demand", 0.1, address, address, 0.0, "root", slots)

    machines = [host("master", "10.0.0.1", 2), host("worker", "10.0.0.2", 2), host("io", "10.0.0.3", 0)]
    assert hostfile_text(machines) == "10.0.0.1 slots=2\n10.0.0.2 slots=2\n"


SLOW_APP = {
    "slow.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 ${STEPS:-40}); do echo step $i >> out/progress.txt; echo step $i; sleep 0.1; done\necho finished > out/done.txt\n",
}


def _slow_project(tmp_path: Path, steps: int) -> Path:
    project = app_project(
        tmp_path,
        "slow",
        SLOW_APP,
        f"roles:\n  - {{name: master, image: app, command: STEPS={steps} ./slow.sh}}\noutputs:\n  - {{remote: out, local: results}}\n",
    )
    write_plans(project / "plans.json", "slow", [("master", 1, 1)])
    return project


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_state(state: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = open_journal().runs()
        if runs and runs[0].state == state:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"the run never reached {state}")


def test_resume_after_the_controller_is_killed(tmp_path):
    project = _slow_project(tmp_path, steps=30)
    controller = subprocess.Popen(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        run = _wait_for_state("running")
        assert "controller gone" not in d2c("status", cwd=project).stdout, "the controller still runs"
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert open_journal().run(run.run_id).state == "running"
    status = d2c("status", cwd=project)
    assert f"{run.run_id}: controller gone — 'd2c run --resume {run.run_id}' or 'd2c down {run.run_id}'" in status.stdout
    assert json.loads(d2c("status", "--json", cwd=project).stdout)["runs"][0]["controller"] == "gone"

    result = d2c("run", "--resume", run.run_id, "--poll", "0.2", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "results" / "done.txt").read_text() == "finished\n"
    lines = (run.run_dir / "logs" / "master.log").read_text().splitlines()
    assert lines == [f"step {i}" for i in range(1, 31)], "the streamed log has every line once"
    assert open_journal().run(run.run_id).outcome == "succeeded"


def _ctrl_c_as_at_a_shell() -> None:
    """A command a user starts from their shell has SIGINT at its default; one started in the
    background of a script inherits it ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_without_a_terminal_stops_the_run(tmp_path):
    project = _slow_project(tmp_path, steps=200)
    controller = subprocess.Popen(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_at_a_shell,
    )
    try:
        run = _wait_for_state("running")
        time.sleep(1.0)
        controller.send_signal(signal.SIGINT)
        _out, err = controller.communicate(timeout=30)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 1
    assert "interrupted by the user" in err
    partial = (project / "results" / "progress.txt").read_text().splitlines()
    assert 0 < len(partial) < 200
    assert not (project / "results" / "done.txt").exists()
    assert all(not r.live for r in open_journal().resources(run.run_id))
    assert not list((run.run_dir / "hosts").glob("*"))


def test_down_stops_a_detached_rehearsal(tmp_path):
    project = _slow_project(tmp_path, steps=300)
    controller = subprocess.Popen(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        run = _wait_for_state("running")
        controller.send_signal(signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        if controller.poll() is None:
            controller.kill()
    pid_file = run.run_dir / "hosts" / "master-1" / "d2c-work" / ".d2c" / "master.pid"
    app_pid = int(pid_file.read_text())
    # A pid file whose number now belongs to someone else's program (pids are reused).
    unrelated = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    try:
        (pid_file.parent / "stale.pid").write_text(f"{unrelated.pid}\n")
        result = d2c("down", "--all", cwd=project)
        assert result.returncode == 0, result.stderr
        assert "nothing of the run is left" in result.stdout
        assert not _alive(app_pid), "the app's process was killed"
        assert unrelated.poll() is None, "a process that is not the run's survives 'd2c down'"
    finally:
        unrelated.kill()
        unrelated.wait()
    assert open_journal().run(run.run_id).state == "finished"
    assert d2c("down", cwd=project).returncode == 2


def test_interrupt_at_a_terminal_can_detach_and_resume(tmp_path):
    import pty

    project = _slow_project(tmp_path, steps=40)
    leader, follower = pty.openpty()
    controller = subprocess.Popen(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--poll", "0.2"],
        cwd=project, stdin=follower, stdout=follower, stderr=follower, preexec_fn=_ctrl_c_as_at_a_shell,
    )
    os.close(follower)
    screen = b""
    try:
        run = _wait_for_state("running")
        controller.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while b"(detach)" not in screen and time.monotonic() < deadline:
            try:
                screen += os.read(leader, 4096)
            except OSError:  # the controller closed the terminal: it ended without asking
                break
        assert b"(detach)" in screen, screen.decode(errors="replace")
        os.write(leader, b"detach\n")
        assert controller.wait(timeout=20) == 0
    finally:
        if controller.poll() is None:
            controller.kill()
        os.close(leader)
    assert b"Keep the run going" in screen
    assert open_journal().run(run.run_id).state == "running", "detached: the run goes on"
    result = d2c("run", "--resume", run.run_id, "--poll", "0.2", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "results" / "done.txt").read_text() == "finished\n"


def _interrupted_as_the_master_starts(tmp_path: Path, answer):
    """A run whose controller gets Ctrl-C right after the master starts, before it watches the
    master, and answers the detach question with ``answer()``."""
    from executor.orchestrator import Orchestrator, RunSettings
    from executor.providers.local import LocalProvider
    from executor.run_types import RecordingUI
    from d2c.descriptor import load_descriptor
    from planner.plans import load_plans

    class CtrlC(RecordingUI):
        def note(self, message: str) -> None:
            super().note(message)
            if message.startswith("the master command is running"):
                raise KeyboardInterrupt

        def interrupted(self) -> str:
            return answer()

    project = _slow_project(tmp_path, steps=30)
    planset = load_plans(project / "plans.json")
    orchestrator = Orchestrator(open_journal(), LocalProvider(), ui=CtrlC(), settings=RunSettings(poll_s=0.1, reserve_s=60))
    return project, orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=project / "plans.json")


def test_ctrl_c_as_the_master_starts_asks_and_detaching_leaves_it_running(tmp_path):
    project, result = _interrupted_as_the_master_starts(tmp_path, lambda: "detach")
    assert result.outcome == "detached", result.message
    assert open_journal().run(result.run_id).state == "running"
    resumed = d2c("run", "--resume", result.run_id, "--poll", "0.2", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert (project / "results" / "done.txt").read_text() == "finished\n"


def test_a_second_ctrl_c_at_the_question_stops_and_tears_down(tmp_path):
    def second_ctrl_c():
        raise KeyboardInterrupt

    _project, result = _interrupted_as_the_master_starts(tmp_path, second_ctrl_c)
    assert result.outcome == "stopped" and "interrupted by the user" in result.message
    assert all(not r.live for r in open_journal().resources(result.run_id)), "the teardown ran"


def test_aws_run_without_credentials_is_bad_input(montecarlo_project, monkeypatch, tmp_path):
    write_plans(montecarlo_project / "plans.json", "montecarlo", [("master", 1, 2)])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = d2c("run", "--yes", cwd=montecarlo_project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no AWS credentials found") and "--provider local" in result.stderr
    assert open_journal().runs() == []


SPOT_APP = {
    "master.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 1 40); do sleep 0.1; done\ncp \"$D2C_HOSTS\" out/hosts\n",
    "worker.sh": "#!/bin/bash\nsleep 60\n",
}


def _spot_run(tmp_path: Path, *, budget: float, price: float, time_p50: float):
    import shutil
    import threading

    from d2c.descriptor import load_descriptor
    from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
    from executor.providers.local import LocalProvider
    from planner.plans import load_plans

    project = app_project(
        tmp_path,
        "spot",
        SPOT_APP,
        "roles:\n  - {name: master, image: app, command: ./master.sh}\n  - {name: worker, image: app, command: ./worker.sh, count: 1}\n"
        "outputs:\n  - {remote: out, local: results}\n",
    )
    plans_path = write_plans(
        project / "plans.json", "spot", [("master", 1, 1), ("worker", 1, 2)], market="spot", budget_usd=budget, price_usd_h=price, time_p50=time_p50
    )

    class InterruptingUI(RecordingUI):
        def note(self, message: str) -> None:
            super().note(message)
            if message.startswith("the master command is running"):
                threading.Timer(0.3, interrupt).start()

    def interrupt() -> None:
        worker = open_journal().runs()[0].run_dir / "hosts" / "worker-1"
        os.killpg(int((worker / "d2c-work" / ".d2c" / "worker.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(worker)

    ui = InterruptingUI()
    planset = load_plans(plans_path)
    orchestrator = Orchestrator(open_journal(), LocalProvider(), ui=ui, settings=RunSettings(poll_s=0.1, states_every_s=0.3, reserve_s=60))
    result = orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=plans_path)
    return project, result, ui


def test_interrupted_spot_worker_is_replaced_while_the_budget_allows(tmp_path):
    project, result, ui = _spot_run(tmp_path, budget=5.0, price=0.1, time_p50=30)
    assert result.outcome == "succeeded", result.message
    assert any("worker-1" in note and "were interrupted; launching replacements" in note for note in ui.notes)
    assert "worker-2 joined the run in place of worker-1" in ui.notes
    hosts = (project / "results" / "hosts").read_text().splitlines()
    assert [line.split()[2] for line in hosts] == ["master-1", "worker-2"], "the cluster was told about the replacement"
    report = json.loads(result.report_path.read_text())
    assert sorted(i["name"] for i in report["instances"]) == ["master-1", "worker-1", "worker-2"], "the lost host's cost still counts"
    assert all(not r.live for r in open_journal().resources(result.run_id))


def test_interrupted_spot_worker_is_not_replaced_past_the_budget(tmp_path):
    project, result, ui = _spot_run(tmp_path, budget=1.0, price=1.0, time_p50=2400)
    assert result.outcome == "failed"
    assert "replacing them would bring the run to about $2." in result.message and "of the $1.00 budget, so it stops" in result.message
    assert not any("joined the run" in note for note in ui.notes)
    assert all(not r.live for r in open_journal().resources(result.run_id))


def _two_plans(project: Path) -> Path:
    from dataclasses import replace

    from planner.plans import load_plans

    path = write_plans(project / "plans.json", "montecarlo", [("master", 1, 2)])
    planset = load_plans(path)
    first = planset.plan(1)
    second = replace(first, rank=2, roles=tuple(replace(a, instance_type="c5.large") for a in first.roles))
    replace(planset, plans=(first, second)).save(path)
    return path


@pytest.mark.parametrize("allowed", [True, False])
def test_next_plan_only_when_capacity_lacks_and_the_user_allows(montecarlo_project, allowed):
    """The cloud's "no capacity" is stood in for by a rehearsal provider refusing one instance type
    (EC2's own error responses are checked in test_executor_parts with botocore's Stubber)."""
    from d2c.descriptor import load_descriptor
    from executor.orchestrator import Orchestrator, RecordingUI, RunSettings, start_with_fallback
    from executor.providers.base import CapacityError
    from executor.providers.local import LocalProvider
    from planner.plans import load_plans

    class NoT3Capacity(LocalProvider):
        def provision(self, request, journal):
            if any(a.instance_type == "t3.micro" for a in request.allocations):
                raise CapacityError("launching 1 x t3.micro: AWS has no spare capacity for t3.micro in us-east-1 right now")
            return super().provision(request, journal)

    plans_path = _two_plans(montecarlo_project)
    planset = load_plans(plans_path)
    ui = RecordingUI()
    orchestrator = Orchestrator(open_journal(), NoT3Capacity(), ui=ui, settings=RunSettings(poll_s=0.2))
    result = start_with_fallback(
        orchestrator,
        load_descriptor(montecarlo_project / "d2c.yaml"),
        planset,
        planset.plan(1),
        plans_path=plans_path,
        provider_for=lambda plan: NoT3Capacity(),
        fallback=allowed,
    )
    runs = open_journal().runs()
    assert runs[0].outcome == "failed" and "no spare capacity" in runs[0].message
    if allowed:
        assert result.outcome == "succeeded" and [r.plan_rank for r in runs] == [1, 2]
        assert any("trying plan 2" in note for note in ui.notes)
        assert (montecarlo_project / "results" / "result.json").is_file()
    else:
        assert result.outcome == "failed" and result.capacity_error and len(runs) == 1
