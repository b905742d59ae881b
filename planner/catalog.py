"""The instance catalog: one row per (instance type, region) with specs and prices.

Sources (live API, bulk offer files, cache, bundled snapshot, CSV import) all produce a
:class:`Catalog`; the planner reads only this module's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


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
