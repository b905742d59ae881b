"""What a plan costs on EC2: every item AWS bills a run for, with its rate and AWS's source.

Per instance, billed per second from launch to termination with a one-minute minimum
(https://aws.amazon.com/ec2/pricing/on-demand/ "Per Second Billing": Linux instances are billed
in one-second increments with a minimum of 60 seconds):

* billed seconds ``b = max(60, boot_setup_s + run_s)``, where ``boot_setup_s`` covers booting,
  contextualization and uploading inputs (default 180 s), plus the image upload when the run
  imports one, and ``run_s`` is the app's runtime;
* **compute**: ``b * price_usd_h / 3600`` at the on-demand or spot price;
* **EBS**: the root volume, gp3 at ``ebs_usd_gb_month`` (us-east-1: $0.08 per GB-month,
  https://aws.amazon.com/ebs/pricing/ "gp3 ... billed in per-second increments, with a 60-second
  minimum"), sized from the image's *virtual* disk size, pro rata over a 730-hour month;
* **public IPv4**: ``ipv4_usd_h`` = $0.005 per in-use public IPv4 address-hour since
  February 2024 (https://aws.amazon.com/vpc/pricing/, "Public IPv4 Address" tab; announced at
  https://aws.amazon.com/blogs/aws/new-aws-public-ipv4-address-charge-public-ip-insights/). Zero
  with ``--connect private``, where no public address is requested;
* **CPU credits** of burstable types (t2, t3, t3a, t4g). AWS launches t3/t3a/t4g in
  ``unlimited`` mode unless told otherwise (RunInstances ``CreditSpecification``: "Default:
  standard (T2 instances) or unlimited (T3/T3a/T4g instances)",
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html). d2c plans a
  burstable type either in ``standard`` mode, at its per-size baseline (``profiler.fleet``'s
  ``BURSTABLE_BASELINE``, from the credit table of
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/burstable-credits-baseline-concepts.html)
  with no credit charge, or in ``unlimited`` mode at full speed, where a CPU-bound app spends
  ``vcpus * (1 - baseline)`` surplus credits' worth of vCPU-hours per hour, billed at
  ``SURPLUS_CREDIT_USD_VCPU_H`` (Linux: $0.05 per vCPU-hour for T2/T3/T3a, $0.04 for T4g,
  https://aws.amazon.com/ec2/pricing/on-demand/#T2.2FT3.2FT4g_Unlimited_Mode_Pricing). The launch
  asks for exactly the mode the plan was priced with.

Spot instances may be interrupted. An interrupted worker's work since the start is lost on
average half-way through and is redone by a replacement, so one spot instance with hourly
interruption rate ``λ`` running for ``T`` seconds is expected to run ``T·(1 + λ·T/2)`` seconds.
The rate comes from AWS Spot Advisor's monthly "frequency of interruption" bucket (its upper edge,
e.g. ``5-10%`` -> 10 % a month) when the catalog knows it, otherwise
``DEFAULT_SPOT_INTERRUPTION_MONTHLY`` (10 % a month). A plan's time uses the largest rate among
the types it runs on; each instance's cost uses its own.

Per plan, once:

* **egress** of the outputs to the internet at the region's first paid tier (``egress_usd_gb``;
  https://aws.amazon.com/ec2/pricing/on-demand/#Data_Transfer: $0.09 per GB in the US and EU
  regions, $0.114 in ap-southeast-2), no free allowance assumed; a region not in
  ``EGRESS_USD_GB`` is priced at the dearest rate listed, so it is never under-counted;
* **snapshots**: the imported images stored as EBS snapshots (standard tier, $0.05 per GB-month,
  https://aws.amazon.com/ebs/pricing/ "Snapshots"; billed for the blocks stored, so the image
  file's size) for as long as the run lasts.

:func:`instance_items` and :func:`plan_fixed_items` give each item; :func:`instance_usd` and
:func:`plan_fixed_usd` are their sums, which the planner optimizes, so a plan's
:class:`CostBreakdown` adds up to its cost by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from profiler.fleet import burstable_baseline

SECONDS_PER_MONTH = 730 * 3600
MIN_BILLED_S = 60.0
"""EC2 per-second billing minimum for Linux instances, and EBS gp3's."""
DEFAULT_SPOT_INTERRUPTION_MONTHLY = 0.10
"""Fraction of spot instances interrupted per month when the catalog has no Spot Advisor bucket."""
EBS_GP3_USD_GB_MONTH = 0.08
SNAPSHOT_USD_GB_MONTH = 0.05
PUBLIC_IPV4_USD_H = 0.005
"""Per in-use public IPv4 address-hour (https://aws.amazon.com/vpc/pricing/)."""
EGRESS_USD_GB = {
    "us-east-1": 0.09, "us-east-2": 0.09, "us-west-1": 0.09, "us-west-2": 0.09,
    "eu-west-1": 0.09, "eu-central-1": 0.09, "ap-southeast-2": 0.114,
}
"""First paid internet-egress tier per region (https://aws.amazon.com/ec2/pricing/on-demand/#Data_Transfer)."""

