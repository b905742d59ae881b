"""Choosing the catalog (cache, else snapshot), its age text, TTLs and the SQLite cache."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from d2c.errors import UsageError
from planner.catalog import Catalog, InstanceOffer
from planner.catalog.cache import cache_path, load_cache, save_cache
from d2c.durations import parse_duration
from planner.catalog.store import current_catalog, describe_age, load_snapshot, merge_into_cache

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def bulk_catalog(fetched_at, spot_at=None, region="us-east-1"):
    offers = (
        InstanceOffer("c6i.large", region, 2, 4.0, "x86_64", 0.085, 0.03 if spot_at else None, 0.032 if spot_at else None,
                      source="bulk offer files", fetched_at=fetched_at),
        InstanceOffer("c6i.xlarge", region, 4, 8.0, "x86_64", 0.17, source="bulk offer files", fetched_at=fetched_at),
    )
    return Catalog(offers, "bulk offer files", fetched_at, {region: {"on-demand": 64.0}}, spot_at, "bulk offer files")


def test_without_a_cache_the_snapshot_is_used_and_says_so():
    catalog = current_catalog()
    assert catalog.source == "snapshot"
    later = catalog.fetched_at + timedelta(days=10, hours=1)
    assert describe_age(catalog, now=later) == (
        f"on-demand prices from {catalog.fetched_at:%Y-%m-%d} (10 days old, snapshot bundled with d2c, from "
        "skypilot-org/skypilot-catalog catalogs/v8/aws/vms.csv @ 00148f2af367); "
        "no current spot prices, so only on-demand plans; run 'd2c catalog refresh' for current prices"
    )


def test_the_cache_wins_over_the_snapshot_and_its_age_is_stated():
    save_cache(bulk_catalog(NOW - timedelta(days=5)))
    catalog = current_catalog(now=NOW)
    assert catalog.source == "cache" and catalog.origin == "bulk offer files"
    assert [o.instance_type for o in catalog.offers] == ["c6i.large", "c6i.xlarge"]
    assert catalog.vcpu_quotas == {"us-east-1": {"on-demand": 64.0}}
    assert describe_age(catalog, now=NOW) == (
        "on-demand prices from 2026-11-20 (5 days old, bulk offer files, cached); "
        "no current spot prices, so only on-demand plans"
    )


def test_spot_prices_older_than_their_ttl_are_dropped(monkeypatch):
    save_cache(bulk_catalog(NOW - timedelta(days=1), spot_at=NOW - timedelta(hours=2)))
    fresh = current_catalog(now=NOW)
    assert fresh.find("c6i.large").spot_usd_h == 0.03
    assert describe_age(fresh, now=NOW).endswith("; spot prices from 2026-11-25 10:00 UTC (2 hours old)")
    stale = current_catalog(now=NOW + timedelta(hours=5))
    assert stale.find("c6i.large").spot_usd_h is None and not stale.has_spot()
    monkeypatch.setenv("D2C_CATALOG_SPOT_TTL", "12h")
    assert current_catalog(now=NOW + timedelta(hours=5)).find("c6i.large").spot_usd_h == 0.03


def test_on_demand_ttl_is_configurable(monkeypatch):
    save_cache(bulk_catalog(NOW - timedelta(days=3)))
    assert "run 'd2c catalog refresh'" not in describe_age(current_catalog(), now=NOW)
    monkeypatch.setenv("D2C_CATALOG_TTL", "2d")
    assert describe_age(current_catalog(), now=NOW).endswith("; run 'd2c catalog refresh' for current prices")
    monkeypatch.setenv("D2C_CATALOG_TTL", "a week")
    with pytest.raises(UsageError, match="D2C_CATALOG_TTL: 'a week' is not a duration"):
        describe_age(current_catalog(), now=NOW)


def test_regions_filter_and_unknown_region():
    catalog = current_catalog(regions=["eu-west-1"])
    assert catalog.regions() == ["eu-west-1"]
    with pytest.raises(UsageError) as caught:
        current_catalog(regions=["us-east-1", "sa-east-1"])
    assert str(caught.value).startswith("unknown region 'sa-east-1': the catalog (snapshot bundled with d2c, from skypilot-org/")
    assert "covers af-south-1, ap-east-1, " in str(caught.value)
    assert "d2c catalog refresh --regions sa-east-1" in str(caught.value)


def test_refreshing_one_region_keeps_the_others_cached():
    merge_into_cache(bulk_catalog(NOW - timedelta(days=2), region="eu-west-1"))
    merge_into_cache(bulk_catalog(NOW, region="us-east-1"))
    cached = load_cache()
    assert cached.regions() == ["eu-west-1", "us-east-1"]
    assert cached.fetched_at == NOW - timedelta(days=2)
    assert set(cached.vcpu_quotas) == {"eu-west-1", "us-east-1"}


def test_zone_prices_are_cached_and_a_cache_from_before_them_is_still_read():
    import sqlite3
    from dataclasses import replace

    zones = (("use1-az1", 0.03), ("use1-az2", 0.05))
    catalog = bulk_catalog(NOW - timedelta(days=1), spot_at=NOW - timedelta(hours=2))
    catalog = replace(catalog, offers=tuple(replace(o, spot_zones=zones) if o.spot_usd_h else o for o in catalog.offers))
    save_cache(catalog)
    assert load_cache().find("c6i.large").spot_zones == zones
    # A version-1 cache (no zone column) gives its offers without zone prices instead of being dropped.
    with sqlite3.connect(cache_path()) as db:
        db.execute("ALTER TABLE offers DROP COLUMN spot_zones")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.close()
    old = load_cache()
    assert old is not None and old.find("c6i.large").spot_usd_h == 0.03 and old.find("c6i.large").spot_zones == ()


def test_an_unreadable_cache_falls_back_to_the_snapshot():
    cache_path().write_bytes(b"not a database")
    assert current_catalog().source == "snapshot"


def test_save_cache_that_fails_leaves_the_old_cache(monkeypatch):
    save_cache(bulk_catalog(NOW))
    before = cache_path().read_bytes()
    broken = dataclasses.replace(bulk_catalog(NOW), offers=(object(),))
    with pytest.raises(AttributeError):
        save_cache(broken)
    assert cache_path().read_bytes() == before
    assert [p.name for p in cache_path().parent.iterdir()] == [cache_path().name]


def test_find_without_region_returns_the_cheapest():
    snapshot = load_snapshot()
    offer = snapshot.find("m5.large")
    assert offer.on_demand_usd_h == min(o.on_demand_usd_h for o in snapshot.offers if o.instance_type == "m5.large")
    assert snapshot.find("m5.large", "mars-1") is None


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("6h", 21600), ("90m", 5400), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_show_prints_a_table_with_the_age_on_stderr():
    from click.testing import CliRunner

    from d2c.cli import cli

    result = CliRunner().invoke(cli, ["catalog", "show", "--region", "eu-central-1", "--family", "m7g", "--min-memory", "64"])
    assert result.exit_code == 0, result.output
    assert "m7g.16xlarge" in result.stdout and "m7g.metal" in result.stdout and "m7g.large" not in result.stdout
    assert "1.5642" in result.stdout  # m7g.8xlarge in eu-central-1, as published
    assert "snapshot bundled with d2c" in result.stderr
    empty = CliRunner().invoke(cli, ["catalog", "show", "--family", "x9z"])
    assert empty.exit_code == 0 and "no instance type matches these filters" in empty.stderr


def test_importing_one_region_keeps_the_bundled_regions(tmp_path):
    from planner.catalog.store import import_catalog

    price_list = tmp_path / "negotiated.csv"
    price_list.write_text(
        "instance_type,region,vcpus,memory_gib,on_demand_usd_h,spot_usd_h,fetched_at\n"
        "c6i.large,us-east-1,2,4,0.05,,2026-11-24T00:00:00Z\n"
    )
    snapshot_regions = set(load_snapshot().regions())

    catalog = import_catalog(price_list)

    assert set(catalog.regions()) == snapshot_regions
    assert catalog.find("c6i.large", "us-east-1").on_demand_usd_h == 0.05
    assert catalog.find("c6i.large", "eu-west-1").on_demand_usd_h == load_snapshot().find("c6i.large", "eu-west-1").on_demand_usd_h
    assert current_catalog(regions=["ap-southeast-1"]).find("c5.large", "ap-southeast-1") is not None
