"""The executor's small parts on their own: journal, cluster files, uploads split, EC2 error mapping.

The EC2 capacity errors cannot be produced by moto (it launches any type in any number), so
those responses come from botocore's Stubber in AWS's documented error format.
"""

from __future__ import annotations

import pytest

from d2c.errors import UsageError
from executor.contextualize import host_files, hostfile_text, ordered, ssh_config_text
from executor.journal import Journal, Resource, RunRecord
from executor.providers.aws import AwsProvider, caller_cidr, deadman_user_data, host_key_from_console, spot_max_price
from executor.providers.base import CapacityError, Machine
from executor.report import InstanceCost, build_report, report_lines
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
    [
        ("InsufficientInstanceCapacity", "no spare capacity"),
        ("VcpuLimitExceeded", "vCPU quota"),
        ("Unsupported", "not offered in us-east-1"),
        ("MaxSpotInstanceCountExceeded", "spot instance quota in us-east-1 is reached"),
    ],
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


def test_spot_launch_above_the_plans_price_is_one_clear_line():
    import boto3
    from botocore.stub import Stubber

    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    provider = AwsProvider(region="us-east-1")
    provider._ec2 = ec2
    params = {
        "ImageId": "ami-1",
        "InstanceType": "c6i.large",
        "MinCount": 2,
        "MaxCount": 2,
        "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time", "MaxPrice": spot_max_price(0.034)}},
    }
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "run_instances",
            service_error_code="SpotMaxPriceTooLow",
            service_message="Your Spot request price of 0.034 is lower than the minimum required Spot request fulfillment price of 0.0412.",
            http_status_code=400,
            expected_params=params,
        )
        with pytest.raises(CapacityError) as caught:
            provider._run_instances(params, "c6i.large")
    assert caught.value.message == (
        "the spot price of c6i.large in us-east-1 is above the plan's $0.034/h; run 'd2c catalog refresh' and 'd2c recommend' again"
    )


def test_spot_max_price_is_the_recorded_price_never_rounded_up():
    assert spot_max_price(0.034) == "0.034000"
    assert spot_max_price(0.1 + 0.2) == "0.300000"
    assert spot_max_price(1.2345678) == "1.234567"


def test_report_compares_app_time_and_launch_to_teardown_time_with_the_right_prediction():
    # The plan's 318.1 s include the 180 s allowance for boot, contextualization and uploads.
    host = Machine("run-1", "i-1", "master", "master-1", "c5.large", "on-demand", 0.36, "10.0.0.4", "10.0.0.4", 1000.0, "ubuntu", 2)
    report = build_report(
        run_id="run-1",
        descriptor="app",
        provider="aws",
        simulated=False,
        plan_rank=1,
        region="us-east-1",
        outcome="succeeded",
        reason="the master command exited 0",
        exit_status=0,
        started_at=1000.0,
        finished_at=1250.0,
        wall_s=60.8,
        budget_usd=1.0,
        instances=[InstanceCost(host, 1250.0, 0.025)],
        extra_usd=0.0,
        predicted_time_s={"p50": 318.1, "p90": 400.0},
        predicted_cost_usd={"p50": 0.03, "p90": 0.04},
        outputs=[],
        calibrated=False,
    )
    assert report["predicted"]["boot_setup_s"] == 180.0 and report["total_s"] == 250.0
    lines = report_lines(report)
    assert any(line.startswith("app wall time 60.8 s (predicted p50 138.1 s, p90 220.0 s") for line in lines), lines
    assert "launch to teardown 250.0 s (predicted p50 318.1 s, p90 400.0 s)" in lines


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
