"""Which catalog d2c uses, how old it is, and refreshing it.

Order of sources: a refresh reads the live APIs (with credentials) or the public bulk offer files
(without) and stores the result in the local cache; every other command reads the cache when it
has one, else the snapshot bundled with d2c, and never touches the network.

Time-to-live: on-demand prices 7 days, spot prices 6 hours. ``D2C_CATALOG_TTL`` and
``D2C_CATALOG_SPOT_TTL`` (e.g. ``3d``, ``12h``, ``90m``) change them. Past its TTL a cache is still
used (it holds what the user last read or imported) but its age text says so; spot prices past theirs are
dropped, so the planner offers only on-demand capacity rather than trusting a stale spot price.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from d2c.errors import UsageError, WorkError
from d2c.durations import parse_duration
from planner.catalog import Catalog, offer_sort_key
from planner.catalog.cache import load_cache, save_cache
from planner.catalog.csvfile import read_catalog_csv

SNAPSHOT_PATH = Path(__file__).parent / "data" / "snapshot.csv"
DEFAULT_TTL = timedelta(days=7)
DEFAULT_SPOT_TTL = timedelta(hours=6)
SOURCES = ("api", "bulk")

def ttl() -> timedelta:
    """How long on-demand prices count as current (``D2C_CATALOG_TTL``, default 7 days)."""
    value = os.environ.get("D2C_CATALOG_TTL")
    return timedelta(seconds=parse_duration(value, "D2C_CATALOG_TTL")) if value else DEFAULT_TTL


def spot_ttl() -> timedelta:
    """How long spot prices count as current (``D2C_CATALOG_SPOT_TTL``, default 6 hours)."""
    value = os.environ.get("D2C_CATALOG_SPOT_TTL")
    return timedelta(seconds=parse_duration(value, "D2C_CATALOG_SPOT_TTL")) if value else DEFAULT_SPOT_TTL


@functools.lru_cache(maxsize=1)
def load_snapshot() -> Catalog:
    """The catalog bundled with d2c (read once per process)."""
    catalog = read_catalog_csv(SNAPSHOT_PATH, source="snapshot")
    return dataclasses.replace(catalog, source="snapshot", origin="snapshot")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def _without_stale_spot(catalog: Catalog, now: datetime) -> Catalog:
    if catalog.spot_fetched_at is None or now - catalog.spot_fetched_at <= spot_ttl():
        return catalog
    offers = tuple(dataclasses.replace(o, spot_usd_h=None, spot_median_usd_h=None, spot_zones=()) for o in catalog.offers)
    return dataclasses.replace(catalog, offers=offers, spot_fetched_at=None)


def current_catalog(*, regions: list[str] | None = None, now: datetime | None = None) -> Catalog:
    """The catalog to plan with: the cache when present, else the bundled snapshot.

    Never touches the network. With ``regions``, only their offers; a region the catalog does not
    cover is a UsageError naming it and the regions it does cover.
    """
    moment = _now(now)
    cached = load_cache()
    catalog = load_snapshot()
    if cached is not None and cached.offers:
        catalog = _without_stale_spot(cached, moment)
    if not regions:
        return catalog
    check_regions(regions, catalog)
    return catalog.select(regions=regions)


def check_regions(regions: list[str], catalog: Catalog) -> None:
    """Raise a UsageError for the first region ``catalog`` has no offers in."""
    known = catalog.regions()
    for region in regions:
        if region not in known:
            raise UsageError(
                f"unknown region '{region}': the catalog ({catalog_label(catalog)}) covers {', '.join(known)}; "
                f"for another region run 'd2c catalog refresh --regions {region}'"
            )


def catalog_label(catalog: Catalog) -> str:
    """Where the catalog's prices came from, in words, e.g. ``bulk offer files, cached``."""
    origin = catalog.origin or catalog.source
    if catalog.source == "snapshot" or origin == "snapshot":
        published = sorted({o.source for o in catalog.offers} - {"snapshot", ""})
        return "snapshot bundled with d2c" + (f", from {'; '.join(published)}" if published else "")
    if catalog.source == "cache" and origin != "cache":
        return f"{origin}, cached"
    return origin


def _age(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0)
    if seconds < 3600:
        minutes = int(seconds // 60)
        return "just read" if minutes < 1 else f"{minutes} min old"
    if seconds < 86400:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''} old"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} old"


def describe_age(catalog: Catalog, now: datetime | None = None) -> str:
    """One line saying how old the catalog's prices are and where they came from.

    e.g. ``on-demand prices from 2026-11-20 (5 days old, bulk offer files, cached); no spot prices,
    so only on-demand plans``.
    """
    moment = _now(now)
    text = (
        f"on-demand prices from {catalog.fetched_at.astimezone(timezone.utc):%Y-%m-%d} "
        f"({_age(moment - catalog.fetched_at)}, {catalog_label(catalog)})"
    )
    if catalog.spot_fetched_at is not None and catalog.has_spot():
        text += f"; spot prices from {catalog.spot_fetched_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({_age(moment - catalog.spot_fetched_at)})"
    else:
        text += "; no current spot prices, so only on-demand plans"
    if moment - catalog.fetched_at > ttl():
        text += "; run 'd2c catalog refresh' for current prices"
    return text


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did: the catalog now in use, whether it is new, and why not if it is not."""

    catalog: Catalog
    refreshed: bool
    problem: str = ""
    bad_input: bool = False
    """True when the problem is the caller's to fix (e.g. ``api`` without credentials): exit 2."""


