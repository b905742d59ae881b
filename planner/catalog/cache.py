"""The local catalog cache: one SQLite file in the user's cache directory.

A refresh never edits the cache in place: :func:`save_cache` writes a complete new database
beside it and renames it over the old one only once everything is written, so a refresh that
fails half-way (network gone, disk full, Ctrl-C) leaves the previous cache exactly as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

from d2c.state import cache_dir
from planner.catalog import Catalog, InstanceOffer, decode_spot_zones, encode_spot_zones, offer_sort_key
from planner.catalog.csvfile import parse_timestamp

CACHE_NAME = "catalog.sqlite"
SCHEMA_VERSION = 2
"""2 added ``spot_zones``; a version-1 cache is still read (its offers have no zone prices)."""
READABLE = ("1", "2")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE offers (
    instance_type TEXT NOT NULL, region TEXT NOT NULL, vcpus INTEGER NOT NULL, memory_gib REAL NOT NULL,
    arch TEXT NOT NULL, on_demand_usd_h REAL, spot_usd_h REAL, spot_median_usd_h REAL, gpus INTEGER NOT NULL,
    network TEXT NOT NULL, current_generation INTEGER NOT NULL, physical_cores INTEGER,
    interruption_bucket TEXT, source TEXT NOT NULL, fetched_at TEXT NOT NULL, spot_zones TEXT NOT NULL,
    PRIMARY KEY (instance_type, region)
);
"""
_FIELDS = (
    "instance_type", "region", "vcpus", "memory_gib", "arch", "on_demand_usd_h", "spot_usd_h", "spot_median_usd_h",
    "gpus", "network", "current_generation", "physical_cores", "interruption_bucket", "source", "fetched_at", "spot_zones",
)


def cache_path() -> Path:
    """Where the catalog cache lives (``$D2C_CACHE_DIR/catalog.sqlite`` or the XDG cache)."""
    return cache_dir() / CACHE_NAME


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def save_cache(catalog: Catalog, path: Path | None = None) -> Path:
    """Replace the cache with ``catalog`` atomically; the old cache stays until the new one is whole."""
    target = Path(path) if path is not None else cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with sqlite3.connect(tmp) as db:
            db.executescript(_SCHEMA)
            meta = {
                "schema": str(SCHEMA_VERSION),
                "origin": catalog.origin or catalog.source,
                "fetched_at": _iso(catalog.fetched_at),
                "spot_fetched_at": _iso(catalog.spot_fetched_at),
                "vcpu_quotas": json.dumps(catalog.vcpu_quotas, sort_keys=True),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            db.executemany(
                f"INSERT INTO offers VALUES ({', '.join('?' * len(_FIELDS))})",
                (
                    (
                        o.instance_type, o.region, o.vcpus, o.memory_gib, o.arch, o.on_demand_usd_h, o.spot_usd_h,
                        o.spot_median_usd_h, o.gpus, o.network, int(o.current_generation), o.physical_cores,
                        o.interruption_bucket, o.source, o.fetched_at.isoformat(), encode_spot_zones(o.spot_zones),
                    )
                    for o in sorted(catalog.offers, key=offer_sort_key)
                ),
            )
        db.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def load_cache(path: Path | None = None, *, regions: list[str] | None = None) -> Catalog | None:
    """The cached catalog (only ``regions`` when given), or None when there is no usable cache.

    A cache file that is unreadable or of another schema counts as no cache: the caller falls
    back to the snapshot rather than failing a ``d2c recommend``.
    """
    source = Path(path) if path is not None else cache_path()
    if not source.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("schema") not in READABLE:
                return None
            # A version-1 cache has no zone prices: read them as empty.
            columns = ["''" if (name, meta["schema"]) == ("spot_zones", "1") else name for name in _FIELDS]
            query = f"SELECT {', '.join(columns)} FROM offers"
            params: list[str] = []
            if regions:
                query += f" WHERE region IN ({', '.join('?' * len(regions))})"
                params = list(regions)
            # Rows were written in table order, so rowid order needs no sort here.
            query += " ORDER BY rowid"
            rows = db.execute(query, params).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    stamps: dict[str, datetime] = {}
    offers = []
    # Columns are stored in InstanceOffer's field order, so each row maps onto it positionally.
    for row in rows:
        stamp = row[14]
        fetched_at = stamps.get(stamp) or stamps.setdefault(stamp, parse_timestamp(stamp))
        zone_prices = decode_spot_zones(row[15], None) if row[15] else ()
        offers.append(InstanceOffer(*row[:10], bool(row[10]), *row[11:14], fetched_at, zone_prices))
    spot_at = meta.get("spot_fetched_at")
    return Catalog(
        offers=tuple(offers),
        source="cache",
        fetched_at=parse_timestamp(meta["fetched_at"]),
        vcpu_quotas=json.loads(meta.get("vcpu_quotas") or "{}"),
        spot_fetched_at=parse_timestamp(spot_at) if spot_at else None,
        origin=meta.get("origin", ""),
    )
