"""``d2c check --cloud``: is this AWS account ready for the plan? Each check passes or fails with the fix.

* credentials and the account: ``sts.get_caller_identity``, which needs no permission and
  names the account and the caller (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html);
* the region: ``ec2.describe_regions`` with ``AllRegions`` (asked in us-east-1); a region whose ``OptInStatus`` is
  ``not-opted-in`` cannot launch anything until it is enabled
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Region.html);
* vCPU quotas against the plan: the plan's vCPUs per market against the Service Quotas values
  ``L-1216C47A`` (Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, counted in
  vCPUs) and ``L-34B43A08`` (All Standard Spot Instance Requests), read as planner.catalog.api
  reads them (https://docs.aws.amazon.com/cli/latest/userguide/cli_service-quotas_code_examples.html);
  the quota bounds everything running in the region, so instances already running count against it;
* the caller's address, the only source SSH is opened to (executor.providers.aws.caller_cidr);
* the scheduler role: the IAM role (``d2c-scheduler`` unless named) that EventBridge Scheduler
  assumes to terminate a run's instances at its deadline; its trust policy must name
  ``scheduler.amazonaws.com`` (https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role).
  Without it runs are still bounded by the in-guest timer, so this check only warns.

Clients come from ``client_factory(service, region)`` (default :func:`d2c.aws.client`), so tests
point STS, EC2 and IAM at moto's server and Service Quotas, which moto lacks for EC2, at a
botocore Stubber.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

SCHEDULER_ROLE = "d2c-scheduler"
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
QUOTA_NAMES = {"on-demand": "L-1216C47A", "spot": "L-34B43A08"}

ClientFactory = Callable[[str, str], Any]


@dataclass(frozen=True)
class CheckResult:
    """One check: ``ok``, ``fail`` or ``warn``, what was found, and what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _aws_problem(exc: Exception) -> str:
    """One line for a botocore failure."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS said {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"cannot reach AWS ({type(exc).__name__})"


def check_credentials(client_factory: ClientFactory, region: str) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    try:
        identity = client_factory("sts", region).get_caller_identity()
    except (NoCredentialsError, PartialCredentialsError):
        return CheckResult("credentials", "fail", "no AWS credentials found", "run 'aws configure' or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
    except (ClientError, BotoCoreError) as exc:
        return CheckResult("credentials", "fail", f"the credentials do not work: {_aws_problem(exc)}",
                           "renew them ('aws sso login', or new access keys in the IAM console) and check the clock of this machine")
    return CheckResult("credentials", "ok", f"account {identity['Account']} as {identity['Arn']}")


def check_region(client_factory: ClientFactory, region: str) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError

    from d2c.aws import DEFAULT_REGION

    try:
        regions = client_factory("ec2", DEFAULT_REGION).describe_regions(AllRegions=True)["Regions"]
    except (ClientError, BotoCoreError) as exc:
        return CheckResult("region", "fail", f"{region}: cannot list the regions: {_aws_problem(exc)}", "allow ec2:DescribeRegions and check the network")
    status = {r["RegionName"]: r.get("OptInStatus", "opt-in-not-required") for r in regions}
    if region not in status:
        return CheckResult("region", "fail", f"{region} is not an AWS region", "name one of your account's regions: AWS_DEFAULT_REGION, or 'd2c recommend --regions'")
    if status[region] == "not-opted-in":
        return CheckResult("region", "fail", f"{region} is not enabled for this account",
                           "enable it in the AWS console (Account > AWS Regions) or plan for another region")
    return CheckResult("region", "ok", f"{region} ({status[region]})")


def check_quotas(client_factory: ClientFactory, region: str, needs: dict[str, float] | None, plan_label: str) -> CheckResult:
    from botocore.exceptions import BotoCoreError

    from planner.catalog.api import vcpu_quotas

    try:
        quotas = vcpu_quotas(client_factory("service-quotas", region))
    except BotoCoreError as exc:
        quotas, problem = {}, _aws_problem(exc)
    else:
        problem = ""
    if needs is None:
        found = ", ".join(f"{market} {value:g} vCPUs" for market, value in sorted(quotas.items())) or "none readable"
        return CheckResult("vCPU quota", "ok" if quotas else "warn", f"{region}: {found} (no plans.json to compare with)",
                           "" if quotas else "allow servicequotas:GetServiceQuota, or look the quotas up in the Service Quotas console")
    short = []
    unread = []
    for market, vcpus in sorted(needs.items()):
        if market not in quotas:
            unread.append(market)
        elif vcpus > quotas[market]:
            short.append(f"{plan_label} needs {vcpus:g} {market} vCPUs in {region}, the quota is {quotas[market]:g}")
    if short:
        codes = ", ".join(QUOTA_NAMES[m] for m in sorted(needs) if m in QUOTA_NAMES)
        return CheckResult("vCPU quota", "fail", "; ".join(short),
                           f"ask for more in the Service Quotas console (Amazon EC2, {codes}) or pick a smaller plan ('d2c recommend' reads the quota)")
    if unread:
        why = f" ({problem})" if problem else ""
        return CheckResult("vCPU quota", "warn", f"could not read the {', '.join(unread)} vCPU quota in {region}{why}",
                           "allow servicequotas:GetServiceQuota, or compare the plan with the Service Quotas console yourself")
    held = ", ".join(f"{needs[m]:g} of {quotas[m]:g} {m} vCPUs" for m in sorted(needs))
    return CheckResult("vCPU quota", "ok", f"{plan_label} needs {held} in {region} (instances already running there count too)")


def check_address(ssh_from: str | None) -> CheckResult:
    from d2c.errors import UsageError
    from executor.providers.aws import caller_cidr

    try:
        cidr = caller_cidr(ssh_from)
    except UsageError as exc:
        return CheckResult("SSH address", "fail", exc.message, "pass --ssh-from ADDRESS/32 (your public address) or set D2C_SSH_FROM")
    return CheckResult("SSH address", "ok", f"SSH to the hosts will be open to {cidr} only")


def check_scheduler_role(client_factory: ClientFactory, region: str, role_name: str) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError

    create = (f"create role {role_name} trusted by {SCHEDULER_PRINCIPAL} with ec2:TerminateInstances "
              "(IAM console > Roles > Create role > EventBridge Scheduler)")
    try:
        role = client_factory("iam", region).get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return CheckResult("scheduler role", "warn", f"no role {role_name}: runs are bounded by the in-guest timer only, no server-side stop", create)
        return CheckResult("scheduler role", "warn", f"cannot read role {role_name}: {_aws_problem(exc)}", "allow iam:GetRole, or " + create)
    except BotoCoreError as exc:
        return CheckResult("scheduler role", "warn", f"cannot read role {role_name}: {_aws_problem(exc)}", create)
    if SCHEDULER_PRINCIPAL not in _trusted_services(role.get("AssumeRolePolicyDocument")):
        return CheckResult("scheduler role", "fail", f"role {role_name} does not trust {SCHEDULER_PRINCIPAL}, so no schedule can use it",
                           f"add {SCHEDULER_PRINCIPAL} as a trusted service principal of {role_name}")
    return CheckResult("scheduler role", "ok", f"{role['Arn']}: runs also get a server-side stop at their deadline")


def _trusted_services(document: Any) -> set[str]:
    """The service principals a trust policy lets assume the role (IAM returns it URL-encoded or parsed)."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = (document or {}).get("Statement", [])
    services: set[str] = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        named = (statement.get("Principal") or {}).get("Service", [])
        services.update([named] if isinstance(named, str) else named)
    return services