def default_regions() -> list[str]:
    """The regions a refresh reads when none are named: those of the cache and the snapshot."""
    cached = load_cache()
    regions = set(load_snapshot().regions())
    if cached is not None:
        regions.update(cached.regions())
    return sorted(regions)


def known_aws_regions() -> list[str]:
    """Every commercial EC2 region botocore knows (offline)."""
    import boto3

    return sorted(boto3.session.Session().get_available_regions("ec2"))


def merge_into_cache(fresh: Catalog, *, over_snapshot: bool = False) -> Catalog:
    """``fresh`` plus the cached offers of regions it did not read, saved as the new cache.

    With ``over_snapshot`` and no cache yet, the bundled snapshot's other regions are kept, so an
    imported price list for one region does not hide the rest of the catalog.
    """
    cached = load_cache() or (load_snapshot() if over_snapshot else None)
    offers = list(fresh.offers)
    fetched_at, spot_at, quotas = fresh.fetched_at, fresh.spot_fetched_at, dict(fresh.vcpu_quotas)
    origin = fresh.origin or fresh.source
    if cached is not None:
        refreshed = set(fresh.regions())
        kept = [o for o in cached.offers if o.region not in refreshed]
        if kept:
            offers.extend(kept)
            fetched_at = min(fetched_at, min(o.fetched_at for o in kept))
            if cached.origin != origin:
                origin = f"{origin} + {cached.origin}"
            if cached.spot_fetched_at is not None and any(o.spot_usd_h is not None for o in kept):
                spot_at = min(spot_at, cached.spot_fetched_at) if spot_at else cached.spot_fetched_at
        quotas = {region: value for region, value in cached.vcpu_quotas.items() if region not in refreshed} | quotas
    merged = Catalog(
        offers=tuple(sorted(offers, key=offer_sort_key)),
        source=fresh.source,
        fetched_at=fetched_at,
        vcpu_quotas=quotas,
        spot_fetched_at=spot_at,
        origin=origin,
    )
    save_cache(merged)
    return merged


def refresh(
    *,
    regions: list[str] | None = None,
    source: str | None = None,
    families: list[str] | None = None,
    on_progress: Callable[..., None] | None = None,
) -> RefreshOutcome:
    """Read a fresh catalog and store it in the cache; on failure keep the cache (or snapshot).

    ``source`` is ``api`` or ``bulk`` (default: ``api`` when AWS credentials are found, else
    ``bulk``). An unknown region or source raises a UsageError before anything is read. When the
    source cannot be read (no network, a service error, ``api`` without credentials, a region the
    source does not list) the outcome carries the catalog still in use, ``refreshed=False``, the
    problem in one line, and ``bad_input`` when the problem is the caller's to fix.
    """
    from d2c.aws import have_credentials
    from planner.catalog.api import fetch_api_catalog
    from planner.catalog.bulk import fetch_bulk_catalog

    if source is not None and source not in SOURCES:
        raise UsageError(f"--source: '{source}' is not one of {', '.join(SOURCES)}")
    chosen = source or ("api" if have_credentials() else "bulk")
    wanted = list(regions) if regions else default_regions()
    known = known_aws_regions()
    for region in wanted:
        if region not in known:
            raise UsageError(f"unknown region '{region}'; known regions: {', '.join(known)}")
    fetcher = fetch_api_catalog if chosen == "api" else fetch_bulk_catalog
    try:
        fresh = fetcher(wanted, families=families, progress=on_progress)
    except WorkError as exc:
        return RefreshOutcome(catalog=current_catalog(), refreshed=False, problem=exc.message)
    except UsageError as exc:
        return RefreshOutcome(catalog=current_catalog(), refreshed=False, problem=exc.message, bad_input=True)
    if not fresh.offers:
        return RefreshOutcome(catalog=current_catalog(), refreshed=False, problem=f"the {chosen} source listed no instance types for {', '.join(wanted)}")
    merged = merge_into_cache(fresh)
    return RefreshOutcome(catalog=dataclasses.replace(merged, source="cache"), refreshed=True)


def import_catalog(path: Path) -> Catalog:
    """Read a catalog CSV (d2c's or SkyPilot's columns) and make it the cache, labelled ``import``."""
    imported = read_catalog_csv(path, source="import")
    merged = merge_into_cache(imported, over_snapshot=True)
    return dataclasses.replace(merged, source="cache")
