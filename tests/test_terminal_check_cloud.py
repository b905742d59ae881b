"""``d2c check --cloud`` against moto's threaded server (STS, EC2, IAM) and, for the EC2 vCPU
quotas that moto's Service Quotas lacks, botocore's Stubber with AWS's documented response shape
(``GetServiceQuota``: ``{"Quota": {"ServiceCode", "QuotaCode", "QuotaName", "Value", ...}}``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from botocore.stub import Stubber

from d2c.aws import client
from d2c.cli.cloud_check import cloud_checks, plan_needs, result_lines
from planner.plans import load_plans
from tests.fixtures.executor import write_plans

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def quotas_client(region: str, values: dict[str, float]):
    """A Service Quotas client answering GetServiceQuota for the on-demand then the spot vCPU quota."""
    quotas = boto3.client("service-quotas", region_name=region)
    stub = Stubber(quotas)
    for code in ("L-1216C47A", "L-34B43A08"):
        if code in values:
            stub.add_response("get_service_quota", {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": "vCPUs", "Value": values[code],
                                                              "QuotaArn": f"arn:aws:servicequotas:{region}:123456789012:ec2/{code}"}},
                              {"ServiceCode": "ec2", "QuotaCode": code})
        else:
            stub.add_client_error("get_service_quota", "NoSuchResourceException", "quota not found", expected_params={"ServiceCode": "ec2", "QuotaCode": code})
    stub.activate()
    return quotas


def factory(values: dict[str, float]):
    def make(service: str, region: str):
        return quotas_client(region, values) if service == "service-quotas" else client(service, region)

    return make


def by_name(results):
    return {r.name: r for r in results}


@pytest.fixture
def plan(tmp_path):
    path = write_plans(tmp_path / "plans.json", "demo", [("master", 1, 2), ("worker", 12, 2)], instance_type="c6i.large")
    return load_plans(path).plan(1)


def test_every_check_passes_with_the_fix_free_lines(aws, plan):
    boto3.client("iam").create_role(RoleName="d2c-scheduler", AssumeRolePolicyDocument=json.dumps(TRUST))
    assert plan_needs(plan) == {"on-demand": 26.0}
    results = by_name(cloud_checks("us-east-1", needs=plan_needs(plan), plan_label="plan 1", ssh_from="198.51.100.7",
                                   client_factory=factory({"L-1216C47A": 64.0, "L-34B43A08": 32.0})))
    assert [r.status for r in results.values()] == ["ok"] * 5
    assert results["credentials"].detail.startswith("account 123456789012 as arn:aws:")
    assert results["vCPU quota"].detail == "plan 1 needs 26 of 64 on-demand vCPUs in us-east-1 (instances already running there count too)"
    assert results["SSH address"].detail == "SSH to the hosts will be open to 198.51.100.7/32 only"
    assert results["scheduler role"].detail.startswith("arn:aws:iam::123456789012:role/d2c-scheduler")


def test_a_short_quota_fails_naming_the_need_the_quota_and_the_fix(aws, plan):
    results = by_name(cloud_checks("us-east-1", needs=plan_needs(plan), plan_label="plan 1", ssh_from="198.51.100.7",
                                   client_factory=factory({"L-1216C47A": 16.0})))
    quota = results["vCPU quota"]
    assert quota.status == "fail"
    assert quota.detail == "plan 1 needs 26 on-demand vCPUs in us-east-1, the quota is 16"
    assert "L-1216C47A" in quota.fix and "smaller plan" in quota.fix
    role = results["scheduler role"]
    assert role.status == "warn" and "no role d2c-scheduler" in role.detail and "scheduler.amazonaws.com" in role.fix
    lines = result_lines(list(results.values()))
    assert "fail vCPU quota: plan 1 needs 26 on-demand vCPUs in us-east-1, the quota is 16" in lines
    assert any(line.startswith("     fix: ask for more in the Service Quotas console") for line in lines)


def test_an_unreadable_quota_warns_and_a_role_not_trusting_the_scheduler_fails(aws, plan):
    boto3.client("iam").create_role(RoleName="d2c-scheduler", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    results = by_name(cloud_checks("us-east-1", needs=plan_needs(plan), ssh_from="198.51.100.7", client_factory=factory({})))
    assert results["vCPU quota"].status == "warn" and "could not read the on-demand vCPU quota" in results["vCPU quota"].detail
    assert results["scheduler role"].status == "fail" and "does not trust scheduler.amazonaws.com" in results["scheduler role"].detail


def test_an_unknown_region_fails(aws):
    results = by_name(cloud_checks("mars-north-1", ssh_from="198.51.100.7", client_factory=factory({"L-1216C47A": 8.0, "L-34B43A08": 8.0})))
    assert (results["region"].status, results["region"].detail) == ("fail", "mars-north-1 is not an AWS region")
    assert by_name(cloud_checks("eu-west-1", ssh_from="198.51.100.7", client_factory=factory({})))["region"].status == "ok"


def test_cli_without_credentials_names_each_fix_and_exits_1(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
            "D2C_SSH_FROM": "198.51.100.7"}
    done = subprocess.run([sys.executable, "-m", "d2c", "check", "--cloud"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "  fail credentials: no AWS credentials found" in done.stdout
    assert "       fix: run 'aws configure'" in done.stdout
    assert "  skip region: not checked without working credentials" in done.stdout
    assert "  ok   SSH address: SSH to the hosts will be open to 198.51.100.7/32 only" in done.stdout
    assert done.stderr.strip() == "error: the cloud is not ready: credentials failed; see the fixes above"


def test_cli_against_moto_reads_the_plan(aws, tmp_path):
    write_plans(tmp_path / "plans.json", "demo", [("master", 1, 2)], instance_type="c6i.large", region="us-east-1")
    env = {**os.environ, "D2C_SSH_FROM": "198.51.100.7"}
    done = subprocess.run([sys.executable, "-m", "d2c", "check", "--cloud"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    # moto's Service Quotas has no EC2 quotas: the quota check warns, which does not fail the check.
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cloud (us-east-1):" in done.stdout and "  ok   credentials: account 123456789012" in done.stdout
    assert "  warn vCPU quota: could not read the on-demand vCPU quota in us-east-1" in done.stdout