def plan_needs(plan) -> dict[str, float]:
    """vCPUs per market a plan launches."""
    needs: dict[str, float] = {}
    for allocation in plan.roles:
        needs[allocation.market] = needs.get(allocation.market, 0.0) + allocation.count * allocation.vcpus
    return needs


def cloud_checks(
    region: str,
    *,
    needs: dict[str, float] | None = None,
    plan_label: str = "the plan",
    ssh_from: str | None = None,
    scheduler_role: str = SCHEDULER_ROLE,
    client_factory: ClientFactory | None = None,
) -> list[CheckResult]:
    """Every check, in order; those needing the account are ``skip`` when the credentials fail."""
    from d2c.aws import client

    factory = client_factory or (lambda service, where: client(service, where, attempts=2))
    credentials = check_credentials(factory, region)
    results = [credentials]
    if credentials.status == "ok":
        results += [check_region(factory, region), check_quotas(factory, region, needs, plan_label)]
    else:
        results += [CheckResult(name, "skip", "not checked without working credentials") for name in ("region", "vCPU quota", "scheduler role")]
    results.insert(3, check_address(ssh_from))
    if credentials.status == "ok":
        results.append(check_scheduler_role(factory, region, scheduler_role))
    return results


def result_lines(results: list[CheckResult]) -> list[str]:
    """``ok   credentials: …`` lines (ok, fail, warn or skip), each failure or warning followed by its fix."""
    lines = []
    for result in results:
        lines.append(f"{result.status:<4} {result.name}: {result.detail}")
        if result.status != "ok" and result.fix:
            lines.append(f"     fix: {result.fix}")
    return lines
