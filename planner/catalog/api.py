"""The live catalog, read from AWS's APIs with the caller's credentials.

Per region: ``ec2.describe_instance_type_offerings`` (which types the region sells),
``ec2.describe_instance_types`` (specs), ``ec2.describe_spot_price_history`` (Linux/UNIX, the
latest price per zone), ``service-quotas.get_service_quota`` (running on-demand and spot vCPU
limits, codes ``L-1216C47A`` and ``L-34B43A08``), and the Price List Query API,
``pricing.get_products`` (on-demand Linux, shared tenancy, no pre-installed software, capacity
status ``Used``). Each PriceList entry is a JSON string whose ``terms.OnDemand`` hold a price
dimension with ``pricePerUnit.USD``.

Clients come from ``client_factory(service, region)`` (default :func:`d2c.aws.client`) so the
tests can point EC2 at moto's server and the price list, which moto lacks, at a botocore Stubber.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from d2c.aws import aws_errors, client
from planner.catalog import Catalog, InstanceOffer, offer_sort_key, spot_summary, zone_prices

SOURCE = "price list API"
PRICING_REGION = "us-east-1"
"""The Price List Query API answers only in a few regions; us-east-1 covers every region's prices."""
QUOTA_CODES = {"on-demand": "L-1216C47A", "spot": "L-34B43A08"}
"""Running On-Demand / All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests, in vCPUs."""
PRICE_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}

ClientFactory = Callable[[str, str], Any]


def price_filters(region: str) -> list[dict[str, str]]:
    """The ``get_products`` filters for on-demand Linux prices in ``region``."""
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in PRICE_FILTERS.items()]
    return filters + [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]


def on_demand_price(price_item: str | dict) -> tuple[str, float] | None:
    """(instance type, USD per hour) from one PriceList entry, or None when it has no hourly USD price."""
    item = json.loads(price_item) if isinstance(price_item, str) else price_item
    attributes = item.get("product", {}).get("attributes", {})
    instance_type = attributes.get("instanceType")
    if not instance_type:
        return None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is None or dimension.get("unit", "Hrs") != "Hrs":
                continue
            price = float(usd)
            if price > 0:
                return instance_type, price
    return None


def on_demand_prices(pricing, region: str) -> dict[str, float]:
    """Instance type -> on-demand Linux USD/h in ``region``, over every page of ``get_products``."""
    prices: dict[str, float] = {}
    paginator = pricing.get_paginator("get_products")
    for page in paginator.paginate(ServiceCode="AmazonEC2", Filters=price_filters(region), FormatVersion="aws_v1"):
        for entry in page.get("PriceList", []):
            found = on_demand_price(entry)
            if found is not None:
                prices.setdefault(*found)
    return prices


def offered_types(ec2) -> set[str]:
    """The instance types the client's region offers."""
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    return {
        offering["InstanceType"]
        for page in paginator.paginate(LocationType="region")
        for offering in page.get("InstanceTypeOfferings", [])
    }


def instance_specs(ec2, instance_types: Iterable[str]) -> dict[str, dict]:
    """``describe_instance_types`` entries for the given types, 100 names per request."""
    names = sorted(instance_types)
    specs: dict[str, dict] = {}
    paginator = ec2.get_paginator("describe_instance_types")
    for start in range(0, len(names), 100):
        for page in paginator.paginate(InstanceTypes=names[start : start + 100]):
            for spec in page.get("InstanceTypes", []):
                specs[spec["InstanceType"]] = spec
    return specs


def spot_prices(ec2, instance_types: Iterable[str], now: datetime) -> dict[str, tuple[tuple[str, float], ...]]:
    """Instance type -> ``(zone, price)``: the latest Linux/UNIX spot price in each zone.

    A zone is named by its AZ ID (``AvailabilityZoneId``, a member of the ``SpotPrice`` shape in
    EC2's API model as botocore ships it) when the response carries one, so that
    prices read in one account mean the same zones in another
    (https://docs.aws.amazon.com/global-infrastructure/latest/regions/az-ids.html); else by the
    zone name (``AvailabilityZone``,
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_SpotPrice.html).
    """
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    names = sorted(instance_types)
    paginator = ec2.get_paginator("describe_spot_price_history")
    for start in range(0, len(names), 100):
        pages = paginator.paginate(
            InstanceTypes=names[start : start + 100], ProductDescriptions=["Linux/UNIX"], StartTime=now, EndTime=now
        )
        for page in pages:
            for entry in page.get("SpotPriceHistory", []):
                key = (entry["InstanceType"], entry.get("AvailabilityZoneId") or entry["AvailabilityZone"])
                stamp = entry.get("Timestamp") or now
                if key not in latest or stamp > latest[key][0]:
                    latest[key] = (stamp, float(entry["SpotPrice"]))
    per_type: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (instance_type, zone), (_stamp, price) in latest.items():
        if price > 0:
            per_type[instance_type].append((zone, price))
    return {instance_type: zone_prices(pairs) for instance_type, pairs in per_type.items()}


