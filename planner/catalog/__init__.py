"""The instance catalog: one row per (instance type, region) with specs and prices.

Sources (live API, bulk offer files, cache, bundled snapshot, CSV import) all produce a
:class:`Catalog`; the planner reads only this module's types. ``planner.catalog.store`` chooses
among the sources; this module holds only the data and pure look-ups on it.
"""

from __future__ import annotations

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
    gpus: int = 0
    network: str = ""
    current_generation: bool = True
    physical_cores: int | None = None
    interruption_bucket: str | None = None
    """AWS Spot Advisor's frequency of interruption bucket, e.g. ``<5%``, when known."""
    source: str = ""
    fetched_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

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


def spot_summary(zone_prices: Iterable[float]) -> tuple[float | None, float | None]:
    """(lowest, median) of the latest spot price per zone; (None, None) when there is none."""
    prices = sorted(p for p in zone_prices if p is not None)
    if not prices:
        return None, None
    return prices[0], float(statistics.median(prices))
