"""Catalog CSVs: d2c's columns, SkyPilot's vms.csv (the public subset in ../shared/data), bad input."""

from __future__ import annotations

import statistics
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from d2c.errors import UsageError
from planner.catalog import Catalog, InstanceOffer
from planner.catalog.cache import cache_path
from planner.catalog.csvfile import read_catalog_csv, write_catalog_csv

HEADER = "instance_type,region,vcpus,memory_gib,on_demand_usd_h,spot_usd_h,fetched_at\n"


def test_skypilot_catalog_gives_one_offer_per_type_and_region(shared_data):
    path = shared_data / "aws-ec2-vms-sample.csv"
    lines = path.read_text().splitlines()
    assert len(lines) - 1 == 9447
    catalog = read_catalog_csv(path)
    # 145 types over 24 regions, not every type in every region.
    assert len(catalog.offers) == len({tuple(line.split(",")[i] for i in (0, 8)) for line in lines[1:]}) == 2992
    assert len(catalog.regions()) == 24

    # Recompute one offer independently from the raw rows: on-demand is regional, spot per zone.
    rows = [line.split(",") for line in lines[1:] if line.startswith("c6i.4xlarge,") and line.split(",")[8] == "us-east-1"]
    spots = sorted(float(r[7]) for r in rows)
    offer = catalog.find("c6i.4xlarge", "us-east-1")
    assert offer.on_demand_usd_h == float(rows[0][6]) == 0.68
    assert offer.spot_usd_h == spots[0]
    assert offer.spot_median_usd_h == pytest.approx(statistics.median(spots))
    # Every zone's price is kept, by its AZ ID, for plans that launch in one zone.
    assert offer.spot_zones == tuple(sorted((r[9], float(r[7])) for r in rows))
    assert len(offer.spot_zones) == len(rows) > 1 and all(zone.startswith("use1-") for zone, _ in offer.spot_zones)
    assert (offer.vcpus, offer.memory_gib, offer.arch) == (16, 32.0, "x86_64")
    assert catalog.find("c7g.large", "us-east-1").arch == "arm64"
    # hpc6a rows list no spot price at all.
    assert catalog.find("hpc6a.48xlarge", "us-east-2").spot_usd_h is None
    assert catalog.find("c5.12xlarge", "af-south-1").on_demand_usd_h == 2.736


