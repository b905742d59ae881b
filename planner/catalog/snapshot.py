"""Regenerate the bundled catalog snapshot, ``planner/catalog/data/snapshot.csv``.

Run ``python -m planner.catalog.snapshot`` (needs the ``test`` extra, for moto's data).

Where each column comes from:

- specs (vCPUs, memory, architecture, GPUs, network, physical cores, current generation) and
  which types each region offers: the ``describe_instance_types`` and
  ``describe_instance_type_offerings`` output that moto ships (``moto/ec2/resources``), which is
  recorded from AWS;
- us-east-1 on-demand prices (Linux, shared tenancy, no pre-installed software), per type:
  ``US_EAST_1`` below, AWS Price List values as of ``PRICES_DATE``;
- the other regions: AWS prices each of these families per region with one rate per vCPU (metal
  sizes keep their us-east-1 premium), so a region's price for a type is its us-east-1 price
  scaled by the family's regional rate for one reference size, ``REGIONAL`` below, as published
  on AWS's EC2 on-demand pricing page. us-east-2 and us-west-2 charge us-east-1's rates for
  every family here;
- spot prices: none. They move hourly, so a snapshot's would mislead; the planner offers only
  on-demand capacity from the snapshot until ``d2c catalog refresh`` reads live spot prices.

The test ``tests/test_catalog_snapshot.py`` checks the result against the public SkyPilot
catalog subset in ``../shared/data`` within a stated tolerance.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

from planner.catalog import Catalog, offer_sort_key
from planner.catalog.api import offer_from_spec
from planner.catalog.csvfile import write_catalog_csv
from planner.catalog.store import SNAPSHOT_PATH as SNAPSHOT

PRICES_DATE = "2026-01-19"
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
FAMILIES = ("c5", "c5n", "c6i", "c6a", "c7i", "c7g", "m5", "m6i", "m6a", "m7i", "m7g", "r5", "r6i", "r7i", "t3", "hpc6a")

US_EAST_1: dict[str, float] = {
    "c5.large": 0.085, "c5.xlarge": 0.17, "c5.2xlarge": 0.34, "c5.4xlarge": 0.68, "c5.9xlarge": 1.53,
    "c5.12xlarge": 2.04, "c5.18xlarge": 3.06, "c5.24xlarge": 4.08, "c5.metal": 4.08,
    "c5n.large": 0.108, "c5n.xlarge": 0.216, "c5n.2xlarge": 0.432, "c5n.4xlarge": 0.864, "c5n.9xlarge": 1.944,
    "c5n.18xlarge": 3.888, "c5n.metal": 3.888,
    "c6a.large": 0.0765, "c6a.xlarge": 0.153, "c6a.2xlarge": 0.306, "c6a.4xlarge": 0.612, "c6a.8xlarge": 1.224,
    "c6a.12xlarge": 1.836, "c6a.16xlarge": 2.448, "c6a.24xlarge": 3.672, "c6a.32xlarge": 4.896,
    "c6a.48xlarge": 7.344, "c6a.metal": 7.344,
    "c6i.large": 0.085, "c6i.xlarge": 0.17, "c6i.2xlarge": 0.34, "c6i.4xlarge": 0.68, "c6i.8xlarge": 1.36,
    "c6i.12xlarge": 2.04, "c6i.16xlarge": 2.72, "c6i.24xlarge": 4.08, "c6i.32xlarge": 5.44, "c6i.metal": 5.44,
    "c7g.medium": 0.0363, "c7g.large": 0.0725, "c7g.xlarge": 0.145, "c7g.2xlarge": 0.29, "c7g.4xlarge": 0.58,
    "c7g.8xlarge": 1.16, "c7g.12xlarge": 1.74, "c7g.16xlarge": 2.32, "c7g.metal": 2.32,
    "c7i.large": 0.08925, "c7i.xlarge": 0.1785, "c7i.2xlarge": 0.357, "c7i.4xlarge": 0.714, "c7i.8xlarge": 1.428,
    "c7i.12xlarge": 2.142, "c7i.16xlarge": 2.856, "c7i.24xlarge": 4.284, "c7i.48xlarge": 8.568,
    "c7i.metal-24xl": 4.7124, "c7i.metal-48xl": 8.568,
    "m5.large": 0.096, "m5.xlarge": 0.192, "m5.2xlarge": 0.384, "m5.4xlarge": 0.768, "m5.8xlarge": 1.536,
    "m5.12xlarge": 2.304, "m5.16xlarge": 3.072, "m5.24xlarge": 4.608, "m5.metal": 4.608,
    "m6a.large": 0.0864, "m6a.xlarge": 0.1728, "m6a.2xlarge": 0.3456, "m6a.4xlarge": 0.6912, "m6a.8xlarge": 1.3824,
    "m6a.12xlarge": 2.0736, "m6a.16xlarge": 2.7648, "m6a.24xlarge": 4.1472, "m6a.32xlarge": 5.5296,
    "m6a.48xlarge": 8.2944, "m6a.metal": 8.2944,
    "m6i.large": 0.096, "m6i.xlarge": 0.192, "m6i.2xlarge": 0.384, "m6i.4xlarge": 0.768, "m6i.8xlarge": 1.536,
    "m6i.12xlarge": 2.304, "m6i.16xlarge": 3.072, "m6i.24xlarge": 4.608, "m6i.32xlarge": 6.144, "m6i.metal": 6.144,
    "m7g.medium": 0.0408, "m7g.large": 0.0816, "m7g.xlarge": 0.1632, "m7g.2xlarge": 0.3264, "m7g.4xlarge": 0.6528,
    "m7g.8xlarge": 1.3056, "m7g.12xlarge": 1.9584, "m7g.16xlarge": 2.6112, "m7g.metal": 2.6112,
    "m7i.large": 0.1008, "m7i.xlarge": 0.2016, "m7i.2xlarge": 0.4032, "m7i.4xlarge": 0.8064, "m7i.8xlarge": 1.6128,
    "m7i.12xlarge": 2.4192, "m7i.16xlarge": 3.2256, "m7i.24xlarge": 4.8384, "m7i.48xlarge": 9.6768,
    "m7i.metal-24xl": 5.32224, "m7i.metal-48xl": 9.6768,
    "r5.large": 0.126, "r5.xlarge": 0.252, "r5.2xlarge": 0.504, "r5.4xlarge": 1.008, "r5.8xlarge": 2.016,
    "r5.12xlarge": 3.024, "r5.16xlarge": 4.032, "r5.24xlarge": 6.048, "r5.metal": 6.048,
    "r6i.large": 0.126, "r6i.xlarge": 0.252, "r6i.2xlarge": 0.504, "r6i.4xlarge": 1.008, "r6i.8xlarge": 2.016,
    "r6i.12xlarge": 3.024, "r6i.16xlarge": 4.032, "r6i.24xlarge": 6.048, "r6i.32xlarge": 8.064, "r6i.metal": 8.064,
    "r7i.large": 0.1323, "r7i.xlarge": 0.2646, "r7i.2xlarge": 0.5292, "r7i.4xlarge": 1.0584, "r7i.8xlarge": 2.1168,
    "r7i.12xlarge": 3.1752, "r7i.16xlarge": 4.2336, "r7i.24xlarge": 6.3504, "r7i.48xlarge": 12.7008,
    "r7i.metal-24xl": 6.98544, "r7i.metal-48xl": 12.7008,
    "t3.nano": 0.0052, "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832,
    "t3.xlarge": 0.1664, "t3.2xlarge": 0.3328,
    # hpc6a is not offered in us-east-1; its one size costs the same in every region offering it.
    "hpc6a.48xlarge": 2.88,
}

REFERENCE = {family: f"{family}.large" for family in FAMILIES} | {"hpc6a": "hpc6a.48xlarge"}
_SAME_AS_US_EAST_1 = {family: US_EAST_1[REFERENCE[family]] for family in FAMILIES}
REGIONAL: dict[str, dict[str, float]] = {
    "us-east-1": _SAME_AS_US_EAST_1,
    "us-east-2": _SAME_AS_US_EAST_1,
    "us-west-2": _SAME_AS_US_EAST_1,
    "eu-west-1": {
        "c5": 0.096, "c5n": 0.122, "c6a": 0.0864, "c6i": 0.096, "c7g": 0.0821, "c7i": 0.1008,
        "m5": 0.107, "m6a": 0.0963, "m6i": 0.107, "m7g": 0.0911, "m7i": 0.1124,
        "r5": 0.141, "r6i": 0.141, "r7i": 0.1481, "t3": 0.0912, "hpc6a": 2.88,
    },
    "eu-central-1": {
        "c5": 0.097, "c5n": 0.123, "c6a": 0.0873, "c6i": 0.097, "c7g": 0.0827, "c7i": 0.10185,
        "m5": 0.115, "m6a": 0.1035, "m6i": 0.115, "m7g": 0.0978, "m7i": 0.1208,
        "r5": 0.152, "r6i": 0.152, "r7i": 0.1596, "t3": 0.096, "hpc6a": 2.88,
    },
    "ap-southeast-1": {
        "c5": 0.098, "c5n": 0.124, "c6a": 0.0882, "c6i": 0.098, "c7g": 0.0833, "c7i": 0.1029,
        "m5": 0.12, "m6a": 0.108, "m6i": 0.12, "m7g": 0.102, "m7i": 0.126,
        "r5": 0.152, "r6i": 0.152, "r7i": 0.1596, "t3": 0.1056, "hpc6a": 2.88,
    },
}


def regional_price(instance_type: str, region: str) -> float:
    """The on-demand Linux price of ``instance_type`` in ``region`` from the tables above."""
    family = instance_type.split(".", 1)[0]
    scale = REGIONAL[region][family] / US_EAST_1[REFERENCE[family]]
    return round(US_EAST_1[instance_type] * scale, 6)


def _moto_resource(relative: str):
    import moto

    with gzip.open(Path(moto.__file__).parent / "ec2" / "resources" / relative, "rt") as handle:
        return json.load(handle)


def build() -> Catalog:
    """The snapshot catalog from moto's recorded specs and offerings and the price tables."""
    specs = _moto_resource("instance_types.json.gz")
    fetched_at = datetime.fromisoformat(PRICES_DATE).replace(tzinfo=timezone.utc)
    offers = []
    for region in REGIONS:
        offered = {entry["InstanceType"] for entry in _moto_resource(f"instance_type_offerings/region/{region}.json.gz")}
        for instance_type in sorted(US_EAST_1):
            if instance_type not in offered or instance_type not in specs:
                continue
            offers.append(
                offer_from_spec(
                    specs[instance_type], region, regional_price(instance_type, region), source="snapshot", fetched_at=fetched_at
                )
            )
    return Catalog(offers=tuple(sorted(offers, key=offer_sort_key)), source="snapshot", fetched_at=fetched_at, origin="snapshot")


def main() -> None:
    """Write the snapshot CSV and say how many rows it has."""
    catalog = build()
    write_catalog_csv(catalog, SNAPSHOT)
    print(f"wrote {len(catalog.offers)} offers in {len(catalog.regions())} regions to {SNAPSHOT}")


if __name__ == "__main__":
    main()
