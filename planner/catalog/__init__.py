"""The instance catalog: one row per (instance type, region) with specs and prices.

Sources (live API, bulk offer files, cache, bundled snapshot, CSV import) all produce a
:class:`Catalog`; the planner reads only this module's types. ``planner.catalog.store`` chooses
among the sources; this module holds only the data and pure look-ups on it.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable


@dataclass(frozen=True)
class InstanceOffer:
    """One instance type in one region, with its specs and current prices (USD per hour)."""

    instance_type: str
    region: str
    vcpus: int
    memory_gib: float
    arch: str
    """``x86_64`` or ``arm64`` (the first architecture the type supports)."""
    on_demand_usd_h: float | None
    spot_usd_h: float | None = None
    """The lowest latest spot price over the region's zones."""
    spot_median_usd_h: float | None = None
    """The median over the zones of the latest spot price."""
    gpus: int = 0
    network: str = ""
    current_generation: bool = True
    physical_cores: int | None = None
    interruption_bucket: str | None = None
    """AWS Spot Advisor's frequency of interruption bucket, e.g. ``<5%``, when known."""
    source: str = ""
    fetched_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    spot_zones: tuple[tuple[str, float], ...] = ()
    """``(zone, price)``: the latest spot price in each zone that offers the type, sorted by zone.
    A zone is named by its AZ ID (``use1-az2``) where the source gives one, else by its name
    (``us-east-1a``); empty when a source gives only the summary. Spot prices differ by zone, and
    a plan launches in one zone, so plans are priced per zone (``planner.candidates``)."""

    @property
    def family(self) -> str:
        """The part of the type name before the first dot, e.g. ``c6i``."""
        return self.instance_type.split(".", 1)[0]


@dataclass(frozen=True)
class Catalog:
    """A set of offers and where they came from."""

    offers: tuple[InstanceOffer, ...]
    source: str
    """e.g. ``snapshot``, ``cache``, ``bulk offer files``, ``price list API``, ``import``."""
    fetched_at: datetime
    vcpu_quotas: dict[str, dict[str, float]] = field(default_factory=dict)
    """region -> {"on-demand": vCPUs, "spot": vCPUs}, when service quotas were read."""
    spot_fetched_at: datetime | None = None
    """When the spot prices were read; None when the catalog carries no spot prices."""
    origin: str = ""
    """Where the offers were first read (``bulk offer files``, ``price list API``, ``import``,
    ``snapshot``) when ``source`` names a store they came through, e.g. ``cache``."""

    def find(self, instance_type: str, region: str | None = None) -> InstanceOffer | None:
        """The offer for ``instance_type`` in ``region`` (any region when None: the cheapest)."""
        matches = [o for o in self.offers if o.instance_type == instance_type and (region is None or o.region == region)]
        if not matches:
            return None
        return min(matches, key=lambda o: (o.on_demand_usd_h is None, o.on_demand_usd_h or 0.0, o.region))

    def regions(self) -> list[str]:
        """The regions the catalog has offers in, sorted."""
        return sorted({o.region for o in self.offers})

    def has_spot(self) -> bool:
        """True when at least one offer carries a spot price."""
        return any(o.spot_usd_h is not None for o in self.offers)

    def select(
        self,
        *,
        regions: Iterable[str] | None = None,
        families: Iterable[str] | None = None,
        min_vcpus: int = 0,
        min_memory_gib: float = 0.0,
    ) -> "Catalog":
        """A catalog with only the offers matching every given filter, in a stable order."""
        region_set = set(regions) if regions else None
        family_set = set(families) if families else None
        kept = tuple(
            sorted(
                (
                    o
                    for o in self.offers
                    if (region_set is None or o.region in region_set)
                    and (family_set is None or o.family in family_set)
                    and o.vcpus >= min_vcpus
                    and o.memory_gib >= min_memory_gib
                ),
                key=offer_sort_key,
            )
        )
        return replace(self, offers=kept)


