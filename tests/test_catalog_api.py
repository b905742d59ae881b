"""The live API path: EC2 specs, offerings and spot prices from moto's threaded server.

moto implements neither the Price List Query API (``pricing.get_products``) nor
``service-quotas.get_service_quota`` for EC2, so those two go through botocore's Stubber with
responses in AWS's documented shapes: PriceList entries are JSON strings whose
``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`` holds the hourly price, and
pages are linked by ``NextToken``; a quota answer is ``{"Quota": {"QuotaCode", "Value", ...}}``.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from d2c.aws import client
from d2c.errors import UsageError
from planner.catalog.api import fetch_api_catalog, on_demand_price, price_filters
from planner.catalog.store import load_snapshot

pytestmark = pytest.mark.integration


def price_item(instance_type: str, region: str, usd: str) -> str:
    """One PriceList entry exactly as get_products returns it: a JSON document in a string."""
    sku = f"SKU{abs(hash((instance_type, region))) % 10**8:08d}"
    return json.dumps({
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux", "tenancy": "Shared",
                "preInstalledSw": "NA", "capacitystatus": "Used", "licenseModel": "No License required",
                "usagetype": f"BoxUsage:{instance_type}", "operation": "RunInstances", "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs", "endRange": "Inf", "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                            "appliesTo": [], "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "beginRange": "0",
                            "pricePerUnit": {"USD": usd},
                        }
                    },
                    "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF", "termAttributes": {},
                }
            }
        },
        "version": "20261120183201",
        "publicationDate": "2026-11-20T18:32:01Z",
    })


PRICES = {
    "us-east-1": {"c6i.large": "0.0850000000", "c6i.xlarge": "0.1700000000", "m7g.large": "0.0816000000"},
    "eu-west-1": {"c6i.large": "0.0912000000", "m7g.large": "0.0911000000"},
}


def stubbed_pricing(regions):
    pricing = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(pricing)
    for region in regions:
        items = [price_item(t, region, usd) for t, usd in PRICES[region].items()]
        expected = {"ServiceCode": "AmazonEC2", "Filters": price_filters(region), "FormatVersion": "aws_v1"}
        # Two pages linked by NextToken, as the real API pages its answers.
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": items[:1], "NextToken": f"{region}-2"}, expected)
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": items[1:]}, dict(expected, NextToken=f"{region}-2"))
    stub.activate()
    return pricing, stub


def stubbed_quotas(region, on_demand=64.0, spot=32.0):
    quotas = boto3.client("service-quotas", region_name=region)
    stub = Stubber(quotas)
    for code, value, name in (("L-1216C47A", on_demand, "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
                              ("L-34B43A08", spot, "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")):
        stub.add_response(
            "get_service_quota",
            {"Quota": {"ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)", "QuotaCode": code,
                       "QuotaName": name, "Value": value, "Unit": "None", "Adjustable": True, "GlobalQuota": False,
                       "QuotaArn": f"arn:aws:servicequotas:{region}:123456789012:ec2/{code}"}},
            {"ServiceCode": "ec2", "QuotaCode": code},
        )
    stub.activate()
    return quotas, stub


def test_price_list_entry_parsing_reads_the_on_demand_usd_dimension():
    assert on_demand_price(price_item("c6i.large", "us-east-1", "0.0850000000")) == ("c6i.large", 0.085)
    zero = json.loads(price_item("c6i.large", "us-east-1", "0.0000000000"))
    assert on_demand_price(zero) is None


def test_live_catalog_from_moto_ec2_and_stubbed_price_list(aws):
    regions = ["us-east-1", "eu-west-1"]
    pricing, pricing_stub = stubbed_pricing(regions)
    quota_clients = {region: stubbed_quotas(region, on_demand=64.0 if region == "us-east-1" else 16.0) for region in regions}

    def factory(service, region):
        if service == "pricing":
            return pricing
        if service == "service-quotas":
            return quota_clients[region][0]
        return client(service, region)

    steps = []
    catalog = fetch_api_catalog(regions, families=["c6i", "m7g"], client_factory=factory,
                                progress=lambda region, step: steps.append((region, step)))
    pricing_stub.assert_no_pending_responses()
    for _quotas, stub in quota_clients.values():
        stub.assert_no_pending_responses()

    large = catalog.find("c6i.large", "us-east-1")
    # Specs come from moto's recorded describe_instance_types output.
    assert (large.vcpus, large.memory_gib, large.arch, large.physical_cores) == (2, 4.0, "x86_64", 1)
    assert large.on_demand_usd_h == 0.085
    assert catalog.find("m7g.large", "eu-west-1").arch == "arm64"
    assert catalog.find("m7g.large", "eu-west-1").on_demand_usd_h == 0.0911
    # moto answers every zone with the same spot price; min and median over zones agree.
    assert large.spot_usd_h is not None and large.spot_usd_h == large.spot_median_usd_h
    assert catalog.spot_fetched_at is not None
    # Each zone's price is kept; moto's answer names zones only (no AvailabilityZoneId).
    offered = {o["Location"] for o in client("ec2", "us-east-1").describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["c6i.large"]}])["InstanceTypeOfferings"]}
    assert {zone for zone, _ in large.spot_zones} <= offered and len(large.spot_zones) > 1
    # Types the region offers but the price list did not price still carry their spot price.
    unpriced = catalog.find("c6i.2xlarge", "us-east-1")
    assert unpriced is not None and unpriced.on_demand_usd_h is None and unpriced.spot_usd_h is not None
    assert catalog.vcpu_quotas == {"us-east-1": {"on-demand": 64.0, "spot": 32.0}, "eu-west-1": {"on-demand": 16.0, "spot": 32.0}}
    assert {o.family for o in catalog.offers} == {"c6i", "m7g"}
    assert ("eu-west-1", "spot prices") in steps


def test_spot_prices_are_kept_per_zone_by_az_id():
    """DescribeSpotPriceHistory's documented answer with ``AvailabilityZoneId`` (moto leaves it out)."""
    from datetime import datetime, timezone

    import boto3
    from botocore.stub import ANY, Stubber

    from planner.catalog.api import spot_prices

    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")

    def row(zone, zone_id, price, minutes_ago):
        return {"AvailabilityZone": zone, "AvailabilityZoneId": zone_id, "InstanceType": "c6i.large", "ProductDescription": "Linux/UNIX",
                "SpotPrice": price, "Timestamp": datetime(2026, 11, 25, 11, 60 - minutes_ago, tzinfo=timezone.utc)}

    history = [row("us-east-1a", "use1-az6", "0.0350", 10), row("us-east-1a", "use1-az6", "0.0400", 30),
               row("us-east-1b", "use1-az1", "0.0310", 5)]
    with Stubber(ec2) as stub:
        stub.add_response("describe_spot_price_history", {"SpotPriceHistory": history},
                          {"InstanceTypes": ["c6i.large"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY, "EndTime": ANY})
        prices = spot_prices(ec2, ["c6i.large"], now)
    assert prices == {"c6i.large": (("use1-az1", 0.031), ("use1-az6", 0.035))}, "the latest price per zone, by AZ ID"


def test_api_source_without_credentials_is_bad_usage(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UsageError, match="no AWS credentials found; use '--source bulk'"):
        fetch_api_catalog(["us-east-1"], client_factory=lambda service, region: pytest.fail("no client without credentials"))


def test_cli_refresh_from_the_api_without_credentials_falls_back_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "d2c", "catalog", "refresh", "--source", "api", "--regions", "us-east-1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"catalog not refreshed; using the catalog already here: on-demand prices from {load_snapshot().fetched_at:%Y-%m-%d}")
    assert lines[-1] == "error: reading the price list API: no AWS credentials found; use '--source bulk', or run 'aws configure'"