BURSTABLE_FAMILIES = ("t2", "t3", "t3a", "t4g")
"""Families billed with CPU credits; left out of plans unless asked for (``--include-burstable``)."""
SURPLUS_CREDIT_USD_VCPU_H = {"t2": 0.05, "t3": 0.05, "t3a": 0.05, "t4g": 0.04}
"""Linux surplus-credit price per vCPU-hour
(https://aws.amazon.com/ec2/pricing/on-demand/#T2.2FT3.2FT4g_Unlimited_Mode_Pricing)."""
CREDIT_MODES = ("standard", "unlimited")

_BUCKET_UPPER = {"<5%": 0.05, "5-10%": 0.10, "10-15%": 0.15, "15-20%": 0.20, ">20%": 0.30}


def is_burstable(instance_type: str) -> bool:
    """True for the credit-billed families (t2, t3, t3a, t4g)."""
    return instance_type.split(".", 1)[0] in BURSTABLE_FAMILIES


def surplus_credit_usd_h(instance_type: str, vcpus: int) -> float:
    """Surplus-credit charge per hour of a burstable type in unlimited mode running every vCPU flat out."""
    baseline = burstable_baseline(instance_type)
    if baseline is None:
        return 0.0
    return vcpus * (1.0 - baseline) * SURPLUS_CREDIT_USD_VCPU_H[instance_type.split(".", 1)[0]]


def egress_usd_gb(region: str | None) -> float:
    """Internet egress per GB in ``region`` (the dearest listed rate for a region not listed)."""
    return EGRESS_USD_GB.get(region or "", max(EGRESS_USD_GB.values()))


@dataclass(frozen=True)
class BillingRules:
    """Everything besides the instance price that a plan pays for."""

    boot_setup_s: float = 180.0
    ebs_gb: float = 8.0
    """Root volume per instance, from the role's image's virtual disk size."""
    ebs_usd_gb_month: float = EBS_GP3_USD_GB_MONTH
    egress_gb: float = 1.0
    egress_usd_gb: float | None = None
    """USD per GB of egress; None: the plan's region's rate (:meth:`for_region`)."""
    image_gb: float = 0.0
    """Imported image snapshots kept while the run lasts."""
    snapshot_usd_gb_month: float = SNAPSHOT_USD_GB_MONTH
    ipv4_usd_h: float = PUBLIC_IPV4_USD_H
    """Per instance-hour: one public IPv4 address each (0 with ``--connect private``)."""
    upload_s: float = 0.0
    """Time to upload the images before any instance launches (counted in the plan's time, not billed per instance)."""
    min_billed_s: float = MIN_BILLED_S

    def for_region(self, region: str | None) -> "BillingRules":
        """These rules with ``region``'s egress rate, unless one was set."""
        if self.egress_usd_gb is not None:
            return self
        return replace(self, egress_usd_gb=egress_usd_gb(region))

    @property
    def egress_rate(self) -> float:
        """The egress rate in force (us-east-1's when no region was given)."""
        return egress_usd_gb("us-east-1") if self.egress_usd_gb is None else self.egress_usd_gb


@dataclass(frozen=True)
class CostBreakdown:
    """A plan's or a run's cost by what AWS bills, USD."""

    compute: float = 0.0
    ebs: float = 0.0
    public_ipv4: float = 0.0
    egress: float = 0.0
    snapshots: float = 0.0
    cpu_credits: float = 0.0

    @property
    def total(self) -> float:
        return self.compute + self.ebs + self.public_ipv4 + self.egress + self.snapshots + self.cpu_credits

    def to_dict(self, digits: int = 6) -> dict[str, float]:
        """The JSON form: each item rounded to ``digits`` places."""
        return {key: round(float(value), digits) for key, value in asdict(self).items()}

    def times(self, factor: float) -> "CostBreakdown":
        """Every item multiplied by ``factor`` (e.g. an instance's items for ``count`` instances), as floats."""
        return CostBreakdown(**{key: float(value) * factor for key, value in asdict(self).items()})

    def rounded(self, digits: int = 6) -> "CostBreakdown":
        """Every item rounded as plans.json and report.json store it."""
        return CostBreakdown(**self.to_dict(digits))

    def __add__(self, other: "CostBreakdown") -> "CostBreakdown":
        return CostBreakdown(**{key: getattr(self, key) + getattr(other, key) for key in asdict(self)})


