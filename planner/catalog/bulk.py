"""AWS's public bulk offer files: on-demand prices and specs without credentials.

The region index (``/offers/v1.0/aws/AmazonEC2/current/region_index.json``) names each region's
current offer file; the regional ``index.csv`` starts with metadata lines (``FormatVersion``,
``Disclaimer``, ``Publication Date``, ``Version``, ``OfferCode``), then a header row, then one row
per (SKU, term, price dimension). The real files are hundreds of MB, so they are read as a stream,
one row at a time, keeping only on-demand Linux rows for shared tenancy with no pre-installed
software and capacity status ``Used``; nothing else is held in memory.

``D2C_PRICING_BULK_URL`` overrides the base URL (tests serve the files from a local HTTP server).
These files carry no spot prices.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, TextIO

from d2c.errors import UsageError, WorkError
from planner.catalog import Catalog, InstanceOffer, offer_sort_key
from planner.catalog.csvfile import guess_arch, parse_timestamp

DEFAULT_BASE_URL = "https://pricing.us-east-1.amazonaws.com"
INDEX_PATH = "/offers/v1.0/aws/AmazonEC2/current/region_index.json"
SOURCE = "bulk offer files"
TIMEOUT_S = 60.0

Progress = Callable[[int, int | None], None]
"""Called with (bytes read so far, total bytes or None) while a file streams in."""

_WANTED = {
    "TermType": "OnDemand",
    "Operating System": "Linux",
    "Tenancy": "Shared",
    "Pre Installed S/W": "NA",
    "CapacityStatus": "Used",
}
_MEMORY = re.compile(r"([\d.,]+)\s*(GiB|GB|MiB|TiB)", re.IGNORECASE)


def base_url() -> str:
    """The bulk offer files' base URL: ``D2C_PRICING_BULK_URL`` or AWS's."""
    return os.environ.get("D2C_PRICING_BULK_URL", DEFAULT_BASE_URL).rstrip("/")


def _open(url: str, what: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise WorkError(f"{what}: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkError(f"{what}: cannot reach {url} ({reason}); check the network") from None


def region_index(url: str | None = None) -> dict[str, str]:
    """Region code -> absolute URL of that region's current offer CSV, from the region index."""
    index_url = (url or base_url()) + INDEX_PATH
    with _open(index_url, "reading the bulk offer region index") as response:
        try:
            document = json.load(response)
            regions = document["regions"]
            return {
                code: (url or base_url()) + entry["currentVersionUrl"].rsplit(".", 1)[0] + ".csv"
                for code, entry in regions.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WorkError(f"reading the bulk offer region index: {index_url} is not a region index ({exc})") from None


class _CountingReader(io.RawIOBase):
    """A byte stream that reports how much of the response has been read."""

    def __init__(self, response, progress: Progress | None):
        self._response = response
        self._progress = progress
        self.total = int(response.headers.get("Content-Length") or 0) or None
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._response.readinto(buffer)
        self.count += n
        if self._progress is not None:
            self._progress(self.count, self.total)
        return n


@dataclass(frozen=True)
class OfferFileRows:
    """The metadata of one regional offer file and an iterator over its filtered price rows."""

    publication_date: datetime | None
    rows: Iterator[dict[str, str]]


def filtered_rows(stream: TextIO, *, instance_types: Iterable[str] | None = None, families: Iterable[str] | None = None) -> OfferFileRows:
    """Parse an offer CSV from ``stream``: its metadata, then only the wanted on-demand rows.

    Rows are yielded as dicts of the columns d2c uses; the stream is read lazily, row by row.
    """
    reader = csv.reader(stream)
    published: datetime | None = None
    header: list[str] | None = None
    for row in reader:
        if not row:
            continue
        if row[0] == "SKU":
            header = row
            break
        if row[0] == "Publication Date" and len(row) > 1:
            try:
                published = parse_timestamp(row[1])
            except ValueError:
                published = None
    if header is None:
        raise WorkError("bulk offer file: no header row (a line starting with SKU) found")
    index = {name: position for position, name in enumerate(header)}
    missing = [name for name in (*_WANTED, "Instance Type", "PricePerUnit", "Unit", "vCPU", "Memory") if name not in index]
    if missing:
        raise WorkError(f"bulk offer file: header lacks column '{missing[0]}'")
    checks = [(index[name], value) for name, value in _WANTED.items()]
    type_col = index["Instance Type"]
    type_set = set(instance_types) if instance_types else None
    family_set = set(families) if families else None
    keep = ("Instance Type", "PricePerUnit", "Currency", "Unit", "vCPU", "Memory", "Network Performance",
            "Physical Processor", "Processor Architecture", "Current Generation", "GPU", "Region Code", "Location")
    positions = [(name, index[name]) for name in keep if name in index]

    def rows() -> Iterator[dict[str, str]]:
        width = len(header)
        for row in reader:
            if len(row) < width:
                continue
            if any(row[position] != value for position, value in checks):
                continue
            instance_type = row[type_col]
            if type_set is not None and instance_type not in type_set:
                continue
            if family_set is not None and instance_type.split(".", 1)[0] not in family_set:
                continue
            yield {name: row[position] for name, position in positions}

    return OfferFileRows(published, rows())


def _memory_gib(text: str) -> float:
    match = _MEMORY.search(text)
    if not match:
        return 0.0
    value = float(match.group(1).replace(",", ""))
    unit = match.group(2).lower()
    return value / 1024 if unit == "mib" else value * 1024 if unit == "tib" else value


def _arch(row: dict[str, str]) -> str:
    processor = row.get("Physical Processor", "")
    if "Graviton" in processor or "arm" in row.get("Processor Architecture", "").lower():
        return "arm64"
    return guess_arch(row["Instance Type"]) if not processor else "x86_64"


def offers_from_rows(rows: Iterable[dict[str, str]], region: str, fetched_at: datetime) -> list[InstanceOffer]:
    """One offer per instance type from filtered offer-file rows (the first positive price wins)."""
    offers: dict[str, InstanceOffer] = {}
    for row in rows:
        instance_type = row["Instance Type"]
        if instance_type in offers or row.get("Currency", "USD") != "USD" or row.get("Unit", "Hrs") != "Hrs":
            continue
        try:
            price = float(row["PricePerUnit"])
            vcpus = int(float(row["vCPU"] or 0))
        except ValueError:
            continue
        if price <= 0 or vcpus <= 0:
            continue
        gpu_text = row.get("GPU", "")
        offers[instance_type] = InstanceOffer(
            instance_type=instance_type,
            region=region,
            vcpus=vcpus,
            memory_gib=_memory_gib(row.get("Memory", "")),
            arch=_arch(row),
            on_demand_usd_h=price,
            gpus=int(gpu_text) if gpu_text.isdigit() else 0,
            network=row.get("Network Performance", ""),
            current_generation=row.get("Current Generation", "Yes") != "No",
            source=SOURCE,
            fetched_at=fetched_at,
        )
    return list(offers.values())


def fetch_region(
    region: str,
    csv_url: str,
    *,
    families: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> tuple[list[InstanceOffer], datetime]:
    """Stream one region's offer CSV; return its offers and the file's publication date."""
    what = f"reading the bulk offer file for {region}"
    response = _open(csv_url, what)
    try:
        counter = _CountingReader(response, progress)
        text = io.TextIOWrapper(io.BufferedReader(counter, buffer_size=1 << 16), encoding="utf-8", newline="")
        parsed = filtered_rows(text, families=families)
        fetched_at = parsed.publication_date or datetime.now(timezone.utc).replace(microsecond=0)
        offers = offers_from_rows(parsed.rows, region, fetched_at)
        expected = counter.total
        if expected is not None and counter.count < expected:
            raise WorkError(f"{what}: the download stopped after {counter.count} of {expected} bytes; try again")
    except (http.client.HTTPException, OSError, csv.Error, UnicodeDecodeError) as exc:
        raise WorkError(f"{what}: the download failed part-way ({type(exc).__name__}: {exc}); try again") from None
    finally:
        response.close()
    return offers, fetched_at


def fetch_bulk_catalog(
    regions: list[str],
    *,
    families: Iterable[str] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> Catalog:
    """On-demand offers for ``regions`` from the bulk offer files (no credentials needed).

    ``progress(region, bytes_read, total_bytes)`` is called as each file streams in. A region the
    index does not list is a UsageError naming the regions it does list.
    """
    index = region_index()
    unknown = [region for region in regions if region not in index]
    if unknown:
        raise UsageError(f"unknown region '{unknown[0]}'; the bulk offer files list: {', '.join(sorted(index))}")
    offers: list[InstanceOffer] = []
    dates: list[datetime] = []
    for region in regions:
        callback = (lambda done, total, region=region: progress(region, done, total)) if progress else None
        region_offers, published = fetch_region(region, index[region], families=families, progress=callback)
        offers.extend(region_offers)
        dates.append(published)
    fetched_at = min(dates) if dates else datetime.now(timezone.utc)
    return Catalog(offers=tuple(sorted(offers, key=offer_sort_key)), source=SOURCE, fetched_at=fetched_at, origin=SOURCE)
