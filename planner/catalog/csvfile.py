"""Catalog CSV files: d2c's own columns (DESIGN.md "catalog") and SkyPilot's AWS catalog.

d2c's columns, one row per (instance type, region)::

    instance_type,region,vcpus,memory_gib,arch,on_demand_usd_h,spot_usd_h,spot_median_usd_h,
    gpus,network,current_generation,physical_cores,interruption_bucket,source,fetched_at,spot_zones

``instance_type``, ``region``, ``vcpus``, ``memory_gib`` and ``on_demand_usd_h`` are required
(``on_demand_usd_h`` may be empty when ``spot_usd_h`` is given); the others may be left out.
``fetched_at`` is ISO-8601 (a date alone means midnight UTC). ``spot_zones`` is the latest spot
price per zone, ``use1-az1=0.0188;use1-az2=0.0189`` (AZ IDs or zone names of the row's region);
when given, ``spot_usd_h`` and ``spot_median_usd_h`` are its lowest and median.

SkyPilot's ``vms.csv`` has one row per (type, zone) with the columns ``InstanceType``,
``vCPUs``, ``MemoryGiB``, ``Price``, ``SpotPrice``, ``Region``, ``AvailabilityZone`` and optionally
``AcceleratorCount`` and ``Arch``; it becomes one offer per (type, region) that keeps the spot
price of each zone (``AvailabilityZone`` holds AZ IDs such as ``use1-az2``) with their lowest and
median. It carries no date, so the file's modification time is
taken as when its prices were read.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from d2c.errors import UsageError
from d2c.files import atomic_write_text
from planner.catalog import Catalog, InstanceOffer, decode_spot_zones, encode_spot_zones, offer_sort_key, spot_summary, zone_in_region, zone_prices

COLUMNS = (
    "instance_type",
    "region",
    "vcpus",
    "memory_gib",
    "arch",
    "on_demand_usd_h",
    "spot_usd_h",
    "spot_median_usd_h",
    "gpus",
    "network",
    "current_generation",
    "physical_cores",
    "interruption_bucket",
    "source",
    "fetched_at",
    "spot_zones",
)
REQUIRED = ("instance_type", "region", "vcpus", "memory_gib", "on_demand_usd_h")
SKYPILOT_REQUIRED = ("InstanceType", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region", "AvailabilityZone")

_GRAVITON = re.compile(r"^[a-z]+\d+g")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


def guess_arch(instance_type: str) -> str:
    """``arm64`` for Graviton families (a ``g`` right after the generation digit), else ``x86_64``."""
    return "arm64" if _GRAVITON.match(instance_type) else "x86_64"


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 date or time as an aware UTC datetime (naive values are taken as UTC)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class _Row:
    """One data row with its line number, turning bad values into one-line UsageErrors."""

    __slots__ = ("path", "line", "values", "index")

    def __init__(self, path: Path, line: int, values: list[str], index: dict[str, int]):
        self.path, self.line, self.values, self.index = path, line, values, index

    def fail(self, column: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: line {self.line}, column '{column}': {problem}")

    def text(self, column: str) -> str:
        # Rows are padded with one empty cell past the header, where absent columns point.
        return self.values[self.index.get(column, -1)].strip()

    def required_text(self, column: str) -> str:
        value = self.text(column)
        if not value:
            raise self.fail(column, "is empty; every row needs it")
        return value

    def number(self, column: str, *, required: bool = False, integer: bool = False) -> float | None:
        value = self.text(column)
        if not value:
            if required:
                raise self.fail(column, "is empty; every row needs it")
            return None
        try:
            number = float(value)
        except ValueError:
            raise self.fail(column, f"'{value}' is not a number") from None
        if number != number or number < 0 or number == float("inf"):
            raise self.fail(column, f"'{value}' must be a finite number >= 0")
        if integer and number != int(number):
            raise self.fail(column, f"'{value}' must be a whole number")
        return number


def read_catalog_csv(path: Path, *, source: str = "import") -> Catalog:
    """Read a catalog CSV in d2c's columns or SkyPilot's; malformed input raises UsageError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it as a UTF-8 CSV file ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise UsageError(f"{path}: line 1: the file is empty; expected a header row with {', '.join(REQUIRED)}") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: line 1: not valid CSV ({exc})") from None
    index = {name: position for position, name in enumerate(header)}
    if "InstanceType" in index and "instance_type" not in index:
        missing = [name for name in SKYPILOT_REQUIRED if name not in index]
        if missing:
            raise UsageError(f"{path}: line 1: SkyPilot catalog lacks column '{missing[0]}'")
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(microsecond=0)
        return _read_skypilot(path, reader, index, mtime, source)
    missing = [name for name in REQUIRED if name not in index]
    if missing:
        raise UsageError(
            f"{path}: line 1: missing column '{missing[0]}'; expected d2c's columns "
            f"({', '.join(COLUMNS)}) or SkyPilot's ({', '.join(SKYPILOT_REQUIRED)})"
        )
    return _read_d2c(path, reader, index, source)


