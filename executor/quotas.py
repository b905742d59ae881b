"""vCPU quotas checked right before a launch, so a plan that cannot fit is refused before it costs anything.

EC2 limits running instances per *quota class* in vCPUs, per region, on-demand and spot apart;
Service Quotas reports each class by name (``list_service_quotas``, ServiceCode ``ec2``; e.g.
``Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances``, code ``L-1216C47A``,
https://docs.aws.amazon.com/cli/latest/userguide/cli_service-quotas_code_examples.html). A plan's
need per class is the sum of ``count * vcpus`` of its roles, against the quota's value. Classes:

* Standard: families starting with A, C, D, H, I, M, R, T or Z (hpc* excluded);
* HPC: the hpc families, ``Running On-Demand HPC instances`` (no spot market);
* other families (F, G, P, X, Inf, Trn, DL, VT) are not checked here; EC2 still refuses a launch
  past them (``VcpuLimitExceeded``), which the provider reports.

A quota Service Quotas does not return (a new account, a class the account never used) is not
checked. moto's server has no EC2 quotas, so the tests stub ``list_service_quotas`` with its
documented response.
"""

from __future__ import annotations

from dataclasses import dataclass

from d2c.aws import aws_errors, client
from d2c.errors import UsageError, WorkError

STANDARD_LETTERS = "acdhimrtz"
QUOTA_NAMES = {
    ("standard", "on-demand"): "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    ("standard", "spot"): "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
    ("hpc", "on-demand"): "Running On-Demand HPC instances",
}


@dataclass(frozen=True)
class QuotaShortfall:
    """A quota class the plan needs more vCPUs of than the account may run."""

    name: str
    code: str
    value: float
    need: float


def quota_class(instance_type: str) -> str | None:
    """``standard``, ``hpc``, or None for the classes not checked."""
    family = instance_type.split(".", 1)[0].lower()
    if family.startswith("hpc"):
        return "hpc"
    return "standard" if family[:1] in STANDARD_LETTERS else None


def plan_needs(allocations) -> dict[tuple[str, str], float]:
    """vCPUs per (quota class, market) of a plan's roles."""
    need: dict[tuple[str, str], float] = {}
    for a in allocations:
        kind = quota_class(a.instance_type)
        if kind is not None:
            need[(kind, a.market)] = need.get((kind, a.market), 0.0) + a.count * a.vcpus
    return need


def shortfalls(allocations, quotas_client) -> list[QuotaShortfall]:
    """The quota classes where the plan's vCPUs exceed the account's quota."""
    by_name: dict[str, tuple[str, float]] = {}
    for page in quotas_client.get_paginator("list_service_quotas").paginate(ServiceCode="ec2"):
        for quota in page.get("Quotas", []):
            by_name[quota["QuotaName"]] = (quota["QuotaCode"], float(quota["Value"]))
    short = []
    for key, need in sorted(plan_needs(allocations).items()):
        name = QUOTA_NAMES.get(key)
        if name in by_name and need > by_name[name][1]:
            code, value = by_name[name]
            short.append(QuotaShortfall(name, code, value, need))
    return short


def check_quotas(plan, region: str) -> str | None:
    """UsageError naming the quota, its value, the need and how to ask for more, when the plan cannot run.

    Returns why the quotas could not be checked (no permission, Service Quotas unreachable), else
    None: an unchecked quota is not a reason to stop, as EC2 refuses a launch past it anyway.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with aws_errors(f"reading the EC2 vCPU quotas of {region}"):
            try:
                short = shortfalls(plan.roles, client("service-quotas", region))
            except (ClientError, BotoCoreError) as exc:
                code = exc.response.get("Error", {}).get("Code", "error") if isinstance(exc, ClientError) else type(exc).__name__
                return f"Service Quotas answered {code}"
    except WorkError as exc:
        return exc.message
    if short:
        s = short[0]
        raise UsageError(
            f"plan {plan.rank} needs {s.need:.0f} vCPUs of '{s.name}' in {region}, and your quota is {s.value:.0f} ({s.code}); "
            f"ask for more with 'aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {s.code} "
            f"--desired-value {s.need:.0f} --region {region}', pick a smaller plan, or pass --next-plan-on-capacity"
        )
    return None
