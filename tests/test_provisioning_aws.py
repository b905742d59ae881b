"""Provisioning as a real account needs it, against moto's server: one zone, zone fallback, IPv6 callers,
SSM base images, credentials errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from botocore.stub import Stubber

from d2c.aws import client
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RunSettings
from d2c.errors import WorkError
from executor.providers.aws import BASE_IMAGE_PARAMETERS, AwsProvider
from tests.fixtures.executor import write_plans
from tests.test_executor_aws import NOTHING, _project, _start, leftovers

pytestmark = pytest.mark.integration

FAST = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60)


def _launch_zones(provider: AwsProvider) -> list[str]:
    """The zone of each RunInstances the provider sends, in order (from its subnet)."""
    asked: list[str] = []

    def before(params, **_):
        interfaces = params.get("NetworkInterfaces") or [{}]
        subnet = interfaces[0].get("SubnetId") or params.get("SubnetId")
        asked.append(client("ec2", "us-east-1").describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"])

    provider.ec2.meta.events.register("before-parameter-build.ec2.RunInstances", before)
    return asked


def _refuse_first_launch(provider: AwsProvider, code: str) -> list[str]:
    """Make EC2 answer the first RunInstances with ``code`` (moto never runs out of capacity); returns the zones asked for."""
    asked = _launch_zones(provider)

    def refuse(**_):
        if len(asked) == 1:
            error = {"Error": {"Code": code, "Message": "We currently do not have sufficient capacity in the Availability Zone you requested."}}
            return type("Response", (), {"status_code": 500, "headers": {}, "text": "", "content": b""})(), {**error, "ResponseMetadata": {"HTTPStatusCode": 500}}
        return None

    provider.ec2.meta.events.register("before-call.ec2.RunInstances", refuse)
    return asked


def test_no_capacity_in_the_plans_zone_moves_the_whole_run_to_another_zone(aws, tmp_path):
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 2, 1)])
    write_plans(project / "plans.json", "script", [("master", 1, 1), ("worker", 2, 1)], zone="us-east-1a")
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    asked = _refuse_first_launch(provider, "InsufficientInstanceCapacity")
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, "the run launched after moving zones"
    assert asked[0] == "us-east-1a" and set(asked[1:]) == {"us-east-1b"}, asked
    instances = open_journal().resources(result.run_id, "instance")
    assert len(instances) == 3 and {r.details["zone"] for r in instances} == {"us-east-1b"}, "every role in the one new zone"
    events = [e.message for e in open_journal().events(result.run_id) if e.kind == "zone-fallback"]
    assert events and "InsufficientInstanceCapacity" in events[0]
    assert leftovers(result.run_id) == NOTHING


def test_a_plan_priced_by_az_id_launches_in_this_accounts_name_for_that_zone(aws, tmp_path):
    """Catalogs name zones by AZ ID, the same place in every account; zone names differ by account.
    moto maps use1-az2 to us-east-1c (DescribeAvailabilityZones), so the run must land there."""
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 1, 1)], market="spot")
    write_plans(project / "plans.json", "script", [("master", 1, 1), ("worker", 1, 1)], market="spot", zone="use1-az2")
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    asked = _launch_zones(provider)
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, result.message
    names = {z["ZoneId"]: z["ZoneName"] for z in client("ec2", "us-east-1").describe_availability_zones()["AvailabilityZones"]}
    assert set(asked) == {names["use1-az2"]} == {"us-east-1c"}, asked
    assert {r.details["zone"] for r in open_journal().resources(result.run_id, "instance")} == {"us-east-1c"}
    assert leftovers(result.run_id) == NOTHING


def test_an_ipv6_caller_is_let_in_through_ipv6_ranges(aws, tmp_path):
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)])
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="2001:db8::5", ssh_timeout_s=1, poll_s=0.1)
    seen: dict = {}

    def look(params, **_):
        groups = client("ec2", "us-east-1").describe_security_groups(Filters=[{"Name": "tag-key", "Values": ["d2c:run"]}])["SecurityGroups"]
        seen.setdefault("groups", groups)

    provider.ec2.meta.events.register("before-parameter-build.ec2.TerminateInstances", look)
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, result.message
    [group] = seen["groups"]
    [ssh] = [p for p in group["IpPermissions"] if p.get("FromPort") == 22]
    assert ssh["Ipv6Ranges"][0]["CidrIpv6"] == "2001:db8::5/128" and not ssh.get("IpRanges")
    assert leftovers(result.run_id) == NOTHING


def test_the_base_image_comes_from_its_ssm_public_parameter(aws):
    """moto refuses to store names under /aws/ (as AWS does), so SSM is stubbed with GetParameter's documented response;
    the Stubber's expected parameters check the name asked for each base image."""
    provider = AwsProvider(region="us-east-1")
    cases = [
        ("ubuntu-24.04", "arm64", "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"),
        ("ubuntu-22.04", "x86_64", "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp3/ami-id"),
        ("debian-12", "arm64", "/aws/service/debian/release/12/latest/arm64"),
    ]
    for base_image, arch, name in cases:
        with Stubber(provider.ssm) as ssm:
            ssm.add_response(
                "get_parameter",
                {"Parameter": {"Name": name, "Type": "String", "Value": "ami-0abc1234def567890", "Version": 87, "DataType": "aws:ec2:image"}},
                {"Name": name},
            )
            assert provider._base_ami(base_image, arch) == "ami-0abc1234def567890"
            ssm.assert_no_pending_responses()
    # Where the parameter is missing, only an LTS release is taken (moto holds 14.04 and 16.04).
    with Stubber(provider.ssm) as ssm:
        ssm.add_client_error("get_parameter", service_error_code="ParameterNotFound", http_status_code=400)
        chosen = provider._base_ami("ubuntu-24.04", "x86_64")
    names = {i["ImageId"]: i["Name"] for i in client("ec2", "us-east-1").describe_images(Owners=["099720109477"])["Images"]}
    assert "16.04" in names[chosen]
    # Debian has no such fallback: the user is told to name an AMI.
    with Stubber(provider.ssm) as ssm:
        ssm.add_client_error("get_parameter", service_error_code="ParameterNotFound", http_status_code=400)
        with pytest.raises(WorkError, match="give base_image an AMI id"):
            provider._base_ami("debian-12", "x86_64")
    assert provider._base_ami("ami-0123456789abcdef0", "x86_64") == "ami-0123456789abcdef0"


