"""The EC2 provider against moto's server, with instances made real by the namespace hypervisor.

moto stands in for the EC2 API (real HTTP on loopback); the ``hypervisor`` fixture starts an sshd
in a network namespace at each running instance's private address, so d2c connects with
``--connect private`` exactly as a user on a VPN into the VPC would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from d2c.aws import client
from d2c.descriptor import load_descriptor
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RecordingUI, RunSettings
from executor.providers.aws import RUN_TAG, AwsProvider
from planner.plans import load_plans
from tests.fixtures.executor import app_project, sigkill_when, write_plans

pytestmark = pytest.mark.integration

FAST = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60)


def leftovers(run_id: str | None = None) -> dict[str, list[str]]:
    """Everything of a run (or of any d2c run) that moto still holds."""
    ec2 = client("ec2", "us-east-1")
    tag = [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}] if run_id else [{"Name": "tag-key", "Values": [RUN_TAG]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {
        "instances": instances,
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=tag)["KeyPairs"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tag)["SecurityGroups"]],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=tag)["Volumes"]],
    }


NOTHING = {"instances": [], "key_pairs": [], "security_groups": [], "volumes": []}


class NotingUI(RecordingUI):
    """Calls ``on_note(message)`` for every note, to act at a given moment of the run."""

    def __init__(self, on_note):
        super().__init__()
        self.on_note = on_note

    def note(self, message: str) -> None:
        super().note(message)
        self.on_note(message)


def write_profile(path: Path) -> Path:
    """A fitted profile of runs measured on a 2-core desktop."""
    from profiler.host_facts import HostFacts
    from profiler.profile_file import build_profile, save_profile
    from profiler.runs import RunRecord

    host = HostFacts("desktop", "test cpu", 2, 2, 4096.0, 1.0, None, "3.11")
    runs = [RunRecord(scale=s, workers=w, wall_s=0.5 + 20 * s / w, repeat=r) for s in (0.01, 0.02, 0.05) for w in (1, 2) for r in (1, 2)]
    save_profile(path, build_profile("script", 1.0, host, runs))
    return path


def _orchestrator(hypervisor, ui=None, settings: RunSettings = FAST, **provider_options) -> Orchestrator:
    provider = AwsProvider(
        region="us-east-1",
        connect="private",
        ssh_from=f"{hypervisor.gateway}/32",
        subnet_id=hypervisor.subnet_id,
        ssh_timeout_s=provider_options.pop("ssh_timeout_s", 30),
        poll_s=0.2,
        **provider_options,
    )
    return Orchestrator(open_journal(), provider, ui=ui or RecordingUI(), settings=settings)


def _start(orchestrator: Orchestrator, project: Path):
    planset = load_plans(project / "plans.json")
    return orchestrator.start(load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=project / "plans.json")


SCRIPT_APP = {
    "job.sh": "#!/bin/bash\nmkdir -p out\nhostname -I > out/address.txt\ncat \"$D2C_HOSTS\" > out/hosts\necho line one\necho result $((6 * 7)) > out/answer.txt\nexit ${JOB_STATUS:-0}\n",
    "hang.sh": "#!/bin/bash\nmkdir -p out\necho started > out/started.txt\nsleep 60\n",
    # Waits (up to 20 s, whatever the machine's load) for the cluster files to name a replacement.
    "wait.sh": "#!/bin/bash\nmkdir -p out\nfor i in $(seq 100); do sleep 0.2; grep -q worker-2 \"$D2C_HOSTS\" && break; done\ncp \"$D2C_HOSTS\" out/hosts\n",
}


def _project(tmp_path: Path, command: str, roles: list[tuple[str, int, int]], *, market: str = "on-demand") -> Path:
    role_lines = "".join(f"  - {{name: {name}, image: app, user: root, count: {count}{', command: ' + command if name == 'master' else ''}}}\n" for name, count, _w in roles)
    project = app_project(tmp_path, "script", SCRIPT_APP, "roles:\n" + role_lines + "outputs:\n  - {remote: out, local: results}\n")
    write_plans(project / "plans.json", "script", roles, market=market, budget_usd=5.0)
    return project


def test_provision_run_and_teardown_leave_nothing(hypervisor, tmp_path):
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 1, 2)], market="spot")
    seen: dict = {}

    def snapshot(message: str) -> None:
        if message.startswith("the master command is running"):
            ec2 = client("ec2", "us-east-1")
            seen["resources"] = leftovers()
            seen["instances"] = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
            seen["groups"] = ec2.describe_security_groups(GroupIds=seen["resources"]["security_groups"])["SecurityGroups"]

    profile = write_profile(project / "profile.json")
    settings = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60, profile_path=profile)
    result = _start(_orchestrator(hypervisor, NotingUI(snapshot), settings), project)
    assert result.outcome == "succeeded", result.message
    assert (project / "results" / "answer.txt").read_text() == "result 42\n"
    master_address = (project / "results" / "address.txt").read_text().split()[0]
    hosts = (project / "results" / "hosts").read_text().splitlines()
    assert hosts[0].split()[:2] == [master_address, "master"] and hosts[1].split()[1] == "worker"

    resources = seen["resources"]
    assert len(resources["instances"]) == 2 and len(resources["key_pairs"]) == 1 and len(resources["security_groups"]) == 1
    for instance in seen["instances"]:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[RUN_TAG] == result.run_id and tags["d2c:role"] in ("master", "worker") and tags["Name"].startswith("d2c ")
        assert instance["SubnetId"] == hypervisor.subnet_id
        assert instance.get("InstanceLifecycle") == "spot"
    for instance_id, user_data in hypervisor.user_data.items():
        assert "shutdown -h +" in user_data, "every instance carries the dead-man switch"
    permissions = seen["groups"][0]["IpPermissions"]
    ssh = next(p for p in permissions if p.get("FromPort") == 22)
    assert [r["CidrIp"] for r in ssh["IpRanges"]] == [f"{hypervisor.gateway}/32"]
    inside = next(p for p in permissions if p["IpProtocol"] == "-1")
    assert inside["UserIdGroupPairs"][0]["GroupId"] == resources["security_groups"][0]

    assert leftovers(result.run_id) == NOTHING
    assert hypervisor.wait_for(lambda: not hypervisor.hosts), "every stand-in host was removed"
    assert not (open_journal().run(result.run_id).run_dir / "id_d2c").exists(), "the run's private key is gone"
    report = json.loads(result.report_path.read_text())
    assert report["simulated"] is False and {i["market"] for i in report["instances"]} == {"spot"}
    assert report["calibrated"] is True
    assert open_journal().run(result.run_id).details["ebs_gb"] > 0, "root volumes are priced by the watchdog"
    from profiler.profile_file import load_profile

    calibration = load_profile(profile).runs[-1]
    assert calibration.source == "calibration" and calibration.instance_type == "t3.micro" and calibration.count == 1
    assert calibration.scale == 0.01 and abs(calibration.wall_s - report["wall_s"]) < 0.01


def test_master_failing_still_fetches_then_tears_down(hypervisor, tmp_path):
    project = _project(tmp_path, "JOB_STATUS=5 ./job.sh", [("master", 1, 1)])
    result = _start(_orchestrator(hypervisor), project)
    assert result.outcome == "failed" and result.exit_code == 1
    assert "exited with status 5" in result.message
    assert (project / "results" / "answer.txt").read_text() == "result 42\n"
    assert "line one" in (open_journal().run(result.run_id).run_dir / "logs" / "master.log").read_text()
    assert leftovers(result.run_id) == NOTHING


def test_instance_terminated_behind_the_controllers_back(hypervisor, tmp_path):
    project = _project(tmp_path, "./hang.sh", [("master", 1, 1), ("worker", 1, 1)])

    def kill_worker(message: str) -> None:
        if message.startswith("the master command is running"):
            ec2 = client("ec2", "us-east-1")
            workers = [
                i["InstanceId"]
                for r in ec2.describe_instances(Filters=[{"Name": "tag:d2c:role", "Values": ["worker"]}])["Reservations"]
                for i in r["Instances"]
            ]
            threading.Timer(0.5, lambda: ec2.terminate_instances(InstanceIds=workers)).start()

    started = time.monotonic()
    result = _start(_orchestrator(hypervisor, NotingUI(kill_worker)), project)
    assert time.monotonic() - started < 40, "the loss was noticed long before the app's 60 s"
    assert result.outcome == "failed"
    assert "worker-1" in result.message and "stopped outside d2c" in result.message
    assert (project / "results" / "started.txt").exists(), "the master's outputs were still fetched"
    assert leftovers(result.run_id) == NOTHING


def test_host_whose_ssh_never_answers(aws, tmp_path):
    ec2 = client("ec2", "us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.250.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.250.1.0/24")["Subnet"]["SubnetId"]
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)])
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", subnet_id=subnet, ssh_timeout_s=2, poll_s=0.1)
    orchestrator = Orchestrator(open_journal(), provider, settings=FAST)
    started = time.monotonic()
    result = _start(orchestrator, project)
    assert time.monotonic() - started < 30
    assert result.outcome == "failed"
    assert "did not answer SSH" in result.message and "within 2 s" in result.message
    assert leftovers(result.run_id) == NOTHING
    kinds = {r.kind for r in open_journal().resources(result.run_id)}
    assert kinds >= {"instance", "key_pair", "security_group"}
    assert all(not r.live for r in open_journal().resources(result.run_id))


def test_spot_launch_is_capped_at_the_on_demand_price_and_the_deadman_keeps_egress_and_boot_back(aws, tmp_path):
    """moto accepts but does not keep MaxPrice, so the request as sent on the wire is checked."""
    import base64
    from urllib.parse import parse_qs

    from planner.billing import SECONDS_PER_MONTH, BillingRules

    ec2 = client("ec2", "us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.251.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.251.1.0/24")["Subnet"]["SubnetId"]
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)], market="spot")
    write_plans(project / "plans.json", "script", [("master", 1, 1)], market="spot", budget_usd=5.0, output_gb=20.0, on_demand_usd_h=0.25)
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", subnet_id=subnet, ssh_timeout_s=1, poll_s=0.1)
    sent: list[dict[str, list[str]]] = []
    provider.ec2.meta.events.register("before-send.ec2.RunInstances", lambda request, **_: sent.append(parse_qs(request.body if isinstance(request.body, str) else request.body.decode())))
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert result.outcome == "failed" and "did not answer SSH" in result.message, "moto launched the capped spot instance"
    assert len(sent) == 1
    assert sent[0]["InstanceMarketOptions.MarketType"] == ["spot"]
    assert sent[0]["InstanceMarketOptions.SpotOptions.MaxPrice"] == ["0.250000"], "capped at the on-demand price, not the planning price"
    # $5 less 20 GB of egress, at $0.10/h plus an 8 GB root volume (no public address), less 3 minutes of boot: 1900 minutes.
    rules = BillingRules()
    hourly = 0.10 + rules.ebs_gb * rules.ebs_usd_gb_month * 3600 / SECONDS_PER_MONTH
    minutes = int(((5.0 - 20 * rules.egress_rate) / hourly * 3600 - rules.boot_setup_s) // 60)
    assert minutes == 1900
    assert f"shutdown -h +{minutes} " in base64.b64decode(sent[0]["UserData"][0]).decode()
    assert leftovers(result.run_id) == NOTHING


def test_sigkill_mid_run_then_down_all_leaves_nothing(hypervisor, tmp_path):
    project = _project(tmp_path, "./hang.sh", [("master", 1, 1), ("worker", 2, 1)])
    command = [
        sys.executable, "-m", "d2c", "run", "--yes", "--connect", "private", "--subnet", hypervisor.subnet_id,
        "--ssh-from", f"{hypervisor.gateway}/32", "--poll", "0.2",
    ]
    controller = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = sigkill_when(controller, lambda: [r for r in open_journal().runs() if r.state == "running"], never="the run never started its master command")
    run_id = runs[0].run_id
    assert len(leftovers(run_id)["instances"]) == 3
    # The journal is lost too: only the d2c:run tags lead to the resources now.
    (open_journal().path).unlink()
    down = subprocess.run([sys.executable, "-m", "d2c", "down", "--all"], cwd=project, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"{run_id}: deleted" in down.stdout
    assert leftovers() == NOTHING
    assert hypervisor.wait_for(lambda: not hypervisor.hosts)


def test_master_unreachable_mid_run_gives_up_after_the_limit_and_tears_down(hypervisor, tmp_path):
    project = _project(tmp_path, "./hang.sh", [("master", 1, 1)])

    def cut_the_network(message: str) -> None:
        if message.startswith("the master command is running"):
            [host] = hypervisor.hosts.values()
            threading.Timer(0.3, host.server.stop).start()

    settings = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60, unreachable_s=2.0)
    ui = NotingUI(cut_the_network)
    started = time.monotonic()
    result = _start(_orchestrator(hypervisor, ui, settings), project)
    assert time.monotonic() - started < 40
    assert result.outcome == "failed" and "lost contact with the master master-1" in result.message
    assert any("trying again" in note or "not fetched" in note for note in ui.notes)
    assert leftovers(result.run_id) == NOTHING


def test_interrupted_spot_worker_is_replaced_with_the_runs_key_and_group(hypervisor, tmp_path):
    project = _project(tmp_path, "./wait.sh", [("master", 1, 1), ("worker", 1, 1)], market="spot")

    def interrupt_worker(message: str) -> None:
        if message.startswith("the master command is running"):
            ec2 = client("ec2", "us-east-1")
            workers = [
                i["InstanceId"]
                for r in ec2.describe_instances(Filters=[{"Name": "tag:d2c:role", "Values": ["worker"]}])["Reservations"]
                for i in r["Instances"]
            ]
            threading.Timer(0.3, lambda: ec2.terminate_instances(InstanceIds=workers)).start()

    ui = NotingUI(interrupt_worker)
    result = _start(_orchestrator(hypervisor, ui), project)
    assert result.outcome == "succeeded", result.message
    assert any(note.startswith("worker-2 joined the run") for note in ui.notes), "\n".join(ui.notes)
    hosts = (project / "results" / "hosts").read_text().splitlines()
    assert [line.split()[2] for line in hosts] == ["master-1", "worker-2"], "\n".join(ui.notes)
    kinds = [r.kind for r in open_journal().resources(result.run_id)]
    assert kinds.count("key_pair") == 1 and kinds.count("security_group") == 1 and kinds.count("instance") == 3
    assert len(hypervisor.launched) == 3
    instances = open_journal().resources(result.run_id, "instance")
    assert len({r.details["zone"] for r in instances}) == 1, "roles and the replacement share one zone"
    assert open_journal().run(result.run_id).details["subnet_id"] == hypervisor.subnet_id
    assert leftovers(result.run_id) == NOTHING


def test_teardown_removes_an_image_imported_for_the_run(aws):
    ec2 = client("ec2", "us-east-1")
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=instance, Name="d2c-vm-for-run")["ImageId"]
    ec2.create_tags(Resources=[image], Tags=[{"Key": RUN_TAG, "Value": "run-img"}])
    snapshots = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"] if "Ebs" in m]
    kept = ec2.create_image(InstanceId=instance, Name="imported-by-d2c-image-import")["ImageId"]

    lines = AwsProvider(region="us-east-1").teardown("run-img", open_journal())
    assert f"deregistered image {image}" in lines
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{RUN_TAG}", "Values": ["run-img"]}])["Images"] == []
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not set(snapshots) & remaining
    assert ec2.describe_images(ImageIds=[kept])["Images"], "images not made for the run are kept"
