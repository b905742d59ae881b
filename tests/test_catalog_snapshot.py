"""The snapshot bundled with d2c: every row is the reference sample's published figure."""

from __future__ import annotations

import csv

from planner.catalog.snapshot import CURRENT_FAMILIES, build, reference_source
from planner.catalog.store import describe_age, load_snapshot


def _reference_rows(shared_data):
    """(type, region) -> the set of (price, vCPUs, memory, arch) the reference gives it, over its zones."""
    rows: dict[tuple[str, str], set[tuple[float, float, float, str]]] = {}
    with open(shared_data / "aws-ec2-vms-sample.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            figures = (float(row["Price"]), float(row["vCPUs"]), float(row["MemoryGiB"]), row["Arch"])
            rows.setdefault((row["InstanceType"], row["Region"]), set()).add(figures)
    return rows


def test_every_snapshot_row_is_the_reference_samples_published_figure(shared_data):
    reference = _reference_rows(shared_data)
    snapshot = load_snapshot()
    seen = {}
    for offer in snapshot.offers:
        key = (offer.instance_type, offer.region)
        assert key not in seen, f"{key} appears twice"
        seen[key] = offer
        assert key in reference, f"{key} is in the snapshot but not in the reference"
        (figures,) = reference[key]
        assert (offer.on_demand_usd_h, offer.vcpus, offer.memory_gib, offer.arch) == figures, key
    assert set(seen) == set(reference), "rows of the reference missing from the snapshot"
    assert len(snapshot.offers) == 2992


def test_the_snapshots_regions_are_the_reference_samples(shared_data):
    regions = {region for _, region in _reference_rows(shared_data)}
    assert len(regions) == 24
    assert set(load_snapshot().regions()) == regions


def test_the_snapshot_is_what_the_build_makes_from_the_reference(shared_data):
    """A snapshot edited by hand, or built from another file, differs from a fresh build."""
    fresh = build(shared_data / "aws-ec2-vms-sample.csv")
    bundled = load_snapshot()
    key = lambda o: (o.instance_type, o.region, o.vcpus, o.memory_gib, o.arch, o.on_demand_usd_h, o.current_generation, o.source)
    assert [key(o) for o in fresh.offers] == [key(o) for o in bundled.offers]
    assert bundled.offers[0].source == reference_source(shared_data / "aws-ec2-vms-sample.csv")
    assert "00148f2af367" in bundled.offers[0].source


def test_no_spot_prices_every_type_current_and_the_source_shown():
    snapshot = load_snapshot()
    assert not snapshot.has_spot() and snapshot.spot_fetched_at is None
    assert all(o.spot_usd_h is None and o.spot_median_usd_h is None for o in snapshot.offers)
    # c5, m5, r5, m6i and r6i are current generation in describe_instance_types.
    assert all(o.current_generation for o in snapshot.offers)
    assert {o.family for o in snapshot.offers} == CURRENT_FAMILIES
    age = describe_age(snapshot)
    assert f"on-demand prices from {snapshot.fetched_at:%Y-%m-%d}" in age
    assert "snapshot bundled with d2c, from skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv @ 00148f2af367" in age
    large = snapshot.find("c6i.large", "us-east-1")
    assert (large.vcpus, large.memory_gib, large.arch, large.on_demand_usd_h) == (2, 4.0, "x86_64", 0.085)
    assert snapshot.find("c7g.large", "ap-southeast-1").arch == "arm64"
    # eu-west-1's c7i.metal-24xl is the published $4.59648, not a us-east-1 rate scaled per family.
    assert snapshot.find("c7i.metal-24xl", "eu-west-1").on_demand_usd_h < 4.7


def test_a_family_not_known_as_current_stops_the_build(tmp_path):
    import pytest

    from d2c.errors import UsageError

    sample = tmp_path / "vms.csv"
    sample.write_text(
        "InstanceType,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone,Arch\n"
        "m4.large,2.0,8.0,0.1,,us-east-1,use1-az1,x86_64\n"
    )
    with pytest.raises(UsageError, match="m4 are not in CURRENT_FAMILIES"):
        build(sample)