def test_cli_import_of_the_skypilot_catalog_fills_the_cache(shared_data):
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "import", str(shared_data / "aws-ec2-vms-sample.csv")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2992 offers in 24 regions" in done.stderr
    assert "import" in done.stderr
    shown = subprocess.run([sys.executable, "-m", "d2c", "catalog", "show", "--region", "af-south-1", "--family", "c5",
                            "--min-vcpus", "48", "--json"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    import json

    offers = json.loads(shown.stdout)["offers"]
    assert [o["instance_type"] for o in offers] == ["c5.12xlarge", "c5.18xlarge", "c5.24xlarge", "c5.metal"]
    assert offers[0]["on_demand_usd_h"] == 2.736


def test_write_then_read_gives_the_same_catalog(tmp_path):
    stamp = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
    offers = (
        InstanceOffer("c6i.large", "us-east-1", 2, 4.0, "x86_64", 0.085, 0.031, 0.035, network="Up to 12.5 Gigabit",
                      physical_cores=1, interruption_bucket="<5%", source="import", fetched_at=stamp),
        InstanceOffer("m7g.large", "us-east-1", 2, 8.0, "arm64", 0.0816, current_generation=True, source="import", fetched_at=stamp),
    )
    write_catalog_csv(Catalog(offers, "import", stamp), tmp_path / "out.csv")
    again = read_catalog_csv(tmp_path / "out.csv")
    assert again.offers == offers
    assert again.fetched_at == stamp


def test_zone_prices_survive_export_and_import(tmp_path):
    stamp = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
    zones = (("use1-az1", 0.031), ("use1-az4", 0.044), ("use1-az6", 0.035))
    offers = (InstanceOffer("c6i.large", "us-east-1", 2, 4.0, "x86_64", 0.085, 0.031, 0.035, source="import", fetched_at=stamp, spot_zones=zones),)
    write_catalog_csv(Catalog(offers, "import", stamp), tmp_path / "out.csv")
    assert "use1-az1=0.031;use1-az4=0.044;use1-az6=0.035" in (tmp_path / "out.csv").read_text()
    assert read_catalog_csv(tmp_path / "out.csv").offers == offers
    # Zone prices given by hand set the summary; a zone of another region is refused.
    path = tmp_path / "zones.csv"
    path.write_text("instance_type,region,vcpus,memory_gib,on_demand_usd_h,spot_zones\nc6i.large,us-east-1,2,4,0.085,use1-az2=0.05;us-east-1b=0.03\n")
    offer = read_catalog_csv(path).offers[0]
    assert (offer.spot_usd_h, offer.spot_median_usd_h, offer.spot_zones) == (0.03, 0.04, (("us-east-1b", 0.03), ("use1-az2", 0.05)))
    path.write_text("instance_type,region,vcpus,memory_gib,on_demand_usd_h,spot_zones\nc6i.large,us-east-1,2,4,0.085,use2-az1=0.05\n")
    with pytest.raises(UsageError, match=r"line 2, column 'spot_zones': 'use2-az1=0.05' is not zone=price with a zone of us-east-1"):
        read_catalog_csv(path)


def test_negotiated_price_list_with_only_required_columns(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("instance_type,region,vcpus,memory_gib,on_demand_usd_h\nc7g.xlarge,eu-west-1,4,8,0.12\n")
    offer = read_catalog_csv(path).find("c7g.xlarge")
    assert (offer.region, offer.on_demand_usd_h, offer.arch, offer.spot_usd_h) == ("eu-west-1", 0.12, "arm64", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEADER + "c6i.large,us-east-1,2,4,0.085,,2026-11-20\nc6i.xlarge,us-east-1,4,8,cheap,,2026-11-20\n",
         "line 3, column 'on_demand_usd_h': 'cheap' is not a number"),
        (HEADER + "c6i.large,us-east-1,2.5,4,0.085,,2026-11-20\n", "line 2, column 'vcpus': '2.5' must be a whole number"),
        (HEADER + "c6i.large,us-east-1,0,4,0.085,,2026-11-20\n", "line 2, column 'vcpus': c6i.large has 0 vCPUs; every instance type has at least 1"),
        (HEADER + "c6i.large,us-east-1,2,0,0.085,,2026-11-20\n", "line 2, column 'memory_gib': c6i.large has 0 GiB of memory; it must be more than 0"),
        ("InstanceType,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\nc5.large,0.0,4.0,0.085,,us-east-1,use1-az1\n",
         "line 2, column 'vCPUs': c5.large has 0 vCPUs; every instance type has at least 1"),
        (HEADER + "c6i.large,us-east-1,2,4,-1,,2026-11-20\n", "line 2, column 'on_demand_usd_h': '-1' must be a finite number >= 0"),
        (HEADER + "c6i.large,,2,4,0.085,,2026-11-20\n", "line 2, column 'region': is empty"),
        (HEADER + "c6i.large,us-east-1,2,4,0.085,,yesterday\n", "line 2, column 'fetched_at': 'yesterday' is not an ISO-8601"),
        (HEADER + "c6i.large,us-east-1,2,4,,,2026-11-20\n", "line 2, column 'on_demand_usd_h': is empty and so is spot_usd_h"),
        (HEADER + "c6i.large,us-east-1,2,4,0.085,,2026-11-20\nc6i.large,us-east-1,2,4,0.09,,2026-11-20\n",
         "line 3, column 'instance_type': c6i.large in us-east-1 appears twice"),
        ("instance_type,region,vcpus,on_demand_usd_h\nc6i.large,us-east-1,2,0.085\n", "line 1: missing column 'memory_gib'"),
        ("InstanceType,vCPUs,MemoryGiB,Price,Region,AvailabilityZone\n", "line 1: SkyPilot catalog lacks column 'SpotPrice'"),
        ("InstanceType,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\nc5.large,2.0,4.0,0.085,x,us-east-1,use1-az1\n",
         "line 2, column 'SpotPrice': 'x' is not a number"),
        ("InstanceType,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\nc5.large,2.0,4.0,0.085,0.03,us-east-1,euw1-az1\n",
         "line 2, column 'AvailabilityZone': 'euw1-az1' is not a zone of us-east-1"),
        ("", "line 1: the file is empty"),
        (HEADER, "line 2: no data rows"),
    ],
)
def test_malformed_csv_names_line_and_column(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(UsageError) as caught:
        read_catalog_csv(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_cli_import_of_a_malformed_csv_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "c6i.large,us-east-1,two,4,0.085,,2026-11-20\n")
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "import", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"error: {path}: line 2, column 'vcpus': 'two' is not a number\n"
    assert not cache_path().exists()


def test_cli_export_writes_a_reimportable_csv(tmp_path):
    out = tmp_path / "catalog.csv"
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "export", str(out), "--region", "eu-central-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    catalog = read_catalog_csv(out)
    assert catalog.regions() == ["eu-central-1"]
    assert catalog.find("m7g.large").on_demand_usd_h == 0.0978