def test_the_descriptors_base_image_reaches_the_lookup(aws, tmp_path):
    """A folder app whose descriptor says debian-12 asks SSM for Debian's parameter (stubbed as above)."""
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)])
    (project / "d2c.yaml").write_text((project / "d2c.yaml").read_text() + "base_image: debian-12\n")
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    name = BASE_IMAGE_PARAMETERS["debian-12"].format(arch="amd64")
    ami = client("ec2", "us-east-1").describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    with Stubber(provider.ssm) as ssm:
        ssm.add_response("get_parameter", {"Parameter": {"Name": name, "Type": "String", "Value": ami, "Version": 3, "DataType": "aws:ec2:image"}}, {"Name": name})
        result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, result.message
    [instance] = open_journal().resources(result.run_id, "instance")
    launched = client("ec2", "us-east-1").describe_instances(InstanceIds=[instance.resource_id])["Reservations"][0]["Instances"][0]
    assert launched["ImageId"] == ami
    assert leftovers(result.run_id) == NOTHING


def test_a_missing_aws_profile_is_bad_input_in_one_line(aws, tmp_path):
    env = {**os.environ, "AWS_PROFILE": "research", "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}
    env.pop("AWS_ACCESS_KEY_ID")
    env.pop("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "config").write_text("[profile lab]\nregion = eu-west-1\n")
    for command in (["down", "--all"], ["image", "list"]):
        done = subprocess.run([sys.executable, "-m", "d2c", *command], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "'research'" in lines[0] and "known profiles: lab" in lines[0], lines
        assert "aws configure --profile research" in lines[0]
    flagged = subprocess.run([sys.executable, "-m", "d2c", "down", "--all", "--aws-profile", "nobody"], capture_output=True, text=True, timeout=60, env=env)
    assert flagged.returncode == 2 and "'nobody'" in flagged.stderr


def test_expired_credentials_say_how_to_log_in_again(monkeypatch):
    """EC2's error for an expired session token (its documented code ExpiredToken), as botocore raises it."""
    from botocore.exceptions import ClientError

    from d2c.aws import aws_errors
    from d2c.errors import UsageError

    monkeypatch.setenv("AWS_PROFILE", "lab")
    with pytest.raises(UsageError, match=r"launching: your AWS credentials have expired; run 'aws sso login --profile lab'"):
        with aws_errors("launching"):
            raise ClientError({"Error": {"Code": "ExpiredToken", "Message": "The security token included in the request is expired"}}, "RunInstances")


def _quotas_client(value: float):
    """A Service Quotas client answering list_service_quotas as AWS documents it."""
    import boto3

    quotas = boto3.client("service-quotas", region_name="us-east-1")
    stub = Stubber(quotas)
    page = {
        "Quotas": [
            {
                "ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "QuotaArn": "arn:aws:servicequotas:us-east-1:123456789012:ec2/L-1216C47A", "QuotaCode": "L-1216C47A",
                "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "Value": value, "Unit": "None",
                "Adjustable": True, "GlobalQuota": False,
            }
        ]
    }
    stub.add_response("list_service_quotas", page, {"ServiceCode": "ec2"})
    stub.activate()
    return quotas


def test_a_quota_too_small_is_refused_before_anything_launches(aws, tmp_path, monkeypatch, capsys):
    import executor.quotas
    from d2c.cli import main

    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 4, 2)])  # 5 x 2 vCPUs of t3.micro: 10 vCPUs
    monkeypatch.setattr(executor.quotas, "client", lambda service, region: _quotas_client(8.0))
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--yes", "--connect", "private", "--ssh-from", "192.0.2.1/32"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: plan 1 needs 10 vCPUs of 'Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances' in us-east-1")
    assert "your quota is 8 (L-1216C47A)" in error and "--quota-code L-1216C47A --desired-value 10" in error
    assert open_journal().runs() == []
    assert client("ec2", "us-east-1").describe_instances()["Reservations"] == [], "no run_instances call was made"