def offer_sort_key(offer: InstanceOffer) -> tuple:
    """Region, then family, then size (vCPUs, memory), then name: the order tables are shown in."""
    return (offer.region, offer.family, offer.vcpus, offer.memory_gib, offer.instance_type)


_LOCAL_SUFFIX = r"-[a-z]{3}-\d+[a-z]?"
ZONE_NAME_SUFFIX = re.compile(rf"^[a-z]$|^{_LOCAL_SUFFIX}$")
"""What follows the Region code in an Availability Zone name (``us-east-1a``) or a Local Zone's
(``us-east-1-bos-1a``): https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-availability-zones.html"""
ZONE_ID = re.compile(r"^([a-z]{2})[a-z]*(\d+)(-[a-z]{3}\d+)?-az\d+$")
"""An AZ ID (``use1-az2``, ``apne1-az4``; a Local Zone's ``usw2-lax1-az1``, its third group): letters
from the Region code, its number, ``-az`` and a number (same page). Unlike a zone name it is the same
physical zone in every account (https://docs.aws.amazon.com/global-infrastructure/latest/regions/az-ids.html)."""


def is_zone_id(zone: str) -> bool:
    """True for an AZ ID, False for a zone name."""
    return bool(ZONE_ID.match(zone))


def is_local_zone(zone: str) -> bool:
    """True for a Local Zone (``use1-atl2-az1``, ``us-east-1-bos-1a``). "To use a Local Zone, you
    must first enable it. Next, you create a subnet in the Local Zone"
    (https://docs.aws.amazon.com/local-zones/latest/ug/how-local-zones-work.html): a default VPC
    has no subnet there, so d2c does not plan in one."""
    found = ZONE_ID.match(zone)
    return bool(found[3]) if found else bool(re.search(rf"{_LOCAL_SUFFIX}$", zone))


def zone_in_region(zone: str, region: str) -> bool:
    """True when ``zone`` (a name or an AZ ID) can be a zone of ``region``."""
    if zone.startswith(region) and ZONE_NAME_SUFFIX.match(zone[len(region):]):
        return True
    found = ZONE_ID.match(zone)
    return bool(found) and region.startswith(found[1]) and region.endswith(f"-{found[2]}")


def zone_prices(pairs: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``(zone, price)`` pairs in zone order, one per zone (the lowest when a zone appears twice)."""
    best: dict[str, float] = {}
    for zone, price in pairs:
        if price is not None and (zone not in best or price < best[zone]):
            best[zone] = float(price)
    return tuple(sorted(best.items()))


def encode_spot_zones(pairs: tuple[tuple[str, float], ...]) -> str:
    """``use1-az1=0.0188;use1-az2=0.0189``: the zone prices as one CSV cell or cache column."""
    return ";".join(f"{zone}={format(price, '.10g')}" for zone, price in pairs)


def decode_spot_zones(text: str, region: str | None) -> tuple[tuple[str, float], ...]:
    """The inverse of :func:`encode_spot_zones`. With ``region``, every entry is checked (a file
    from outside; ValueError names the first bad entry); None trusts text d2c wrote itself."""
    if region is None:
        return tuple((zone, float(price)) for zone, _, price in (entry.partition("=") for entry in text.split(";")))
    pairs = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        zone, sep, price = entry.partition("=")
        zone = zone.strip()
        if not sep or not zone_in_region(zone, region):
            raise ValueError(f"'{entry}' is not zone=price with a zone of {region} such as {region}a")
        try:
            value = float(price)
        except ValueError:
            raise ValueError(f"'{entry}': '{price}' is not a number") from None
        if not 0 < value < float("inf"):
            raise ValueError(f"'{entry}': the price must be a finite number above 0")
        pairs.append((zone, value))
    return zone_prices(pairs)


def spot_summary(zone_prices: Iterable[float]) -> tuple[float | None, float | None]:
    """(lowest, median) of the latest spot price per zone; (None, None) when there is none."""
    prices = sorted(p for p in zone_prices if p is not None)
    if not prices:
        return None, None
    return prices[0], float(statistics.median(prices))
