"""The bulk offer path against a local HTTP server serving files in AWS's bulk format."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from d2c.errors import UsageError
from planner.catalog.bulk import fetch_bulk_catalog
from planner.catalog.cache import load_cache, save_cache
from planner.catalog.store import current_catalog, load_snapshot, refresh
from tests.fixtures.catalog_servers import offer_csv, offer_row

pytestmark = pytest.mark.integration


def us_east_1_rows():
    return [
        offer_row("c6i.large", 0.085, "us-east-1", vcpus=2, memory_gib=4),
        offer_row("c6i.xlarge", 0.17, "us-east-1", vcpus=4, memory_gib=8),
        offer_row("m7g.large", 0.0816, "us-east-1", vcpus=2, memory_gib=8, processor="AWS Graviton3 Processor"),
        # Rows that must not become prices: other OS, tenancy, software, capacity, term.
        offer_row("c6i.large", 0.177, "us-east-1", vcpus=2, memory_gib=4, os="Windows"),
        offer_row("c6i.large", 0.0935, "us-east-1", vcpus=2, memory_gib=4, tenancy="Dedicated"),
        offer_row("c6i.large", 0.205, "us-east-1", vcpus=2, memory_gib=4, software="SQL Web"),
        offer_row("c6i.large", 0.085, "us-east-1", vcpus=2, memory_gib=4, capacity="UnusedCapacityReservation"),
        offer_row("c6i.xlarge", 0.107, "us-east-1", vcpus=4, memory_gib=8, term="Reserved"),
        offer_row("r7i.large", 0.1323, "us-east-1", vcpus=2, memory_gib=16, os="RHEL"),
    ]


def test_bulk_refresh_keeps_only_on_demand_linux_shared_rows(bulk_offer_server):
    bulk_offer_server.publish({
        "us-east-1": offer_csv(us_east_1_rows()),
        "eu-west-1": offer_csv([offer_row("c6i.large", 0.0912, "eu-west-1", vcpus=2, memory_gib=4)], published="2026-11-18T10:00:00Z"),
    })
    seen = []
    catalog = fetch_bulk_catalog(["us-east-1", "eu-west-1"], progress=lambda region, done, total: seen.append((region, done, total)))
    prices = {(o.instance_type, o.region): o.on_demand_usd_h for o in catalog.offers}
    assert prices == {("c6i.large", "us-east-1"): 0.085, ("c6i.xlarge", "us-east-1"): 0.17,
                      ("m7g.large", "us-east-1"): 0.0816, ("c6i.large", "eu-west-1"): 0.0912}
    graviton = catalog.find("m7g.large", "us-east-1")
    assert (graviton.arch, graviton.vcpus, graviton.memory_gib, graviton.spot_usd_h) == ("arm64", 2, 8.0, None)
    # The catalog is as old as its oldest file's publication date.
    assert catalog.fetched_at == datetime(2026, 11, 18, 10, tzinfo=timezone.utc)
    assert catalog.source == "bulk offer files"
    # Progress reached the full size of each file.
    for region in ("us-east-1", "eu-west-1"):
        last = [s for s in seen if s[0] == region][-1]
        assert last[1] == last[2] == len(bulk_offer_server.files[bulk_offer_server.csv_path(region)])


def test_family_filter_and_unknown_region(bulk_offer_server):
    bulk_offer_server.publish({"us-east-1": offer_csv(us_east_1_rows())})
    catalog = fetch_bulk_catalog(["us-east-1"], families=["m7g"])
    assert [o.instance_type for o in catalog.offers] == ["m7g.large"]
    with pytest.raises(UsageError, match="unknown region 'eu-west-9'.*us-east-1"):
        fetch_bulk_catalog(["eu-west-9"])


def test_refresh_that_fails_half_way_leaves_the_cache_as_it_was(bulk_offer_server):
    bulk_offer_server.publish({"us-east-1": offer_csv(us_east_1_rows())})
    first = refresh(regions=["us-east-1"], source="bulk")
    assert first.refreshed
    before = bulk_offer_server_cache_bytes()

    # A new file with other prices, cut off in the middle of its rows.
    rows = [offer_row(f"c6i.{n}xlarge", 0.17 * n, "us-east-1", vcpus=4 * n, memory_gib=8 * n) for n in range(2, 400)]
    body = offer_csv(rows)
    bulk_offer_server.files[bulk_offer_server.csv_path("us-east-1")] = body
    bulk_offer_server.cut_after[bulk_offer_server.csv_path("us-east-1")] = len(body) // 2
    outcome = refresh(regions=["us-east-1"], source="bulk")
    assert not outcome.refreshed
    assert "part-way" in outcome.problem or "stopped after" in outcome.problem
    assert bulk_offer_server_cache_bytes() == before
    assert current_catalog().find("c6i.large", "us-east-1").on_demand_usd_h == 0.085
    assert current_catalog().find("c6i.8xlarge", "us-east-1") is None


def bulk_offer_server_cache_bytes() -> bytes:
    from planner.catalog.cache import cache_path

    return cache_path().read_bytes()


def test_cli_refresh_from_bulk_files_then_show(bulk_offer_server, tmp_path):
    bulk_offer_server.publish({"us-east-1": offer_csv(us_east_1_rows())})
    env = dict(os.environ, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "refresh", "--regions", "us-east-1", "--source", "bulk"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "catalog refreshed: 3 offers in 1 region" in done.stderr
    assert "bulk offer files" in done.stderr and "on-demand prices from 2026-11-20" in done.stderr
    shown = subprocess.run([sys.executable, "-m", "d2c", "catalog", "show", "--region", "us-east-1", "--json"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert '"origin": "bulk offer files"' in shown.stdout


def test_cli_refresh_without_network_keeps_the_catalog_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("D2C_PRICING_BULK_URL", "http://127.0.0.1:9")  # discard port: connection refused
    save_cache(current_catalog().select(regions=["eu-west-1"]))
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "refresh", "--regions", "eu-west-1", "--source", "bulk"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "error: catalog not refreshed: reading the bulk offer region index: cannot reach" in done.stderr
    assert f"falling back to the catalog already here: on-demand prices from {load_snapshot().fetched_at:%Y-%m-%d}" in done.stderr
    assert "Traceback" not in done.stderr
    assert load_cache().regions() == ["eu-west-1"]


def test_cli_refresh_unknown_region_is_exit_2():
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "refresh", "--regions", "mars-north-1", "--source", "bulk"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown region 'mars-north-1'; known regions: ")
    assert "us-east-1" in done.stderr