def _answer(provider: AwsProvider, operation: str, response: dict, sent: list[dict], ec2=None) -> None:
    """Answer ``operation`` on the provider's EC2 client (or ``ec2``) with ``response``, recording each request in ``sent``."""

    def build(params, **_):
        sent.append(dict(params))

    def reply(**_):
        return type("Response", (), {"status_code": 200, "headers": {}, "text": "", "content": b""})(), {**response, "ResponseMetadata": {"HTTPStatusCode": 200}}

    ec2 = ec2 or provider.ec2
    ec2.meta.events.register(f"before-parameter-build.ec2.{operation}", build)
    ec2.meta.events.register(f"before-call.ec2.{operation}", reply)


def test_a_tagged_placement_group_without_a_journal_is_found_and_deleted(aws):
    """moto implements no placement groups: DescribePlacementGroups and DeletePlacementGroup are answered as
    AWS documents them (API_DescribePlacementGroups, API_DeletePlacementGroup); the rest runs against moto."""
    provider = AwsProvider(region="us-east-1", poll_s=0.1)
    group = {"GroupName": "d2c-lost-run", "State": "available", "Strategy": "cluster", "GroupId": "pg-0123456789abcdef0",
             "Tags": [{"Key": "d2c:run", "Value": "lost-run"}]}
    asked: list[dict] = []
    deleted: list[dict] = []
    _answer(provider, "DescribePlacementGroups", {"PlacementGroups": [group]}, asked, ec2=provider.ec2_once)
    _answer(provider, "DeletePlacementGroup", {}, deleted)
    assert open_journal().runs() == []
    assert provider.leftovers(open_journal()) == {"lost-run": ["d2c-lost-run"]}
    lines = provider.teardown("lost-run", open_journal())
    assert "deleted placement group d2c-lost-run" in lines and [d["GroupName"] for d in deleted] == ["d2c-lost-run"]
    assert asked[-1]["Filters"] == [{"Name": "tag:d2c:run", "Values": ["lost-run"]}]


def test_a_cloud_without_placement_groups_does_not_hold_up_the_teardown(aws):
    """moto answers DescribePlacementGroups with an error, as an endpoint without the API would: asked once, nothing found."""
    provider = AwsProvider(region="us-east-1", poll_s=0.1)
    calls: list[str] = []
    provider.ec2_once.meta.events.register("before-send.ec2.DescribePlacementGroups", lambda **_: calls.append("sent"))
    assert provider.leftovers(open_journal()) == {}
    assert calls == ["sent"], "one attempt, no retries"


