"""Faults and hostile apps on the stand-in cloud: moto's server plus one sshd per instance in its own
network namespace (tests/fixtures/hypervisor.py). Run under ``flock /tmp/d2c-netns.lock``.

What is checked is what the user sees: the exit code and line, the outputs, and that moto holds
nothing of the run afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from executor.journal import open_journal
from executor.orchestrator import RunSettings
from tests.fixtures.executor import app_project, sigkill_when, write_plans
from tests.sshd_server import generate_keypair
from tests.test_executor_aws import NOTHING, NotingUI, _orchestrator, _start, leftovers

pytestmark = pytest.mark.integration

APP = {
    "job.sh": "#!/bin/bash\nmkdir -p out\ncat \"$D2C_HOSTS\" > out/hosts\necho result 42 > out/answer.txt\n",
    "hostile.sh": (
        "#!/bin/bash\nmkdir -p out/sub\necho real > out/sub/real.txt\n"
        "ln -s ../.. out/parent_link\nln -s /etc/ssh out/etcssh_link\nln -s / out/root_link\n"
        "ln -s ~/.ssh out/dotssh_link\nln -s nowhere out/dangling\nln -s loop_b out/loop_a\nln -s loop_a out/loop_b\n"
        "ln -s sub/real.txt out/inside_link\n"
    ),
    "hang.sh": "#!/bin/bash\nmkdir -p out\necho started > out/started.txt\nsleep 60\n",
}


def _project(tmp_path: Path, command: str, roles: list[tuple[str, int, int]]) -> Path:
    lines = "".join(f"  - {{name: {name}, image: app, user: root, count: {count}{', command: ' + command if name == 'master' else ''}}}\n" for name, count, _w in roles)
    project = app_project(tmp_path, "faults", APP, "roles:\n" + lines + "outputs:\n  - {remote: out, local: results}\n")
    write_plans(project / "plans.json", "faults", roles, budget_usd=5.0)
    return project


def _cli(hypervisor) -> list[str]:
    return ["--connect", "private", "--subnet", hypervisor.subnet_id, "--ssh-from", f"{hypervisor.gateway}/32", "--poll", "0.2"]


def test_sigkill_while_provisioning_then_resume_finishes_and_leaves_nothing(hypervisor, tmp_path):
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 2, 1)])
    controller = subprocess.Popen([sys.executable, "-m", "d2c", "run", "--yes", *_cli(hypervisor)], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def launched():
        journal = open_journal(read_only=True)
        return [r for r in journal.runs() if r.state == "provisioning" and len(journal.resources(r.run_id, "instance")) == 3]

    runs = sigkill_when(controller, launched, never="the run never launched its instances", poll_s=0.02)
    run_id = runs[0].run_id
    first_attempt = {r.resource_id for r in open_journal().resources(run_id, "instance")}
    assert open_journal().run(run_id).state == "provisioning"
    assert len(set(leftovers(run_id)["instances"]) & first_attempt) == 3, "the killed attempt's instances are still up"

    resumed = subprocess.run([sys.executable, "-m", "d2c", "run", "--resume", run_id, *_cli(hypervisor)], cwd=project, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and "internal error" not in resumed.stderr
    assert "a previous attempt stopped while provisioning; removing what it launched" in resumed.stdout
    assert (project / "results" / "answer.txt").read_text() == "result 42\n"
    assert len((project / "results" / "hosts").read_text().splitlines()) == 3
    assert leftovers(run_id) == NOTHING, "both attempts' instances, key pairs and groups are gone"
    assert hypervisor.wait_for(lambda: not hypervisor.hosts)
    report = json.loads((open_journal().run(run_id).run_dir / "report.json").read_text())
    assert report["outcome"] == "succeeded"
    assert first_attempt <= {i["instance_id"] for i in report["instances"]}, "the killed attempt's hosts are billed in the report too"


def test_links_in_the_outputs_never_bring_back_the_home_the_run_key_or_host_keys(hypervisor, tmp_path):
    project = _project(tmp_path, "./hostile.sh", [("master", 1, 1)])
    result = _start(_orchestrator(hypervisor), project)
    assert result.outcome == "succeeded", result.message
    results = project / "results"
    found = sorted(os.path.relpath(os.path.join(folder, name), results) for folder, dirs, files in os.walk(results) for name in dirs + files)
    assert found == ["dangling", "inside_link", "loop_a", "loop_b", "sub", "sub/real.txt"], found
    assert os.readlink(results / "dangling") == "nowhere" and os.readlink(results / "inside_link") == "sub/real.txt"
    for folder, _dirs, files in os.walk(results):
        for name in files:
            if Path(folder, name).is_symlink():
                continue
            text = Path(folder, name).read_bytes()
            assert b"PRIVATE KEY" not in text, f"{name} holds key material"
    skipped = json.loads(result.report_path.read_text())["outputs"][0]["skipped"]
    assert {s.split(":")[0] for s in skipped} == {"out/parent_link", "out/etcssh_link", "out/root_link", "out/dotssh_link"}
    assert leftovers(result.run_id) == NOTHING


def test_a_changed_host_key_mid_run_stops_at_once_and_tears_down(hypervisor, tmp_path):
    project = _project(tmp_path, "./hang.sh", [("master", 1, 1)])

    def impostor(message: str) -> None:
        if message.startswith("the master command is running"):
            [host] = hypervisor.hosts.values()

            def swap() -> None:
                host.server.stop()
                for path in (host.server.host_key_path, host.server.host_key_path.with_name(host.server.host_key_path.name + ".pub")):
                    path.unlink()
                generate_keypair(host.server.host_key_path)
                host.server.start()

            threading.Timer(0.3, swap).start()

    settings = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60, unreachable_s=300.0)
    started = time.monotonic()
    result = _start(_orchestrator(hypervisor, NotingUI(impostor), settings), project)
    assert time.monotonic() - started < 40, "stopped at once, not after the 300 s allowed for a network blip"
    assert result.outcome == "failed"
    assert "has changed" in result.message and "connection refused" in result.message and "This may be an attack" in result.message
    assert not (project / "results").exists(), "nothing is fetched from an impostor"
    assert leftovers(result.run_id) == NOTHING


def test_a_failed_set_up_command_never_shows_the_key_it_carried(ssh_host):
    """The run's private key travels inside set-up scripts; a failure names the script, not its text."""
    from d2c.errors import HostError

    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(HostError) as caught:
        ssh_host.run(f"printf %s '{secret}' > ~/.ssh/id_d2c", cwd="/no/such/folder", timeout=30)
    assert "PRIVATE KEY" not in str(caught.value) and "b3BlbnNzaC1rZXkt" not in str(caught.value)
    assert "cannot start a set-up script" in str(caught.value)