def _lines(path: Path, reader, index: dict[str, int]):
    """(line number, values padded past the header) for each non-blank data row."""
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UsageError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
        if not "".join(values).strip():
            continue
        if len(values) > len(index):
            raise UsageError(f"{path}: line {reader.line_num}: {len(values)} fields but the header has {len(index)}")
        values.extend([""] * (len(index) + 1 - len(values)))
        yield reader.line_num, values


def _rows(path: Path, reader, index: dict[str, int]):
    for line, values in _lines(path, reader, index):
        yield _Row(path, line, values, index)


_ARCHES = ("x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac")
_INF = float("inf")


def _fast_offer(values: list[str], positions: list[int], stamps: dict[str, datetime], now: datetime, source: str) -> InstanceOffer | None:
    """The offer for a well-formed row, or None so that the careful path can name what is wrong.

    Most catalogs are machine-written and clean; this keeps loading 50,000 rows well under the
    planner's budget, while :func:`_careful_offer` re-reads any row this declines.
    """
    (instance_type, region, vcpus, memory, arch, on_demand, spot, spot_median, gpus, network, generation, cores,
     bucket, row_source, stamp, zones) = [values[p] for p in positions]
    if zones.strip():
        return None
    if not instance_type or not region or not (on_demand or spot) or (arch and arch not in _ARCHES):
        return None
    fetched_at = stamps.get(stamp) if stamp else now
    generation = generation.lower()
    if fetched_at is None or (generation and generation not in _TRUE and generation not in _FALSE):
        return None
    try:
        on_demand_f = float(on_demand) if on_demand else None
        spot_f = float(spot) if spot else None
        median_f = float(spot_median) if spot_median else None
        vcpus_i, memory_f = int(vcpus), float(memory)
        gpus_i = int(gpus) if gpus else 0
        cores_i = int(cores) if cores else None
    except ValueError:
        return None
    for number in (on_demand_f, spot_f, median_f, memory_f):
        if number is not None and not 0 <= number < _INF:
            return None
    if vcpus_i < 1 or memory_f <= 0 or gpus_i < 0 or (cores_i is not None and cores_i < 0) or instance_type != instance_type.strip():
        return None
    return InstanceOffer(instance_type, region.strip(), vcpus_i, memory_f, arch or guess_arch(instance_type), on_demand_f,
                         spot_f, median_f, gpus_i, network.strip(), generation not in _FALSE, cores_i, bucket.strip() or None,
                         row_source.strip() or source, fetched_at)


def _careful_offer(row: _Row, stamps: dict[str, datetime], now: datetime, source: str) -> InstanceOffer:
    instance_type = row.required_text("instance_type")
    region = row.required_text("region")
    on_demand = row.number("on_demand_usd_h")
    spot = row.number("spot_usd_h")
    if on_demand is None and spot is None:
        raise row.fail("on_demand_usd_h", "is empty and so is spot_usd_h; a row needs a price")
    stamp_text = row.text("fetched_at")
    fetched_at = now
    if stamp_text:
        fetched_at = stamps.get(stamp_text)
        if fetched_at is None:
            try:
                fetched_at = stamps[stamp_text] = parse_timestamp(stamp_text)
            except ValueError:
                raise row.fail("fetched_at", f"'{stamp_text}' is not an ISO-8601 date or time") from None
    generation = row.text("current_generation").lower()
    if generation and generation not in _TRUE | _FALSE:
        raise row.fail("current_generation", f"'{generation}' is not true or false")
    arch = row.text("arch") or guess_arch(instance_type)
    if arch not in _ARCHES:
        raise row.fail("arch", f"'{arch}' is not x86_64 or arm64")
    cores = row.number("physical_cores", integer=True)
    vcpus, memory = _sizes(row, "vcpus", "memory_gib", instance_type)
    spot_median = row.number("spot_median_usd_h")
    zones = ()
    if row.text("spot_zones"):
        try:
            zones = decode_spot_zones(row.text("spot_zones"), region)
        except ValueError as exc:
            raise row.fail("spot_zones", str(exc)) from None
        spot, spot_median = spot_summary(price for _, price in zones)
    return InstanceOffer(
        instance_type=instance_type,
        region=region,
        vcpus=vcpus,
        memory_gib=memory,
        arch=arch,
        on_demand_usd_h=on_demand,
        spot_usd_h=spot,
        spot_median_usd_h=spot_median,
        gpus=int(row.number("gpus", integer=True) or 0),
        network=row.text("network"),
        current_generation=generation not in _FALSE,
        physical_cores=int(cores) if cores is not None else None,
        interruption_bucket=row.text("interruption_bucket") or None,
        source=row.text("source") or source,
        fetched_at=fetched_at,
        spot_zones=zones,
    )