def test_an_mpi_run_is_launched_into_a_cluster_placement_group_deleted_at_teardown(aws, tmp_path):
    """moto 5 does not implement placement groups (CreatePlacementGroup answers 500), so those two calls are answered
    with the responses AWS documents (API_CreatePlacementGroup, API_DeletePlacementGroup) while everything else runs
    against moto; RunInstances' Placement is read from the requests d2c sends."""
    roles = [("master", 1, 1), ("worker", 2, 1)]
    project = _project(tmp_path, "./job.sh", roles)
    write_plans(project / "plans.json", "script", roles, instance_type="c5.large", zone="us-east-1b")
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    created: list[dict] = []
    deleted: list[dict] = []
    launches: list[dict] = []
    order: list[str] = []
    _answer(provider, "CreatePlacementGroup", {"PlacementGroup": {"GroupName": "x", "State": "available", "Strategy": "cluster", "GroupId": "pg-0123456789abcdef0"}}, created)
    _answer(provider, "DeletePlacementGroup", {}, deleted)
    provider.ec2.meta.events.register("before-parameter-build.ec2.RunInstances", lambda params, **_: launches.append(dict(params)) or order.append("launch"))
    provider.ec2.meta.events.register("before-parameter-build.ec2.CreatePlacementGroup", lambda **_: order.append("group"))
    provider.ec2.meta.events.register("before-parameter-build.ec2.TerminateInstances", lambda **_: order.append("terminate"))
    provider.ec2.meta.events.register("before-parameter-build.ec2.DeletePlacementGroup", lambda **_: order.append("delete-group"))

    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)

    assert "did not answer SSH" in result.message, result.message
    name = f"d2c-{result.run_id}"
    [request] = created
    assert (request["GroupName"], request["Strategy"]) == (name, "cluster")
    assert {"Key": "d2c:run", "Value": result.run_id} in request["TagSpecifications"][0]["Tags"]
    assert request["TagSpecifications"][0]["ResourceType"] == "placement-group"
    assert len(launches) == 2 and all(p["Placement"] == {"GroupName": name, "AvailabilityZone": "us-east-1b"} for p in launches)
    assert order.index("group") < order.index("launch") and order.index("terminate") < order.index("delete-group"), order
    assert [d["GroupName"] for d in deleted] == [name]
    [group] = open_journal().resources(result.run_id, "placement_group")
    assert group.resource_id == name and not group.live, "journaled, then marked deleted"
    assert leftovers(result.run_id) == NOTHING


def test_types_without_cluster_placement_launch_without_a_group(aws, tmp_path):
    """t3 offers only partition and spread (moto's DescribeInstanceTypes carries AWS's PlacementGroupInfo)."""
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 1, 1)])
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    launches: list[dict] = []
    provider.ec2.meta.events.register("before-parameter-build.ec2.RunInstances", lambda params, **_: launches.append(dict(params)))
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, result.message
    assert launches and all("GroupName" not in p.get("Placement", {}) for p in launches)
    events = [e.message for e in open_journal().events(result.run_id) if e.kind == "placement"]
    assert events == ["no cluster placement group: t3.micro cannot be placed in one"]
    assert leftovers(result.run_id) == NOTHING


def test_a_spread_plan_beyond_seven_hosts_per_zone_is_refused_before_launch(aws, tmp_path):
    roles = [("master", 1, 1), ("worker", 7, 1)]
    project = _project(tmp_path, "./job.sh", roles)
    (project / "d2c.yaml").write_text((project / "d2c.yaml").read_text() + "placement: spread\n")
    write_plans(project / "plans.json", "script", roles, instance_type="c5.large")
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    calls: list[str] = []
    provider.ec2.meta.events.register("before-parameter-build.ec2.*", lambda event_name, **_: calls.append(event_name.rsplit(".", 1)[-1]))
    from d2c.errors import UsageError

    with pytest.raises(UsageError, match=r"placement: spread holds at most 7 running instances per Availability Zone and the plan has 8"):
        _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "RunInstances" not in calls and "CreateKeyPair" not in calls and "ImportKeyPair" not in calls, calls


def test_a_caller_whose_address_moved_is_let_in_again_and_the_old_address_revoked(aws, monkeypatch):
    """The caller's address is what checkip.amazonaws.com answers; the test answers it instead (no traffic leaves)."""
    import executor.providers.aws as aws_provider
    from types import SimpleNamespace

    journal = open_journal()
    addresses = iter(["192.0.2.1/32", "198.51.100.7/32"])
    monkeypatch.setattr(aws_provider, "caller_cidr", lambda override=None: override or next(addresses))
    monkeypatch.delenv("D2C_SSH_FROM", raising=False)
    provider = AwsProvider(region="us-east-1")
    group_id = provider._security_group(SimpleNamespace(run_id="r-moved"), journal)

    def ssh_ranges():
        [group] = client("ec2", "us-east-1").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        return [r["CidrIp"] for p in group["IpPermissions"] if p.get("FromPort") == 22 for r in p.get("IpRanges", [])]

    assert ssh_ranges() == ["192.0.2.1/32"]
    assert provider.refresh_access("r-moved", journal) == (
        "your address changed from 192.0.2.1/32 to 198.51.100.7/32; SSH to the run's hosts is now allowed from 198.51.100.7/32 only"
    )
    assert ssh_ranges() == ["198.51.100.7/32"]
    monkeypatch.setattr(aws_provider, "caller_cidr", lambda override=None: "198.51.100.7/32")
    assert provider.refresh_access("r-moved", journal) is None, "an unchanged address changes nothing"
    assert AwsProvider(region="us-east-1", ssh_from="203.0.113.9/32").refresh_access("r-moved", journal) is None, "--ssh-from is kept"
    assert ssh_ranges() == ["198.51.100.7/32"]
