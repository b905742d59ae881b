"""Regenerate the bundled catalog snapshot, ``planner/catalog/data/snapshot.csv``.

Run ``python -m planner.catalog.snapshot [REFERENCE.csv]``. The reference is the public sample of
SkyPilot's AWS catalog (``skypilot-org/skypilot-catalog``, ``catalogs/v8/aws/vms.csv``), by default
``../shared/data/aws-ec2-vms-sample.csv`` beside the project; it is read in place at build time
and never copied into the project, which ships only the snapshot generated from it.

Every column is a published figure; nothing is scaled, estimated or filled in:

- on-demand price, vCPUs, memory and architecture: the reference's ``Price``, ``vCPUs``,
  ``MemoryGiB`` and ``Arch`` (AWS's published on-demand Linux prices; one regional price per type
  and region, the same in every zone of it). A (type, region) the reference does not price is
  left out, never derived from another region or size;
- regions: every region the reference covers;
- spot prices: none. They are a point in time (the reference's own README says so), so a
  bundled spot price would mislead; the planner offers only on-demand capacity from the
  snapshot until ``d2c catalog refresh`` reads live ones;
- ``current_generation``: what ``ec2.describe_instance_types`` reports as ``CurrentGeneration``
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceTypeInfo.html). AWS lists
  its previous-generation families at https://aws.amazon.com/ec2/previous-generation/ (T1, M1,
  M3, I2, ... with their upgrade paths to current families); none of the reference's families
  is among them, so every type here is current. A family outside :data:`CURRENT_FAMILIES` stops
  the build rather than guessing;
- source and date: each row's ``source`` names the reference (repository, path and commit, read
  from the README beside it) and ``fetched_at`` is the reference file's modification time, as for
  any SkyPilot catalog d2c reads (the file carries no date of its own). ``describe_age`` shows both.

``tests/test_catalog_snapshot.py`` compares every snapshot row with the reference and checks that
the regions are the reference's.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from d2c.errors import UsageError
from planner.catalog import Catalog, offer_sort_key
from planner.catalog.csvfile import read_catalog_csv, write_catalog_csv
from planner.catalog.store import SNAPSHOT_PATH

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "aws-ec2-vms-sample.csv"
"""``../shared/data/aws-ec2-vms-sample.csv`` relative to the project folder."""
REFERENCE_NAME = "skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv"
CURRENT_FAMILIES = frozenset(
    {"c5", "c5n", "c6a", "c6i", "c7g", "c7i", "m5", "m6a", "m6i", "m7g", "m7i", "r5", "r6i", "r7i", "t3", "hpc6a"}
)
"""Families ``describe_instance_types`` reports with ``CurrentGeneration: true`` (none is on AWS's
previous-generation list, https://aws.amazon.com/ec2/previous-generation/)."""
_COMMIT = re.compile(r"commit\s*`?([0-9a-f]{40})`?", re.IGNORECASE)


def reference_source(reference: Path) -> str:
    """The reference's name and commit, e.g. ``skypilot-org/skypilot-catalog ... @ 00148f2af367``."""
    readme = reference.parent / "README.md"
    match = _COMMIT.search(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    return f"{REFERENCE_NAME} @ {match.group(1)[:12]}" if match else REFERENCE_NAME


def build(reference: Path = REFERENCE) -> Catalog:
    """The snapshot catalog: the reference's on-demand rows, one per (type, region), no spot prices."""
    published = read_catalog_csv(reference, source="snapshot")
    unknown = sorted({o.family for o in published.offers} - CURRENT_FAMILIES)
    if unknown:
        raise UsageError(
            f"{reference}: families {', '.join(unknown)} are not in CURRENT_FAMILIES; check AWS's "
            "previous-generation list and add them to planner/catalog/snapshot.py"
        )
    source = reference_source(reference)
    offers = tuple(
        sorted(
            (
                dataclasses.replace(o, spot_usd_h=None, spot_median_usd_h=None, spot_zones=(), current_generation=True, source=source)
                for o in published.offers
                if o.on_demand_usd_h is not None
            ),
            key=offer_sort_key,
        )
    )
    return Catalog(offers=offers, source="snapshot", fetched_at=published.fetched_at, origin="snapshot")


def main(argv: list[str] | None = None) -> None:
    """Write the snapshot CSV and say how many rows it has and where they came from."""
    args = sys.argv[1:] if argv is None else argv
    catalog = build(Path(args[0]) if args else REFERENCE)
    write_catalog_csv(catalog, SNAPSHOT_PATH)
    print(
        f"wrote {len(catalog.offers)} offers in {len(catalog.regions())} regions to {SNAPSHOT_PATH} "
        f"({catalog.offers[0].source}, {catalog.fetched_at:%Y-%m-%d})"
    )


if __name__ == "__main__":
    main()