def _sizes(row: _Row, vcpus_column: str, memory_column: str, instance_type: str) -> tuple[int, float]:
    """(vCPUs, memory GiB) of a row; an instance type with no vCPU or no memory is refused."""
    vcpus = row.number(vcpus_column, required=True, integer=True)
    if vcpus < 1:
        raise row.fail(vcpus_column, f"{instance_type} has {vcpus:g} vCPUs; every instance type has at least 1")
    memory = row.number(memory_column, required=True)
    if memory <= 0:
        raise row.fail(memory_column, f"{instance_type} has {memory:g} GiB of memory; it must be more than 0")
    return int(vcpus), float(memory)


def _read_d2c(path: Path, reader, index: dict[str, int], source: str) -> Catalog:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    stamps: dict[str, datetime] = {}
    positions = [index.get(column, -1) for column in COLUMNS]
    offers: dict[tuple[str, str], InstanceOffer] = {}
    for line, values in _lines(path, reader, index):
        offer = _fast_offer(values, positions, stamps, now, source) or _careful_offer(_Row(path, line, values, index), stamps, now, source)
        key = (offer.instance_type, offer.region)
        if key in offers:
            raise _Row(path, line, values, index).fail("instance_type", f"{offer.instance_type} in {offer.region} appears twice")
        offers[key] = offer
    return _catalog(path, offers.values(), source)


def _read_skypilot(path: Path, reader, index: dict[str, int], mtime: datetime, source: str) -> Catalog:
    groups: dict[tuple[str, str], dict] = {}
    for row in _rows(path, reader, index):
        instance_type = row.required_text("InstanceType")
        region = row.required_text("Region")
        zone = row.required_text("AvailabilityZone")
        if not zone_in_region(zone, region):
            raise row.fail("AvailabilityZone", f"'{zone}' is not a zone of {region} (an AZ ID such as use1-az2 or a name such as {region}a)")
        group = groups.get((instance_type, region))
        if group is None:
            vcpus, memory = _sizes(row, "vCPUs", "MemoryGiB", instance_type)
            group = groups[(instance_type, region)] = {
                "vcpus": vcpus,
                "memory": memory,
                "price": None,
                "spots": [],
                "gpus": row.number("AcceleratorCount") or 0,
                "arch": row.text("Arch") or guess_arch(instance_type),
            }
        price = row.number("Price")
        if price is not None and group["price"] is None:
            group["price"] = price
        spot = row.number("SpotPrice")
        if spot is not None and spot > 0:
            group["spots"].append((zone, spot))
    offers = []
    for (instance_type, region), group in groups.items():
        zones = zone_prices(group["spots"])
        low, median = spot_summary(price for _, price in zones)
        offers.append(
            InstanceOffer(
                instance_type=instance_type,
                region=region,
                vcpus=int(group["vcpus"]),
                memory_gib=float(group["memory"]),
                arch=group["arch"],
                on_demand_usd_h=group["price"],
                spot_usd_h=low,
                spot_median_usd_h=median,
                gpus=int(group["gpus"]),
                source=source,
                fetched_at=mtime,
                spot_zones=zones,
            )
        )
    return _catalog(path, offers, source)


def _catalog(path: Path, offers, source: str) -> Catalog:
    ordered = tuple(sorted(offers, key=offer_sort_key))
    if not ordered:
        raise UsageError(f"{path}: line 2: no data rows after the header")
    oldest = min(o.fetched_at for o in ordered)
    spot_at = min((o.fetched_at for o in ordered if o.spot_usd_h is not None), default=None)
    return Catalog(offers=ordered, source=source, fetched_at=oldest, spot_fetched_at=spot_at, origin=source)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".10g")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return encode_spot_zones(value)
    return str(value)


def catalog_csv_text(catalog: Catalog) -> str:
    """The catalog in d2c's CSV columns, one row per offer in table order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    getters: tuple[Callable[[InstanceOffer], object], ...] = tuple(
        (lambda o, name=name: getattr(o, name)) for name in COLUMNS
    )
    for offer in sorted(catalog.offers, key=offer_sort_key):
        writer.writerow([_cell(get(offer)) for get in getters])
    return out.getvalue()


def write_catalog_csv(catalog: Catalog, path: Path) -> None:
    """Write the catalog to ``path`` in d2c's columns, atomically."""
    atomic_write_text(Path(path), catalog_csv_text(catalog))