def interruption_rate_per_s(bucket: str | None) -> float:
    """Hourly-equivalent interruption rate (per second) of one spot instance.

    A monthly fraction ``f`` of instances interrupted is read as a constant rate
    ``-ln(1 - f)`` per month.
    """
    fraction = _BUCKET_UPPER.get((bucket or "").replace(" ", ""), DEFAULT_SPOT_INTERRUPTION_MONTHLY)
    return -math.log(1.0 - fraction) / SECONDS_PER_MONTH


def expected_run_s(run_s, rate_per_s):
    """Expected seconds one instance runs when interruptions force redoing half the work."""
    return run_s * (1.0 + rate_per_s * run_s / 2.0)


def plan_seconds(run_s, rate_per_s, rules: BillingRules):
    """Wall time from the command to the outputs being back: image upload, boot, the run."""
    return rules.upload_s + rules.boot_setup_s + expected_run_s(run_s, rate_per_s)


def billed_seconds(run_s, rate_per_s, rules: BillingRules):
    """Seconds one instance is billed for (launch to termination, one-minute minimum)."""
    return np.maximum(rules.min_billed_s, rules.boot_setup_s + expected_run_s(run_s, rate_per_s))


def instance_items(price_usd_h, run_s, rate_per_s, rules: BillingRules, credit_usd_h=0.0) -> CostBreakdown:
    """One instance's cost by item over a run of ``run_s`` seconds (numpy arrays work elementwise).

    ``price_usd_h`` is what the instance is billed per hour *including* ``credit_usd_h``, the
    surplus credits of an unlimited burstable type, which is reported as its own item.
    """
    billed = billed_seconds(run_s, rate_per_s, rules)
    price = np.asarray(price_usd_h, dtype=float)
    credit = np.asarray(credit_usd_h, dtype=float)
    return CostBreakdown(
        compute=billed * (price - credit) / 3600.0,
        ebs=billed * rules.ebs_gb * rules.ebs_usd_gb_month / SECONDS_PER_MONTH,
        public_ipv4=billed * rules.ipv4_usd_h / 3600.0,
        cpu_credits=billed * credit / 3600.0,
    )


def instance_usd(price_usd_h, run_s, rate_per_s, rules: BillingRules):
    """Cost of one instance (price, root volume, public address) over a run of ``run_s`` seconds.

    Works elementwise on numpy arrays so the planner can price a whole catalog at once: the sum of
    :func:`instance_items` (credits are part of the price), in one product per element.
    """
    billed = billed_seconds(run_s, rate_per_s, rules)
    per_s = (np.asarray(price_usd_h, dtype=float) + rules.ipv4_usd_h) / 3600.0 + rules.ebs_gb * rules.ebs_usd_gb_month / SECONDS_PER_MONTH
    return billed * per_s


def plan_fixed_items(run_s, rules: BillingRules) -> CostBreakdown:
    """Costs paid once per plan: output egress and image snapshot storage while the run lasts."""
    storage_s = rules.upload_s + rules.boot_setup_s + np.asarray(run_s, dtype=float)
    return CostBreakdown(
        egress=rules.egress_gb * rules.egress_rate,
        snapshots=rules.image_gb * rules.snapshot_usd_gb_month * storage_s / SECONDS_PER_MONTH,
    )


def plan_fixed_usd(run_s, rules: BillingRules):
    """Costs paid once per plan: output egress and image snapshot storage during the run."""
    return plan_fixed_items(run_s, rules).total


def fleet_hourly_usd(price_usd_h: float, *, ebs_gb: float, public_ipv4: bool, rules: BillingRules = BillingRules()) -> float:
    """What one running instance costs per hour, its root volume and public address included."""
    return price_usd_h + ebs_gb * rules.ebs_usd_gb_month * 3600.0 / SECONDS_PER_MONTH + (rules.ipv4_usd_h if public_ipv4 else 0.0)
