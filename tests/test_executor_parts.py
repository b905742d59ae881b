"""The executor's small parts on their own: journal, cluster files, uploads split, EC2 error mapping.

The EC2 capacity errors cannot be produced by moto (it launches any type in any number), so
those responses come from botocore's Stubber in AWS's documented error format.
"""

from __future__ import annotations

import pytest

from d2c.errors import UsageError
from executor.contextualize import host_files, hostfile_text, ordered, ssh_config_text
from executor.journal import Journal, Resource, RunRecord
from executor.providers.aws import AwsProvider, caller_cidr, deadman_user_data, host_key_from_console
from executor.providers.base import CapacityError, Machine
from executor.uploads import FileCopy, split_streams


def machine(name: str, role: str, address: str, slots: int, host_key: str | None = None) -> Machine:
    return Machine("run-1", f"i-{name}", role, name, "c5.large", "on-demand", 0.1, address, address, 0.0, "ubuntu", slots, host_key)


def test_journal_keeps_resources_and_events_across_connections(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.create_run(RunRecord("r1", "aws", "us-east-1", "created", "d2c.yaml", "plans.json", 1, 5.0, None, 0.2, tmp_path, 1.0))
    journal.add_resource(Resource("r1", "instance", "i-1", "us-east-1", "master", 2.0, details={"name": "master-1"}))
    journal.add_resource(Resource("r1", "instance", "i-1", "us-east-1", "master", 3.0))
    journal.update_resource("r1", "instance", "i-1", {"private_address": "10.0.0.4"})
    journal.update_run("r1", state="running", details={"lines_seen": 3})
    journal.event("r1", "started", "the master command is running")

    reopened = Journal(tmp_path / "journal.sqlite")
    [resource] = reopened.resources("r1")
    assert resource.details == {"name": "master-1", "private_address": "10.0.0.4"} and resource.live
    assert reopened.run("r1").state == "running" and reopened.run("r1").details["lines_seen"] == 3
    reopened.mark_deleted("r1", "instance", "i-1", at=9.0)
    assert reopened.resources("r1", live_only=True) == []
    assert [e.kind for e in reopened.events("r1")] == ["started"]
    with pytest.raises(UsageError, match="no run 'r2'.*recent runs: r1"):
        reopened.run("r2")


def test_cluster_files_list_the_master_first_and_sum_slots():
    fleet = ordered([machine("worker-2", "worker", "10.0.1.6", 4), machine("master-1", "master", "10.0.1.4", 1), machine("worker-1", "worker", "10.0.1.5", 4)], "master")
    assert [m.name for m in fleet] == ["master-1", "worker-1", "worker-2"]
    files = host_files(fleet, fleet[1], run_id="run-1", workdir_abs="/home/ubuntu/d2c-work")
    assert files.files[".d2c/hosts"] == "10.0.1.4 master master-1 1\n10.0.1.5 worker worker-1 4\n10.0.1.6 worker worker-2 4\n"
    assert files.files[".d2c/hostfile"] == "10.0.1.4 slots=1\n10.0.1.5 slots=4\n10.0.1.6 slots=4\n"
    assert files.env["D2C_ROLE"] == "worker" and files.env["D2C_WORKER_COUNT"] == "9"
    assert files.env["D2C_MPI_HOSTFILE"] == "/home/ubuntu/d2c-work/.d2c/hostfile"
    assert "export D2C_HOSTS=/home/ubuntu/d2c-work/.d2c/hosts\n" in files.files[".d2c/env.sh"]
    assert hostfile_text([machine("a", "master", "127.0.0.1", 1), machine("b", "worker", "127.0.0.1", 2)]) == "127.0.0.1 slots=3\n"
    assert ssh_config_text(fleet).startswith("Host 10.0.1.4 10.0.1.5 10.0.1.6\n")


def test_uploads_are_balanced_by_bytes_across_streams(tmp_path):
    copies = [FileCopy(tmp_path / f"f{i}", f"/r/f{i}", size) for i, size in enumerate([100, 60, 50, 40, 10])]
    buckets = split_streams(copies, 2)
    assert sorted(sum(c.size for c in bucket) for bucket in buckets) == [120, 140]
    assert sorted(c.remote for bucket in buckets for c in bucket) == sorted(c.remote for c in copies)
    assert len(split_streams(copies[:1], 4)) == 1


def test_console_host_key_deadman_script_and_caller_address(monkeypatch):
    console = "boot\n-----BEGIN SSH HOST KEY KEYS-----\necdsa-sha2-nistp256 AAAAE2 root@h\nssh-ed25519 AAAAC3 root@h\n-----END SSH HOST KEY KEYS-----\n"
    assert host_key_from_console(console) == "ssh-ed25519 AAAAC3"
    assert host_key_from_console("Linux version 2.6\n") is None
    script = deadman_user_data("r1", 42)
    assert script.startswith("#!/bin/bash\n") and "shutdown -h +42" in script
    assert caller_cidr("203.0.113.7") == "203.0.113.7/32"
    monkeypatch.setenv("D2C_SSH_FROM", "198.51.100.0/24")
    assert caller_cidr() == "198.51.100.0/24"


@pytest.mark.parametrize(
    ("code", "words"),
    [("InsufficientInstanceCapacity", "no spare capacity"), ("VcpuLimitExceeded", "vCPU quota"), ("Unsupported", "not offered in us-east-1")],
)
def test_capacity_and_quota_errors_become_one_clear_line(code, words):
    import boto3
    from botocore.stub import Stubber

    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    provider = AwsProvider(region="us-east-1")
    provider._ec2 = ec2
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", service_error_code=code, service_message="AWS text", http_status_code=400)
        with pytest.raises(CapacityError) as caught:
            provider._run_instances({"ImageId": "ami-1", "InstanceType": "c5.24xlarge", "MinCount": 4, "MaxCount": 4}, "c5.24xlarge")
    assert words in caught.value.message and "4 x c5.24xlarge" in caught.value.message and code in caught.value.message


def test_connect_must_be_public_or_private():
    with pytest.raises(UsageError, match="--connect"):
        AwsProvider(region="us-east-1", connect="vpn")


def test_app_folder_copies_skip_state_caches_and_earlier_outputs(tmp_path):
    from executor.uploads import plan_copies

    app = tmp_path / "app"
    for name in ("run.py", "lib/util.py", ".d2c/journal.sqlite", "__pycache__/run.pyc", "results/old.json"):
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text("x")
    (tmp_path / "params.json").write_text("{}")
    copies = plan_copies([(app, "/w"), (tmp_path / "params.json", "/w/in/params.json")], exclude=(app / "results",))
    assert [c.remote for c in copies] == ["/w/lib/util.py", "/w/run.py", "/w/in/params.json"]
