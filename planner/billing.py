"""What a plan costs on EC2: the billing rules the planner prices every instance with.

Each instance is billed per second with a 60-second minimum, from launch to termination:

* billed seconds = ``max(60, boot_setup_s + run_s)``, where ``boot_setup_s`` covers booting,
  contextualization and uploading inputs (default 180 s) and ``run_s`` is the app's runtime;
* its price per hour (on-demand, or the spot price) and its EBS root volume, gp3 at
  ``ebs_usd_gb_month`` pro rata per second (a month is 730 hours);
* spot instances may be interrupted. An interrupted worker's work since the start is lost on
  average half-way through and is redone by a replacement, so one spot instance with hourly
  interruption rate ``λ`` running for ``T`` seconds is expected to run ``T·(1 + λ·T/2)``
  seconds. The rate comes from AWS Spot Advisor's monthly "frequency of interruption" bucket
  (its upper edge, e.g. ``5-10%`` -> 10 % a month) when the catalog knows it, otherwise
  ``DEFAULT_SPOT_INTERRUPTION_MONTHLY`` (10 % a month). A plan's time uses the largest rate
  among the types it runs on; each instance's cost uses its own.

Per plan, once: data egress of the outputs (``egress_usd_gb``, the first internet-egress tier,
with no free allowance assumed) and storage of the imported images as EBS snapshots
(``snapshot_usd_gb_month``) for as long as the run lasts.

Prices default to us-east-1 list prices; they are small next to instance prices, and the same
rules apply to every candidate so they never change which plan ranks first by much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SECONDS_PER_MONTH = 730 * 3600
MIN_BILLED_S = 60.0
DEFAULT_SPOT_INTERRUPTION_MONTHLY = 0.10
"""Fraction of spot instances interrupted per month when the catalog has no Spot Advisor bucket."""

_BUCKET_UPPER = {"<5%": 0.05, "5-10%": 0.10, "10-15%": 0.15, "15-20%": 0.20, ">20%": 0.30}


@dataclass(frozen=True)
class BillingRules:
    """Everything besides the instance price that a plan pays for."""

    boot_setup_s: float = 180.0
    ebs_gb: float = 8.0
    """Root volume per instance, sized from the role's image."""
    ebs_usd_gb_month: float = 0.08
    egress_gb: float = 1.0
    egress_usd_gb: float = 0.09
    image_gb: float = 0.0
    """Imported image snapshots kept while the run lasts."""
    snapshot_usd_gb_month: float = 0.05
    min_billed_s: float = MIN_BILLED_S


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
    """Wall time from launch to the outputs being back, for the slowest-recovering type."""
    return rules.boot_setup_s + expected_run_s(run_s, rate_per_s)


def instance_usd(price_usd_h, run_s, rate_per_s, rules: BillingRules):
    """Cost of one instance (price and its root volume) over a run of ``run_s`` seconds.

    Works elementwise on numpy arrays so the planner can price a whole catalog at once.
    """
    billed = np.maximum(rules.min_billed_s, rules.boot_setup_s + expected_run_s(run_s, rate_per_s))
    ebs_usd_s = rules.ebs_gb * rules.ebs_usd_gb_month / SECONDS_PER_MONTH
    return billed * (np.asarray(price_usd_h) / 3600.0 + ebs_usd_s)


def plan_fixed_usd(run_s, rules: BillingRules):
    """Costs paid once per plan: output egress and image snapshot storage during the run."""
    storage_s = rules.boot_setup_s + np.asarray(run_s)
    return rules.egress_gb * rules.egress_usd_gb + rules.image_gb * rules.snapshot_usd_gb_month * storage_s / SECONDS_PER_MONTH
