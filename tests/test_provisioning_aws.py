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
from executor.providers.aws import BASE_IMAGE_PARAMETERS, AwsProvider
from tests.fixtures.executor import write_plans
from tests.test_executor_aws import NOTHING, _project, _start, leftovers

pytestmark = pytest.mark.integration

FAST = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60)


def _refuse_first_launch(provider: AwsProvider, code: str) -> list[str]:
    """Make EC2 answer the first RunInstances with ``code`` (moto never runs out of capacity); returns the zones asked for."""
    asked: list[str] = []

    def before(params, **_):
        interfaces = params.get("NetworkInterfaces") or [{}]
        subnet = interfaces[0].get("SubnetId") or params.get("SubnetId")
        asked.append(client("ec2", "us-east-1").describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"])

    def refuse(**_):
        if len(asked) == 1:
            error = {"Error": {"Code": code, "Message": "We currently do not have sufficient capacity in the Availability Zone you requested."}}
            return type("Response", (), {"status_code": 500, "headers": {}, "text": "", "content": b""})(), {**error, "ResponseMetadata": {"HTTPStatusCode": 500}}
        return None

    provider.ec2.meta.events.register("before-parameter-build.ec2.RunInstances", before)
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
    """moto refuses to store names under /aws/ (as AWS does), so SSM is stubbed with GetParameter's documented response."""
    provider = AwsProvider(region="us-east-1", base_image="ubuntu-24.04")
    name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
    assert BASE_IMAGE_PARAMETERS["ubuntu-24.04"].format(arch="arm64") == name
    with Stubber(provider.ssm) as ssm:
        ssm.add_response(
            "get_parameter",
            {"Parameter": {"Name": name, "Type": "String", "Value": "ami-0abc1234def567890", "Version": 87, "DataType": "aws:ec2:image"}},
            {"Name": name},
        )
        assert provider._base_ami("arm64") == "ami-0abc1234def567890"
    # Where the parameter is missing, only an LTS release is taken (moto holds 14.04 and 16.04).
    with Stubber(provider.ssm) as ssm:
        ssm.add_client_error("get_parameter", service_error_code="ParameterNotFound", http_status_code=400)
        chosen = provider._base_ami("x86_64")
    names = {i["ImageId"]: i["Name"] for i in client("ec2", "us-east-1").describe_images(Owners=["099720109477"])["Images"]}
    assert "16.04" in names[chosen]
    assert AwsProvider(region="us-east-1", base_image="ami-0123456789abcdef0")._base_ami("x86_64") == "ami-0123456789abcdef0"


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