class _ExpiredCredentials:
    """EC2 answering every call the way AWS answers an expired session token, while ``on``.

    The answer is EC2's documented error response (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html:
    ``ExpiredToken``, "The security token included in the request is expired"), returned to botocore
    before the request leaves, so that botocore parses and raises it as it would from AWS.
    """

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>ExpiredToken</Code>'
            b"<Message>The security token included in the request is expired</Message></Error></Errors>"
            b"<RequestID>6c6f3d3e-0000-4000-8000-000000000000</RequestID></Response>")

    def __init__(self, ec2):
        self.on = False
        self.refused: list[str] = []
        ec2.meta.events.register("before-send.ec2", self._answer)

    def _answer(self, request, **_):
        from botocore.awsrequest import AWSResponse

        if not self.on:
            return None
        self.refused.append(request.url)
        body = self.BODY
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, type("Raw", (), {"stream": lambda self, **_: iter([body])})())


EXPIRING_APP = {"slow.sh": "#!/bin/bash\nmkdir -p out\nsleep 5\necho done > out/answer.txt\n"}


def _run_while_credentials_expire(hypervisor, tmp_path: Path, renewed_after_s: float | None):
    """A run whose EC2 credentials expire as the master command starts, renewed after ``renewed_after_s`` (None: never)."""
    project = app_project(tmp_path, "expiring", EXPIRING_APP,
                          "roles:\n  - {name: master, image: app, user: root, count: 1, command: ./slow.sh}\noutputs:\n  - {remote: out, local: results}\n")
    write_plans(project / "plans.json", "expiring", [("master", 1, 1)], budget_usd=5.0)
    expired: list[_ExpiredCredentials] = []

    def expire(message: str) -> None:
        if message.startswith("the master command is running"):
            expired[0].on = True
            if renewed_after_s is not None:
                threading.Timer(renewed_after_s, lambda: setattr(expired[0], "on", False)).start()

    ui = NotingUI(expire)
    orchestrator = _orchestrator(hypervisor, ui)
    expired.append(_ExpiredCredentials(orchestrator.provider.ec2))
    return _start(orchestrator, project), project, expired[0], ui


def test_credentials_that_expire_mid_run_leave_the_app_running_and_are_picked_up_again(hypervisor, tmp_path):
    result, project, expired, ui = _run_while_credentials_expire(hypervisor, tmp_path, renewed_after_s=2.0)
    assert result.outcome == "succeeded", result.message
    assert (project / "results" / "answer.txt").read_text() == "done\n"
    assert expired.refused, "the cloud was asked while the credentials were expired"
    notes = [n for n in ui.notes if n.startswith("the AWS credentials")]
    assert len(notes) == 2 and "the app goes on" in notes[0] and "aws sso login" in notes[0] and "work again" in notes[1], notes
    assert leftovers(result.run_id) == NOTHING


def test_credentials_expired_at_the_teardown_say_how_to_finish_it_and_what_bounds_the_hosts(hypervisor, tmp_path):
    result, project, expired, ui = _run_while_credentials_expire(hypervisor, tmp_path, renewed_after_s=None)
    assert result.outcome == "failed", "\n".join(ui.notes)
    assert (project / "results" / "answer.txt").read_text() == "done\n", "the outputs come back over SSH all the same"
    assert result.outcome == "failed"
    assert f"the AWS credentials expired; run 'aws sso login' (or 'aws configure'), then run 'd2c down {result.run_id}'" in result.message
    assert "until then the hosts stay bounded (" in result.message and "after boot" not in result.message
    assert "user-data: 'shutdown -h +" in result.message, "the bounds the hosts carry are named"
    assert leftovers(result.run_id)["instances"], "without credentials the host is still up"

    expired.on = False
    done = subprocess.run([sys.executable, "-m", "d2c", "down", result.run_id], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert leftovers(result.run_id) == NOTHING