def vcpu_quotas(quotas) -> dict[str, float]:
    """{"on-demand": vCPUs, "spot": vCPUs} from service quotas; a quota that cannot be read is left out."""
    from botocore.exceptions import ClientError

    limits: dict[str, float] = {}
    for market, code in QUOTA_CODES.items():
        try:
            answer = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)
        except ClientError:
            continue
        value = answer.get("Quota", {}).get("Value")
        if value is not None:
            limits[market] = float(value)
    return limits


def fetch_api_catalog(
    regions: list[str],
    *,
    families: Iterable[str] | None = None,
    client_factory: ClientFactory = client,
    progress: Callable[[str, str], None] | None = None,
    now: datetime | None = None,
) -> Catalog:
    """The live catalog for ``regions``: specs, on-demand and spot prices, vCPU quotas.

    ``progress(region, step)`` is called before each step. AWS errors become one-line d2c errors
    (missing credentials: exit 2; network or service failure: exit 1).
    """
    from d2c.aws import have_credentials
    from d2c.errors import UsageError

    if not have_credentials():
        raise UsageError("reading the price list API: no AWS credentials found; use '--source bulk', or run 'aws configure'")
    stamp = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    family_set = set(families) if families else None
    pricing = client_factory("pricing", PRICING_REGION)
    offers: list[InstanceOffer] = []
    quotas: dict[str, dict[str, float]] = {}
    for region in regions:
        ec2 = client_factory("ec2", region)
        with aws_errors(f"listing instance types in {region}"):
            _step(progress, region, "instance types")
            types = {t for t in offered_types(ec2) if family_set is None or t.split(".", 1)[0] in family_set}
            specs = instance_specs(ec2, types)
        with aws_errors(f"reading on-demand prices for {region}"):
            _step(progress, region, "on-demand prices")
            prices = on_demand_prices(pricing, region)
        with aws_errors(f"reading spot prices for {region}"):
            _step(progress, region, "spot prices")
            spots = spot_prices(ec2, types, stamp)
        with aws_errors(f"reading vCPU quotas for {region}"):
            _step(progress, region, "vCPU quotas")
            limits = vcpu_quotas(client_factory("service-quotas", region))
        if limits:
            quotas[region] = limits
        for instance_type in sorted(types):
            spec = specs.get(instance_type)
            price = prices.get(instance_type)
            zones = spots.get(instance_type, ())
            if spec is None or (price is None and not zones):
                continue
            offers.append(offer_from_spec(spec, region, price, zones, source=SOURCE, fetched_at=stamp))
    return Catalog(
        offers=tuple(sorted(offers, key=offer_sort_key)),
        source=SOURCE,
        fetched_at=stamp,
        vcpu_quotas=quotas,
        spot_fetched_at=stamp if any(o.spot_usd_h is not None for o in offers) else None,
        origin=SOURCE,
    )


def _step(progress: Callable[[str, str], None] | None, region: str, step: str) -> None:
    if progress is not None:
        progress(region, step)


def offer_from_spec(
    spec: dict,
    region: str,
    price: float | None,
    spot_zones: tuple[tuple[str, float], ...] = (),
    *,
    source: str,
    fetched_at: datetime,
) -> InstanceOffer:
    """An offer from one ``describe_instance_types`` entry (AWS's response shape) and its prices."""
    spot_low, spot_median = spot_summary(p for _, p in spot_zones)
    vcpu = spec.get("VCpuInfo", {})
    arches = spec.get("ProcessorInfo", {}).get("SupportedArchitectures") or ["x86_64"]
    return InstanceOffer(
        instance_type=spec["InstanceType"],
        region=region,
        vcpus=int(vcpu.get("DefaultVCpus", 0)),
        memory_gib=round(spec.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024, 3),
        arch=arches[0],
        on_demand_usd_h=price,
        spot_usd_h=spot_low,
        spot_median_usd_h=spot_median,
        gpus=sum(int(gpu.get("Count", 0)) for gpu in spec.get("GpuInfo", {}).get("Gpus", [])),
        network=spec.get("NetworkInfo", {}).get("NetworkPerformance", ""),
        current_generation=bool(spec.get("CurrentGeneration", True)),
        physical_cores=vcpu.get("DefaultCores"),
        source=source,
        fetched_at=fetched_at,
        spot_zones=spot_zones,
    )
