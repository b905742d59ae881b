"""The EC2 provider: launch a plan's instances, reach them over SSH, delete everything afterwards.

Per run it creates a key pair (private key 0600 in the run folder), a security group open for SSH
only to the caller's address and for all traffic inside the group, and the plan's instances, all
in one Availability Zone (below), tagged ``d2c:run``, ``d2c:role`` and ``Name``. Every resource
goes into the journal as soon as AWS returns its id; teardown deletes what the journal lists and
whatever else carries the run's tag (``executor.leftovers``), so resources a crash kept out of the
journal are found too. Replacement hosts (after a spot interruption) reuse the run's key pair,
security group, zone and subnet.

Launch parameters, each from AWS's RunInstances reference
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html):

* ``InstanceInitiatedShutdownBehavior=terminate``, so any of the dead-man bounds deletes the
  instance, not just stops it; user-data that runs ``shutdown -h +N`` where cloud-init exists,
  and for imported VM images the in-guest systemd timer baked at the run's bound
  (``executor.image``), plus the server-side schedule of ``executor.scheduler`` when the account
  has a role for it. The run's notes say which bounds it has.
* ``CreditSpecification`` for burstable types (t2, t3, t3a, t4g): the credit mode the plan was
  priced with (``standard`` unless it says ``unlimited``); without it AWS launches t3/t3a/t4g
  as ``unlimited`` and bills surplus credits.
* With ``connect="private"`` no public IPv4 address is requested, so none is billed ($0.005 per
  address-hour): in a subnet that maps public addresses on launch (``MapPublicIpOnLaunch``, as a
  default VPC's do) the network interface is given ``AssociatePublicIpAddress=False``; a subnet
  that does not map them gives none anyway.
* Spot: ``MaxPrice`` is the type's on-demand price, a cap on surprises, not the planning price
  (AWS advises against a low maximum: "your instances will be interrupted more frequently",
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_SpotMarketOptions.html); the
  instance's accrued price is the zone's actual spot price (``describe_spot_price_history``) at
  launch and whenever the watchdog asks again.
* ``MetadataOptions`` with ``HttpTokens=required`` (IMDSv2 only,
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-IMDS-new-instances.html) and
  an encrypted gp3 root volume (the account's default EBS KMS key, or ``--kms-key``,
  https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption.html).

One zone per run: the zone the plan priced when it names one, else among the region's zones that
offer every type of the plan (``describe_instance_type_offerings`` by zone) the one where the
plan's spot instances are cheapest (the first for an on-demand plan); the default VPC's subnet
there, or ``--subnet`` (whose zone then rules). Traffic between zones is billed and slows MPI,
so every role and replacement goes to that subnet. When EC2 answers ``InsufficientInstanceCapacity``
or ``Unsupported`` before anything of the launch runs, the next zone offering every type is tried
(the spot prices read again for it); with ``--subnet`` the zone is the user's and is kept.

Placement (the descriptor's ``placement``): a placement group ``d2c-<run>`` of that strategy,
created before the first launch (tagged ``d2c:run``), journaled at once, named with the zone in
every RunInstances call of the run and deleted at teardown once its instances are gone. A cluster
group packs the hosts into one Availability Zone for low latency between them; a spread group puts
each host on distinct hardware, at most seven running instances per zone per group, so a spread
plan of more hosts is refused (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-strategies.html,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreatePlacementGroup.html). Types
whose ``PlacementGroupInfo.SupportedStrategies`` (DescribeInstanceTypes,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_PlacementGroupInfo.html) lack the
strategy (burstable t3 has no ``cluster``) run without a group, as the run's events say.
Teardown deletes the journaled group and any other tagged with the run (DescribePlacementGroups
with a ``tag:`` filter, https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribePlacementGroups.html),
and ``down --all`` finds tagged groups without a journal. Placement groups cost nothing ("There
is no charge for creating a placement group",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-groups.html), so that search is
asked once, without retries, and a failure to answer it (moto implements no placement groups)
leaves them and lets the teardown go on.

Instances are reached at their public address, or at the private one with ``connect="private"``
(``--connect private`` / ``D2C_CONNECT=private``: for users on a VPN into the VPC, and for the
tests, whose stand-in instances live at private addresses on this machine). Host keys come from
the console output when cloud-init printed them there, else they are pinned on first use in a
known_hosts file of the instance's own (EC2 reuses private addresses, across runs and within one:
a replacement host can get the address of the host it replaces, so a pin never outlives its
instance).
"""

from __future__ import annotations

import os
import re
import time
from decimal import ROUND_DOWN, Decimal
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from d2c.aws import aws_errors, client
from d2c.errors import HostError, HostKeyMismatch, UsageError, WorkError
from d2c.files import atomic_write_text
from d2c.state import runs_dir
from executor import leftovers as tagged
from executor.journal import Journal, Resource
from executor.providers.base import BOOT_ALLOWANCE_S, CapacityError, Machine, ProvisionRequest, machines_from_journal
from planner.billing import is_burstable, surplus_credit_usd_h
from planner.catalog import is_zone_id

RUN_TAG = "d2c:run"
ROLE_TAG = "d2c:role"
UBUNTU_OWNER = "099720109477"
KEY_FILE = "id_d2c"
CHECKIP_URL = "https://checkip.amazonaws.com"
ZONE_CODES = ("Unsupported", "InsufficientInstanceCapacity")
"""Launch errors another zone of the region may not have."""
BASE_IMAGE_PARAMETERS = {
    "ubuntu-24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id",
    "ubuntu-22.04": "/aws/service/canonical/ubuntu/server/22.04/stable/current/{arch}/hvm/ebs-gp3/ami-id",
    "debian-12": "/aws/service/debian/release/12/latest/{arch}",
}
"""SSM public parameters holding the current AMI of each base image d2c knows."""
SPREAD_MAX_PER_ZONE = 7
"""Running instances a spread placement group holds per Availability Zone (module docstring)."""
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
_CAPACITY_CODES = {
    "InsufficientInstanceCapacity": "AWS has no spare capacity for {type} in {region} right now; try again later or pick another plan",
    "InstanceLimitExceeded": "your account's instance limit in {region} is reached; ask AWS for a higher quota or pick a smaller plan",
    "VcpuLimitExceeded": "your account's vCPU quota in {region} is too small for this plan; ask AWS for a higher quota or pick a smaller plan",
    "MaxSpotInstanceCountExceeded": "your account's spot instance quota in {region} is reached; pick an on-demand plan",
    "Unsupported": "{type} is not offered in {region} (or in this subnet's zone); pick another plan",
}


def spot_max_price(price_usd_h: float) -> str:
    """A price as EC2's ``MaxPrice`` string (rounded down, so AWS never bills above it)."""
    return str(Decimal(repr(price_usd_h)).quantize(Decimal("0.000001"), rounding=ROUND_DOWN))


def deadman_user_data(run_id: str, minutes: int) -> str:
    """The first-boot script that bounds an instance's life even when the controller is gone."""
    return (
        "#!/bin/bash\n"
        f"# d2c dead-man switch for run {run_id}: the instance powers off (and, because its\n"
        "# shutdown behaviour is 'terminate', is deleted) even if the desktop never comes back.\n"
        f"shutdown -h +{minutes} 'd2c: run {run_id} reached its budget or deadline limit'\n"
    )


def caller_cidr(override: str | None = None) -> str:
    """The address SSH is opened to: ``override``, ``D2C_SSH_FROM``, or this machine's public IP, as
    a single-address CIDR (/32 for IPv4, /128 for IPv6)."""
    value = override or os.environ.get("D2C_SSH_FROM")
    if not value:
        try:
            with urllib.request.urlopen(CHECKIP_URL, timeout=10) as response:
                value = response.read().decode().strip()
        except OSError:
            raise UsageError(f"could not discover your public address from {CHECKIP_URL}; pass --ssh-from ADDRESS/32 or set D2C_SSH_FROM") from None
    if "/" in value:
        return value
    return f"{value}/128" if ":" in value else f"{value}/32"


def ssh_rule(cidr: str) -> dict[str, Any]:
    """The SSH ingress permission for ``cidr``: IPv4 in ``IpRanges``, IPv6 in ``Ipv6Ranges``
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpPermission.html)."""
    ranges = {"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "d2c controller"}]} if ":" in cidr else {"IpRanges": [{"CidrIp": cidr, "Description": "d2c controller"}]}
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}


def host_key_from_console(output: str) -> str | None:
    """The ed25519 host key cloud-init printed to the console (``type base64``), if any."""
    inside = False
    keys = []
    for line in output.splitlines():
        line = line.strip()
        if line == "-----BEGIN SSH HOST KEY KEYS-----":
            inside = True
        elif line == "-----END SSH HOST KEY KEYS-----":
            inside = False
        elif inside and line:
            fields = line.split()
            if len(fields) >= 2:
                keys.append(f"{fields[0]} {fields[1]}")
    preferred = [k for k in keys if k.startswith("ssh-ed25519 ")]
    return (preferred or keys or [None])[0]


def _public_key(private_key: Path) -> str:
    """The OpenSSH public line of the run's private key."""
    import paramiko

    key = paramiko.PKey.from_path(private_key)
    return f"{key.get_name()} {key.get_base64()}"


def _known_hosts(machine: Machine) -> Path:
    """Where the host key of ``machine`` is pinned on first use."""
    return runs_dir() / machine.run_id / f"known_hosts-{machine.instance_id}"


def _tags(run_id: str, role: str | None, name: str) -> list[dict[str, str]]:
    tags = [{"Key": RUN_TAG, "Value": run_id}, {"Key": "Name", "Value": name}]
    if role:
        tags.append({"Key": ROLE_TAG, "Value": role})
    return tags


def check_spread(placement: str, hosts: int) -> None:
    """Refuse a spread placement of more hosts than one zone's spread group runs (module docstring)."""
    if placement == "spread" and hosts > SPREAD_MAX_PER_ZONE:
        raise UsageError(
            f"placement: spread holds at most {SPREAD_MAX_PER_ZONE} running instances per Availability Zone and the plan has {hosts}; "
            "use 'placement: cluster' or 'none', or a plan with fewer hosts"
        )


class AwsProvider:
    """Hosts on EC2 in one region."""

    name = "aws"
    simulated = False

    def __init__(
        self,
        *,
        region: str,
        connect: str = "public",
        ssh_from: str | None = None,
        subnet_id: str | None = None,
        scheduler_role: str | None = None,
        use_scheduler: bool = True,
        kms_key: str | None = None,
        boot_test: bool = True,
        running_timeout_s: float = 600.0,
        ssh_timeout_s: float = 300.0,
        terminate_timeout_s: float = 600.0,
        poll_s: float = 2.0,
    ):
        if connect not in ("public", "private"):
            raise UsageError(f"--connect {connect}: must be 'public' or 'private'")
        self.region = region
        self.connect = connect
        self.ssh_from = ssh_from
        self.subnet_id = subnet_id
        self.scheduler_role = scheduler_role
        self.use_scheduler = use_scheduler
        self.kms_key = kms_key
        self.boot_test = boot_test
        """Boot every VM image under QEMU before uploading it (``d2c run --no-boot-test`` skips it)."""
        self.running_timeout_s = running_timeout_s
        self.ssh_timeout_s = ssh_timeout_s
        self.terminate_timeout_s = terminate_timeout_s
        self.poll_s = poll_s
        self._ec2 = None
        self._ssm = None
        self._ec2_once = None
        self._maps_public: dict[str, bool] = {}
        self._roots: dict[str, dict[str, Any] | None] = {}
        self._role: tuple[str | None, str | None] | None = None

    @property
    def ec2(self):
        if self._ec2 is None:
            self._ec2 = client("ec2", self.region)
        return self._ec2

    @property
    def ec2_once(self):
        """An EC2 client that asks once, without retries: for searches whose failure must not hold anything up."""
        if self._ec2_once is None:
            self._ec2_once = client("ec2", self.region, attempts=1)
        return self._ec2_once

    @property
    def ssm(self):
        if self._ssm is None:
            self._ssm = client("ssm", self.region)
        return self._ssm

    # -- provisioning ---------------------------------------------------------------------------

    def provision(self, request: ProvisionRequest, journal: Journal) -> list[Machine]:
        """Key pair, security group, zone, instances, schedule; then wait for them to run and answer SSH."""
        run_id = request.run_id
        key_name = self._key_pair(request, journal)
        group_id = self._security_group(request, journal)
        images = self._images(request)
        placement_group = self._placement_group(request, journal)
        tried: list[str] = []
        while True:
            zone, subnet = self._zone_and_subnet(request, journal, tried)
            launched: list[tuple[str, Any]] = []
            try:
                self._launch(request, journal, images, key_name, group_id, placement_group, zone, subnet, launched)
                break
            except CapacityError as exc:
                # Another zone may have the capacity; only before anything of this launch runs, and
                # only when the zone is d2c's to choose (no --subnet, not a replacement in the run's zone).
                if getattr(exc, "code", None) not in ZONE_CODES or launched or self.subnet_id or zone is None or request.first_index:
                    raise
                tried.append(zone)
                journal.update_run(run_id, details={"zone": None, "subnet_id": None})
                journal.event(run_id, "zone-fallback", f"{exc.message}; trying another zone of {self.region}")
        self._bounds(request, journal, [i["InstanceId"] for _, i in launched])
        self._wait_running(request, journal, [i["InstanceId"] for _, i in launched])
        self._record_storage(run_id, journal)
        new_ids = {instance["InstanceId"] for _, instance in launched}
        self._wait_ssh(request, journal, [m for m in machines_from_journal(journal, run_id) if m.instance_id in new_ids])
        return [m for m in machines_from_journal(journal, run_id) if m.instance_id in new_ids]

    def _launch(self, request: ProvisionRequest, journal: Journal, images: dict[str, str], key_name: str, group_id: str,
                placement_group: str | None, zone: str | None, subnet: str | None, launched: list[tuple[str, Any]]) -> None:
        """Launch every role of the request in ``zone``, journaling each instance into ``launched``."""
        run_id = request.run_id
        total = sum(a.count for a in request.allocations)
        for allocation in request.allocations:
            role = request.roles[allocation.role]
            params = self._launch_params(request, allocation, images[allocation.role], key_name, group_id, zone, subnet)
            if placement_group:
                params["Placement"] = {"GroupName": placement_group, **({"AvailabilityZone": zone} if zone else {})}
            instances = self._run_instances(params, allocation.instance_type)
            price = self._launch_price(allocation, zone)
            first = request.first_index.get(allocation.role, 1)
            for index, instance in enumerate(sorted(instances, key=lambda i: i["AmiLaunchIndex"]), start=first):
                name = f"{allocation.role}-{index}"
                launched.append((name, instance))
                # One write with everything needed to price and delete it, so a kill leaves no half row.
                details = {
                    "run_id": run_id,
                    "instance_id": instance["InstanceId"],
                    "role": allocation.role,
                    "name": name,
                    "instance_type": allocation.instance_type,
                    "market": allocation.market,
                    "price_usd_h": price,
                    "planned_price_usd_h": allocation.price_usd_h,
                    "zone": zone,
                    "launched_at": instance["LaunchTime"].timestamp(),
                    "user": role.user,
                    "slots": allocation.workers_per_instance,
                }
                journal.add_resource(Resource(run_id, "instance", instance["InstanceId"], self.region, allocation.role, time.time(), details=details))
                if request.progress:
                    request.progress("launching", len(launched), total)
            with aws_errors("naming the instances"):
                for name, instance in launched[-len(instances):]:
                    self.ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": f"d2c {run_id} {name}"}])

    def _launch_params(self, request: ProvisionRequest, allocation, image_id: str, key_name: str, group_id: str, zone: str | None, subnet: str | None) -> dict[str, Any]:
        """RunInstances parameters for one role (the module docstring says why each is there)."""
        run_id = request.run_id
        name = f"d2c {run_id} {allocation.role}"
        params: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": allocation.instance_type,
            "MinCount": allocation.count,
            "MaxCount": allocation.count,
            "KeyName": key_name,
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": deadman_user_data(run_id, request.deadman_minutes),
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": _tags(run_id, allocation.role, name)},
                {"ResourceType": "volume", "Tags": _tags(run_id, allocation.role, name)},
            ],
        }
        root = self._root_mapping(image_id)
        if root:
            if self.kms_key:
                root = {**root, "Ebs": {**root["Ebs"], "KmsKeyId": self.kms_key}}
            params["BlockDeviceMappings"] = [root]
        if self.connect == "private" and self._maps_public_ip(subnet):
            interface: dict[str, Any] = {"DeviceIndex": 0, "Groups": [group_id], "AssociatePublicIpAddress": False, "DeleteOnTermination": True}
            if subnet:
                interface["SubnetId"] = subnet
            params["NetworkInterfaces"] = [interface]
        else:
            params["SecurityGroupIds"] = [group_id]
            if subnet:
                params["SubnetId"] = subnet
        if zone and not subnet:
            params["Placement"] = {"AvailabilityZone": zone}
        if is_burstable(allocation.instance_type):
            params["CreditSpecification"] = {"CpuCredits": allocation.cpu_credits or "standard"}
        if allocation.market == "spot":
            spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if allocation.on_demand_usd_h:
                # A cap on surprises at the on-demand price; without one EC2 caps at on-demand too.
                spot["MaxPrice"] = spot_max_price(allocation.on_demand_usd_h)
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        return params

    def _placement_group(self, request: ProvisionRequest, journal: Journal) -> str | None:
        """The run's placement group (created once, reused by replacements), or None (module docstring)."""
        run_id = request.run_id
        if request.placement == "none":
            return None
        name = f"d2c-{run_id}"
        if any(r.resource_id == name for r in journal.resources(run_id, "placement_group", live_only=True)):
            return name
        types = sorted({a.instance_type for a in request.allocations})
        with aws_errors("checking which placement the plan's instance types allow"):
            described = self.ec2.describe_instance_types(InstanceTypes=types)["InstanceTypes"]
        unable = sorted(t["InstanceType"] for t in described if request.placement not in t.get("PlacementGroupInfo", {}).get("SupportedStrategies", []))
        if unable:
            journal.event(run_id, "placement", f"no {request.placement} placement group: {', '.join(unable)} cannot be placed in one")
            return None
        with aws_errors(f"creating placement group {name}"):
            self.ec2.create_placement_group(
                GroupName=name,
                Strategy=request.placement,
                TagSpecifications=[{"ResourceType": "placement-group", "Tags": _tags(run_id, None, name)}],
            )
        journal.add_resource(Resource(run_id, "placement_group", name, self.region, None, time.time(), details={"strategy": request.placement}))
        return name

    def _maps_public_ip(self, subnet: str | None) -> bool:
        """True when an instance launched into ``subnet`` would get a public IPv4 address unless told not to
        (``MapPublicIpOnLaunch``; true for a default VPC's subnets, and for no subnet at all)."""
        if subnet is None:
            return True
        if subnet not in self._maps_public:
            with aws_errors(f"reading subnet {subnet}"):
                self._maps_public[subnet] = bool(self.ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0].get("MapPublicIpOnLaunch"))
        return self._maps_public[subnet]

    def _root_mapping(self, image_id: str) -> dict[str, Any] | None:
        """The AMI's root volume as an encrypted gp3 volume of the same snapshot and size."""
        if image_id in self._roots:
            return self._roots[image_id]
        with aws_errors(f"reading image {image_id}"):
            found = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        if not found or not found[0].get("RootDeviceName"):
            return None
        image = found[0]
        ebs = next((m.get("Ebs", {}) for m in image.get("BlockDeviceMappings", []) if m.get("DeviceName") == image["RootDeviceName"]), {})
        volume = {key: ebs[key] for key in ("SnapshotId", "VolumeSize") if key in ebs}
        volume.update({"Encrypted": True, "VolumeType": "gp3", "DeleteOnTermination": True})
        self._roots[image_id] = {"DeviceName": image["RootDeviceName"], "Ebs": volume}
        return self._roots[image_id]

    def _zone_and_subnet(self, request: ProvisionRequest, journal: Journal, tried: list[str]) -> tuple[str | None, str | None]:
        """The run's one zone and subnet: chosen at the first launch (not one of ``tried``), kept for replacements."""
        details = journal.run(request.run_id).details
        if details.get("zone"):
            return details["zone"], details.get("subnet_id")
        with aws_errors(f"choosing a zone in {self.region}"):
            if self.subnet_id:
                subnet = self.ec2.describe_subnets(SubnetIds=[self.subnet_id])["Subnets"][0]
                zone, subnet_id = subnet["AvailabilityZone"], self.subnet_id
            else:
                zone = self._cheapest_zone(request.allocations, tried)
                subnet_id = self._default_subnet(zone)
        journal.update_run(request.run_id, details={"zone": zone, "subnet_id": subnet_id})
        return zone, subnet_id

    def _cheapest_zone(self, allocations, tried: list[str]) -> str | None:
        """The plan's zone, else the zone offering every type where the spot part of the fleet is cheapest."""
        named = {self._zone_name(a.zone) for a in allocations if a.zone} - set(tried)
        if len(named) == 1 and not tried:
            return named.pop()
        types = sorted({a.instance_type for a in allocations})
        offered: dict[str, set[str]] = {}
        for page in self.ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}]
        ):
            for row in page["InstanceTypeOfferings"]:
                offered.setdefault(row["Location"], set()).add(row["InstanceType"])
        zones = sorted(z for z, have in offered.items() if have >= set(types) and z not in tried)
        if not zones:
            where = "no other zone" if tried else "no zone"
            raise CapacityError(f"{where} of {self.region} offers all of {', '.join(types)}; pick another plan")
        spot = [a for a in allocations if a.market == "spot"]
        if not spot:
            return zones[0]
        prices = {z: self._spot_prices_in(z, {a.instance_type for a in spot}) for z in zones}
        priced = [z for z in zones if all(a.instance_type in prices[z] for a in spot)] or zones
        return min(priced, key=lambda z: (sum(a.count * prices[z].get(a.instance_type, a.price_usd_h) for a in spot), z))

    def _zone_name(self, zone: str) -> str:
        """This account's name for ``zone``: a plan priced from a shared catalog names zones by AZ ID
        (``use1-az4``), the same physical zone in every account, while zone names map to zones per
        account (https://docs.aws.amazon.com/global-infrastructure/latest/regions/az-ids.html).
        DescribeAvailabilityZones with ``ZoneIds`` gives the account's ``ZoneName``
        (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAvailabilityZones.html)."""
        if not is_zone_id(zone):
            return zone
        found = self.ec2.describe_availability_zones(ZoneIds=[zone])["AvailabilityZones"]
        if not found:
            raise CapacityError(f"zone {zone} of the plan is not open to this account in {self.region}; pick another plan")
        return found[0]["ZoneName"]

    def _default_subnet(self, zone: str | None) -> str | None:
        if zone is None:
            return None
        subnets = self.ec2.describe_subnets(
            Filters=[{"Name": "availability-zone", "Values": [zone]}, {"Name": "default-for-az", "Values": ["true"]}]
        )["Subnets"]
        return subnets[0]["SubnetId"] if subnets else None

    def _spot_prices_in(self, zone: str, instance_types: set[str]) -> dict[str, float]:
        """The latest Linux/UNIX spot price of each type in ``zone``."""
        history = self.ec2.describe_spot_price_history(
            InstanceTypes=sorted(instance_types), AvailabilityZone=zone, ProductDescriptions=["Linux/UNIX"], StartTime=time.time(),
        )["SpotPriceHistory"]
        latest: dict[str, tuple[float, float]] = {}
        for row in history:
            stamp = row["Timestamp"].timestamp()
            if row["InstanceType"] not in latest or stamp > latest[row["InstanceType"]][0]:
                latest[row["InstanceType"]] = (stamp, float(row["SpotPrice"]))
        return {t: price for t, (_, price) in latest.items()}

    def _launch_price(self, allocation, zone: str | None) -> float:
        """What the instance is billed per hour from launch: the zone's spot price now, or the plan's price."""
        if allocation.market != "spot" or zone is None:
            return allocation.price_usd_h
        with aws_errors(f"reading the spot price of {allocation.instance_type} in {zone}"):
            price = self._spot_prices_in(zone, {allocation.instance_type}).get(allocation.instance_type)
        surplus = surplus_credit_usd_h(allocation.instance_type, allocation.vcpus) if allocation.cpu_credits == "unlimited" else 0.0
        return allocation.price_usd_h if price is None else price + surplus

    def spot_prices(self, machines: list[Machine]) -> dict[str, float]:
        """The current spot price of each running spot host in its zone (the watchdog's price source)."""
        spot = {m.instance_id: m for m in machines if m.market == "spot"}
        if not spot:
            return {}
        prices: dict[str, float] = {}
        with aws_errors("reading spot prices"):
            reservations = self.ec2.describe_instances(InstanceIds=sorted(spot))["Reservations"]
            zones: dict[str, list[Machine]] = {}
            for instance in (i for r in reservations for i in r["Instances"]):
                zones.setdefault(instance["Placement"]["AvailabilityZone"], []).append(spot[instance["InstanceId"]])
            for zone, hosts in zones.items():
                now = self._spot_prices_in(zone, {m.instance_type for m in hosts})
                prices.update({m.instance_id: now[m.instance_type] for m in hosts if m.instance_type in now})
        return prices

    def _bounds(self, request: ProvisionRequest, journal: Journal, instance_ids: list[str]) -> None:
        """Create or renew the server-side schedule and journal the bounds every host of the run has."""
        minutes = request.deadman_minutes
        bounds = []
        if any(not request.roles[a.role].image_is_folder for a in request.allocations):
            bounds.append(f"in-guest timer: the imported image powers off {minutes} min after boot")
        bounds.append(f"user-data: 'shutdown -h +{minutes}' where the image runs cloud-init")
        if not self.use_scheduler:
            bounds.append("no server-side schedule (turned off)")
        else:
            from executor import scheduler

            if self._role is None:
                self._role = scheduler.find_role(self.scheduler_role, self.region)
            role, why = self._role
            at = time.time() + BOOT_ALLOWANCE_S + minutes * 60.0
            live = sorted({r.resource_id for r in journal.resources(request.run_id, "instance", live_only=True)} | set(instance_ids))
            if role is not None:
                from botocore.exceptions import BotoCoreError, ClientError

                try:
                    name = scheduler.create_terminate_schedule(region=self.region, run_id=request.run_id, instance_ids=live, at=at, role_arn=role)
                except (ClientError, BotoCoreError) as exc:
                    why = f"creating the schedule failed ({getattr(exc, 'response', {}).get('Error', {}).get('Code', type(exc).__name__)})"
                else:
                    if not journal.resources(request.run_id, "schedule", live_only=True):
                        journal.add_resource(Resource(request.run_id, "schedule", name, self.region, None, time.time(), details={"role": role}))
                    stamp = time.strftime("%H:%M UTC", time.gmtime(at))
                    bounds.append(f"EventBridge schedule {name}: terminates the instances at {stamp}")
            if why:
                bounds.append(f"no server-side schedule: {why}; the in-guest bounds still hold")
        journal.update_run(request.run_id, details={"bounds": bounds})

    def _key_pair(self, request: ProvisionRequest, journal: Journal) -> str:
        """The run's key pair: created on first use, reused for replacement hosts."""
        run_id = request.run_id
        existing = journal.resources(run_id, "key_pair", live_only=True)
        if existing and (request.run_dir / KEY_FILE).is_file():
            return existing[0].resource_id
        key_name = f"d2c-{run_id}"
        with aws_errors(f"creating the key pair of run {run_id}"):
            created = self.ec2.create_key_pair(
                KeyName=key_name,
                KeyType="ed25519",
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": _tags(run_id, None, key_name)}],
            )
            journal.add_resource(Resource(run_id, "key_pair", key_name, self.region, None, time.time(), details={"key_pair_id": created.get("KeyPairId")}))
            atomic_write_text(request.run_dir / KEY_FILE, created["KeyMaterial"], mode=0o600)
        return key_name

    def _security_group(self, request: ProvisionRequest, journal: Journal) -> str:
        """The run's security group: created on first use, reused for replacement hosts."""
        run_id = request.run_id
        existing = journal.resources(run_id, "security_group", live_only=True)
        if existing:
            return existing[0].resource_id
        cidr = caller_cidr(self.ssh_from)
        with aws_errors(f"creating the security group of run {run_id}"):
            vpc_id = self._vpc_id()
            name = f"d2c-{run_id}"
            group_id = self.ec2.create_security_group(
                GroupName=name,
                Description=f"d2c run {run_id}: SSH from {cidr}, all traffic inside the group",
                VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(run_id, None, name)}],
            )["GroupId"]
            journal.add_resource(Resource(run_id, "security_group", group_id, self.region, None, time.time(), details={"name": name, "ssh_from": cidr}))
            self.ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    ssh_rule(cidr),
                    {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id, "Description": "hosts of the run"}]},
                ],
            )
        return group_id

    def refresh_access(self, run_id: str, journal: Journal) -> str | None:
        """Let SSH in from the caller's current address when it changed since launch (a desktop on a new
        network or a renewed DHCP lease), revoking the old one; what changed, or None.

        An address the user fixed (``--ssh-from`` / ``D2C_SSH_FROM``) is kept, and so is the rule when
        the address cannot be looked up now (the network is down for that too). Rules are added and
        removed with AuthorizeSecurityGroupIngress / RevokeSecurityGroupIngress
        (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AuthorizeSecurityGroupIngress.html,
        https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RevokeSecurityGroupIngress.html).
        """
        if self.ssh_from or os.environ.get("D2C_SSH_FROM"):
            return None
        groups = journal.resources(run_id, "security_group", live_only=True)
        if not groups:
            return None
        group = groups[0]
        old = group.details.get("ssh_from")
        try:
            new = caller_cidr()
        except UsageError:
            return None
        if new == old:
            return None
        with aws_errors(f"letting SSH in from {new}"):
            self.ec2.authorize_security_group_ingress(GroupId=group.resource_id, IpPermissions=[ssh_rule(new)])
            journal.update_resource(run_id, "security_group", group.resource_id, {"ssh_from": new})
            if old:
                self.ec2.revoke_security_group_ingress(GroupId=group.resource_id, IpPermissions=[ssh_rule(old)])
        return f"your address changed from {old} to {new}; SSH to the run's hosts is now allowed from {new} only"

    def _vpc_id(self) -> str:
        if self.subnet_id:
            subnets = self.ec2.describe_subnets(SubnetIds=[self.subnet_id])["Subnets"]
            return subnets[0]["VpcId"]
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise UsageError(f"region {self.region} has no default VPC; pass --subnet SUBNET_ID")
        return vpcs[0]["VpcId"]

    def _images(self, request: ProvisionRequest) -> dict[str, str]:
        """An AMI per role: the imported VM image, or a stock Ubuntu for an app given as a folder."""
        images: dict[str, str] = {}
        base: dict[str, str] = {}
        for allocation in request.allocations:
            role = request.roles[allocation.role]
            if role.image_is_folder:
                if allocation.arch not in base:
                    base[allocation.arch] = self._base_ami(request.base_image, allocation.arch)
                images[allocation.role] = base[allocation.arch]
            else:
                from executor.image.importer import ensure_ami

                # The run's key is baked into the image's login user, so the AMI belongs to this run.
                images[allocation.role] = ensure_ami(
                    role.image,
                    region=self.region,
                    method="snapshot",
                    public_key=_public_key(request.run_dir / KEY_FILE),
                    run_id=request.run_id,
                    vm=role.vm,
                    deadman_s=request.deadman_minutes * 60,
                    boot_test=self.boot_test,
                    private_key=request.run_dir / KEY_FILE,
                )
        return images

    def _base_ami(self, base_image: str, arch: str) -> str:
        """The current AMI of ``base_image`` (the descriptor's) for ``arch``, from its SSM public parameter.

        Canonical and Debian publish their current images as SSM public parameters
        (``BASE_IMAGE_PARAMETERS``; Ubuntu, whose ``ebs-gp3`` path gives a gp3 root:
        https://documentation.ubuntu.com/aws/aws-how-to/instances/find-ubuntu-images/,
        Debian's ``/aws/service/debian/release/12/latest/{amd64,arm64}``:
        https://wiki.debian.org/Cloud/AmazonEC2Image), so a run never picks an interim
        release or a gp2 image. A region without the parameter falls back to the newest
        Canonical LTS server image (for an Ubuntu base image only). An AMI id is used as given.
        """
        if base_image.startswith("ami-"):
            return base_image
        if base_image not in BASE_IMAGE_PARAMETERS:
            raise UsageError(f"base_image {base_image}: unknown; use one of {', '.join(BASE_IMAGE_PARAMETERS)} or an AMI id")
        machine = "arm64" if arch == "arm64" else "amd64"
        name = BASE_IMAGE_PARAMETERS[base_image].format(arch=machine)
        from botocore.exceptions import ClientError

        with aws_errors(f"looking up {base_image} in {self.region}"):
            try:
                return self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                    raise
        if not base_image.startswith("ubuntu-"):
            raise WorkError(f"{name} is not published in {self.region}; give base_image an AMI id")
        with aws_errors(f"looking up an Ubuntu image in {self.region}"):
            found = self.ec2.describe_images(
                Owners=[UBUNTU_OWNER],
                Filters=[{"Name": "name", "Values": [f"ubuntu/images/*ubuntu-*-{machine}-server-*"]}, {"Name": "state", "Values": ["available"]}],
            )["Images"]
        # Long-term-support releases only (even year, April: 22.04, 24.04), never an interim one.
        lts = [i for i in found if (m := re.search(r"-(\d\d)\.04-", i.get("Name", ""))) and int(m.group(1)) % 2 == 0]
        if not lts:
            raise WorkError(f"no Ubuntu LTS {machine} image found in {self.region}; give the role a VM image or base_image an AMI id")
        return sorted(lts, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))[-1]["ImageId"]

    def _run_instances(self, params: dict[str, Any], instance_type: str) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        with aws_errors(f"launching {params['MaxCount']} x {instance_type}"):
            try:
                return self.ec2.run_instances(**params)["Instances"]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "SpotMaxPriceTooLow":
                    price = float(params["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"])
                    raise CapacityError(
                        f"the spot price of {instance_type} in {self.region} is above the plan's ${price:g}/h; "
                        "run 'd2c catalog refresh' and 'd2c recommend' again"
                    ) from None
                if code not in _CAPACITY_CODES:
                    raise
                text = _CAPACITY_CODES[code].format(type=instance_type, region=self.region)
                error = CapacityError(f"launching {params['MaxCount']} x {instance_type}: {text} ({code})")
                error.code = code
                raise error from None

    def _wait_running(self, request: ProvisionRequest, journal: Journal, instance_ids: list[str]) -> None:
        deadline = time.monotonic() + self.running_timeout_s
        delay = self.poll_s
        pending = set(instance_ids)
        while pending:
            with aws_errors("waiting for the instances to start"):
                reservations = self.ec2.describe_instances(InstanceIds=sorted(pending))["Reservations"]
            for instance in (i for r in reservations for i in r["Instances"]):
                state = instance["State"]["Name"]
                if state == "running":
                    self._record_running(request, journal, instance)
                    pending.discard(instance["InstanceId"])
                elif state in ("shutting-down", "terminated", "stopping", "stopped"):
                    reason = instance.get("StateReason", {}).get("Message", state)
                    raise WorkError(f"instance {instance['InstanceId']} stopped while starting ({reason})")
            if request.progress:
                request.progress("starting", len(instance_ids) - len(pending), len(instance_ids))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise WorkError(f"instance(s) {', '.join(sorted(pending))} not running after {self.running_timeout_s:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def _record_running(self, request: ProvisionRequest, journal: Journal, instance: dict[str, Any]) -> None:
        private = instance.get("PrivateIpAddress")
        public = instance.get("PublicIpAddress")
        address = private if self.connect == "private" else public
        if not address:
            raise UsageError(
                f"instance {instance['InstanceId']} has no {self.connect} address; "
                f"use a subnet that assigns public addresses or --connect private (on a VPN into the VPC)"
            )
        host_key = self._console_host_key(instance["InstanceId"])
        details = {"private_address": private, "connect_address": address, "host_key": host_key, "public_address": public}
        journal.update_resource(request.run_id, "instance", instance["InstanceId"], details)
        for mapping in instance.get("BlockDeviceMappings", []):
            volume_id = mapping.get("Ebs", {}).get("VolumeId")
            if volume_id:
                journal.add_resource(Resource(request.run_id, "volume", volume_id, self.region, None, time.time(), details={"instance": instance["InstanceId"]}))

    def _console_host_key(self, instance_id: str) -> str | None:
        """The host key cloud-init printed, from the newest console output.

        ``Latest=True`` asks for the most recent output, which on Nitro instances is there while
        the instance boots; without it EC2 returns a buffer that can still be empty for minutes
        (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetConsoleOutput.html).
        """
        try:
            with aws_errors("reading the console output"):
                output = self.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
        except WorkError:
            return None
        return host_key_from_console(output or "")

    def _record_storage(self, run_id: str, journal: Journal) -> None:
        """The run's EBS gigabytes, which the watchdog prices by the hour."""
        instance_ids = [r.resource_id for r in journal.resources(run_id, "instance", live_only=True)]
        with aws_errors("reading the size of the instances' volumes"):
            volumes = self.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": instance_ids}])["Volumes"]
        journal.update_run(run_id, details={"ebs_gb": float(sum(v["Size"] for v in volumes))})

    def _wait_ssh(self, request: ProvisionRequest, journal: Journal, machines: list[Machine]) -> None:
        def wait(machine: Machine) -> None:
            deadline = time.monotonic() + self.ssh_timeout_s
            delay = 0.5
            last: Exception | None = None
            while time.monotonic() < deadline:
                if not machine.host_key:
                    # Polled until SSH answers: the keys cloud-init prints appear while the guest boots.
                    key = self._console_host_key(machine.instance_id)
                    if key:
                        machine = replace(machine, host_key=key)
                        journal.update_resource(machine.run_id, "instance", machine.instance_id, {"host_key": key})
                host = self.open_host(machine, connect_timeout=max(1.0, min(10.0, deadline - time.monotonic())), retries=1)
                try:
                    if host.run("true", timeout=30).ok:
                        if not machine.host_key:
                            journal.update_resource(
                                machine.run_id, "instance", machine.instance_id, {"host_key": self.pinned_key(machine), "host_key_source": "first use"}
                            )
                            journal.event(
                                machine.run_id, "host-key",
                                f"{machine.name}: no SSH host key on the console; trusted the key it presented on first use",
                            )
                        return
                except HostKeyMismatch:
                    raise
                except HostError as exc:
                    last = exc
                finally:
                    host.close()
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 10.0)
            raise HostError(
                f"{machine.name} ({machine.instance_id}) did not answer SSH at {machine.connect_address}:22 within "
                f"{self.ssh_timeout_s:.0f} s ({last}); check that the image runs sshd and accepts the key pair"
            )

        with ThreadPoolExecutor(max_workers=min(16, len(machines))) as pool:
            list(pool.map(wait, machines))
        if request.progress:
            request.progress("ssh", len(machines), len(machines))

    # -- using hosts ----------------------------------------------------------------------------

    def open_host(self, machine: Machine, *, connect_timeout: float = 10.0, retries: int = 3):
        """An SSHHost logged in with the run's key, the host key checked or pinned per run."""
        from d2c.transport.ssh import SSHHost

        run_dir = runs_dir() / machine.run_id
        return SSHHost(
            machine.connect_address,
            22,
            user=machine.user,
            key_path=run_dir / KEY_FILE,
            known_hosts=None if machine.host_key else _known_hosts(machine),
            expected_host_key=machine.host_key,
            connect_timeout=connect_timeout,
            retries=retries,
            name=machine.name,
        )

    def workdir(self, machine: Machine, workdir: str) -> str:
        """On an instance the descriptor's workdir is used as it is."""
        return workdir

    def cluster_key(self, run_id: str) -> str | None:
        """The run's private key, which every instance of the run already trusts."""
        path = runs_dir() / run_id / KEY_FILE
        return path.read_text() if path.is_file() else None

    def pinned_key(self, machine: Machine) -> str | None:
        """The host key pinned for ``machine`` in the run's known_hosts, if any."""
        from d2c.transport.known_hosts import KnownHosts

        pins = KnownHosts(_known_hosts(machine)).lookup(machine.connect_address, 22)
        return pins[0].key.line() if pins else None

    def states(self, run_id: str, journal: Journal) -> dict[str, str]:
        """Every journaled instance's state; an instance AWS no longer knows counts as terminated."""
        ids = [r.resource_id for r in journal.resources(run_id, "instance", live_only=True)]
        with aws_errors("checking the run's instances"):
            found = self._tagged_instances(run_id, states=None)
        return {instance_id: found.get(instance_id, "terminated") for instance_id in ids}

    def _tagged_instances(self, run_id: str | None, states: tuple[str, ...] | None) -> dict[str, str]:
        filters = [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}] if run_id else [{"Name": "tag-key", "Values": [RUN_TAG]}]
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        found = {}
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    found[instance["InstanceId"]] = instance["State"]["Name"]
        return found

    # -- teardown -------------------------------------------------------------------------------

    def teardown(self, run_id: str, journal: Journal) -> list[str]:
        """Terminate the run's instances, then delete its volumes, security group, images made for it and key pair."""
        from botocore.exceptions import ClientError

        lines: list[str] = []
        with aws_errors(f"tearing down run {run_id}"):
            journaled = {r.resource_id for r in journal.resources(run_id, "instance", live_only=True)}
            known = self._tagged_instances(run_id, states=None)
            # Journaled ids AWS reports as terminated are left alone (terminating them again is pointless).
            live = {i for i, state in known.items() if state in LIVE_STATES} | {i for i in journaled if known.get(i, "pending") in LIVE_STATES}
            if live:
                try:
                    self.ec2.terminate_instances(InstanceIds=sorted(live))
                except ClientError as exc:
                    # A journaled id AWS no longer knows is gone already; terminate the rest by tag.
                    if not exc.response.get("Error", {}).get("Code", "").startswith("InvalidInstanceID"):
                        raise
                    live = set(self._tagged_instances(run_id, LIVE_STATES))
                    if live:
                        self.ec2.terminate_instances(InstanceIds=sorted(live))
                self._wait_terminated(run_id, live)
            for instance_id in sorted(live | journaled):
                journal.mark_deleted(run_id, "instance", instance_id)
                lines.append(f"terminated instance {instance_id}")
            for volume_id in self._run_volumes(run_id, journal):
                self._delete_with_retry(lambda v=volume_id: self.ec2.delete_volume(VolumeId=v), "InvalidVolume.NotFound")
                journal.mark_deleted(run_id, "volume", volume_id)
                lines.append(f"deleted volume {volume_id}")
            placement_groups = {r.resource_id for r in journal.resources(run_id, "placement_group", live_only=True)}
            placement_groups |= set(self._tagged_placement_groups(run_id).get(run_id, []))
            for name in sorted(placement_groups):
                # A group with instances still shutting down refuses deletion for a while (InvalidPlacementGroup.InUse).
                self._delete_with_retry(lambda n=name: self.ec2.delete_placement_group(GroupName=n), "InvalidPlacementGroup.Unknown", "InvalidPlacementGroup.InUse")
                journal.mark_deleted(run_id, "placement_group", name)
                lines.append(f"deleted placement group {name}")
            groups = {r.resource_id for r in journal.resources(run_id, "security_group", live_only=True)}
            groups |= {g["GroupId"] for g in self.ec2.describe_security_groups(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["SecurityGroups"]}
            for group_id in sorted(groups):
                self._delete_with_retry(lambda g=group_id: self.ec2.delete_security_group(GroupId=g), "InvalidGroup.NotFound")
                journal.mark_deleted(run_id, "security_group", group_id)
                lines.append(f"deleted security group {group_id}")
            lines += self._delete_tagged_storage(run_id, journal)
            keys = {r.resource_id for r in journal.resources(run_id, "key_pair", live_only=True)}
            keys |= {k["KeyName"] for k in self.ec2.describe_key_pairs(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["KeyPairs"]}
            for key_name in sorted(keys):
                self.ec2.delete_key_pair(KeyName=key_name)
                journal.mark_deleted(run_id, "key_pair", key_name)
                lines.append(f"deleted key pair {key_name}")
        (runs_dir() / run_id / KEY_FILE).unlink(missing_ok=True)
        return lines

    def _delete_tagged_storage(self, run_id: str, journal: Journal) -> list[str]:
        """The run's schedule, AMIs (then their snapshots), other tagged snapshots and VM Import uploads."""
        from executor import scheduler

        lines = []
        schedules = {r.resource_id for r in journal.resources(run_id, "schedule", live_only=True)} | {scheduler.schedule_name(run_id)}
        for name in sorted(schedules):
            if self._scheduler_call(lambda n=name: scheduler.delete_schedule(self.region, n)):
                lines.append(f"deleted schedule {name}")
            journal.mark_deleted(run_id, "schedule", name)
        for _, image in tagged.find_images(self.ec2, run_id):
            self.ec2.deregister_image(ImageId=image["ImageId"])
            lines.append(f"deregistered image {image['ImageId']}")
            for snapshot_id in tagged.image_snapshots(image):
                self._delete_with_retry(lambda s=snapshot_id: self.ec2.delete_snapshot(SnapshotId=s), "InvalidSnapshot.NotFound")
                lines.append(f"deleted snapshot {snapshot_id}")
        for _, snapshot_id in tagged.find_snapshots(self.ec2, run_id):
            self._delete_with_retry(lambda s=snapshot_id: self.ec2.delete_snapshot(SnapshotId=s), "InvalidSnapshot.NotFound")
            lines.append(f"deleted snapshot {snapshot_id}")
        bucket = tagged.images_bucket(self.region)
        s3 = client("s3", self.region)
        for _, item in tagged.find_uploads(s3, bucket, run_id if run_id != tagged.UNFINISHED_UPLOADS else None):
            if run_id == tagged.UNFINISHED_UPLOADS and "#" not in item:
                continue
            lines.append(tagged.delete_upload(s3, bucket, item))
        return lines

    def _tagged_placement_groups(self, run_id: str | None) -> dict[str, list[str]]:
        """Placement groups tagged ``d2c:run`` (that run's, or every run's), by run; {} when EC2 does
        not answer (module docstring: they are free, so the search never holds up a teardown)."""
        filters = [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}] if run_id else [{"Name": "tag-key", "Values": [RUN_TAG]}]
        try:
            groups = self.ec2_once.describe_placement_groups(Filters=filters)["PlacementGroups"]
        except Exception:  # noqa: BLE001 - an error, an unparsable answer: nothing found, and the teardown goes on
            return {}
        found: dict[str, list[str]] = {}
        for group in groups:
            run = next((t["Value"] for t in group.get("Tags", []) if t["Key"] == RUN_TAG), None)
            if run and group.get("State") != "deleted":
                found.setdefault(run, []).append(group["GroupName"])
        return found

    def _scheduler_call(self, call) -> bool:
        """Run a Scheduler call; an account or endpoint without EventBridge Scheduler counts as nothing to do."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bool(call())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("AccessDeniedException", "UnrecognizedClientException"):
                return False
            raise
        except BotoCoreError:
            return False

    def _wait_terminated(self, run_id: str, instance_ids: set[str]) -> None:
        deadline = time.monotonic() + self.terminate_timeout_s
        delay = self.poll_s
        while True:
            remaining = {i for i, state in self._tagged_instances(run_id, LIVE_STATES).items() if i in instance_ids}
            if not remaining:
                return
            if time.monotonic() > deadline:
                raise WorkError(f"instance(s) {', '.join(sorted(remaining))} still not terminated after {self.terminate_timeout_s:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def _run_volumes(self, run_id: str, journal: Journal) -> list[str]:
        tagged = self.ec2.describe_volumes(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["Volumes"]
        journaled = {r.resource_id for r in journal.resources(run_id, "volume", live_only=True)}
        existing = {v["VolumeId"] for v in tagged}
        if journaled - existing:
            for volume_id in journaled - existing:
                journal.mark_deleted(run_id, "volume", volume_id)
        return sorted(existing)

    def _delete_with_retry(self, delete, gone_code: str, *busy_codes: str) -> None:
        """Deleting right after termination can meet DependencyViolation / VolumeInUse for a while."""
        from botocore.exceptions import ClientError

        deadline = time.monotonic() + self.terminate_timeout_s
        delay = self.poll_s
        while True:
            try:
                delete()
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == gone_code:
                    return
                if code not in ("DependencyViolation", "VolumeInUse", "IncorrectState", *busy_codes) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def leftovers(self, journal: Journal) -> dict[str, list[str]]:
        """Everything tagged ``d2c:run`` in this region that still exists, by run id."""
        found: dict[str, list[str]] = {}

        def add(tags: list[dict[str, str]] | None, resource_id: str) -> None:
            run = next((t["Value"] for t in tags or [] if t["Key"] == RUN_TAG), None)
            if run:
                found.setdefault(run, []).append(resource_id)

        tag_filter = [{"Name": "tag-key", "Values": [RUN_TAG]}]
        with aws_errors(f"looking for resources left by d2c runs in {self.region}"):
            for page in self.ec2.get_paginator("describe_instances").paginate(
                Filters=tag_filter + [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
            ):
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        add(instance.get("Tags"), instance["InstanceId"])
            for volume in self.ec2.describe_volumes(Filters=tag_filter)["Volumes"]:
                add(volume.get("Tags"), volume["VolumeId"])
            for group in self.ec2.describe_security_groups(Filters=tag_filter)["SecurityGroups"]:
                add(group.get("Tags"), group["GroupId"])
            for key in self.ec2.describe_key_pairs(Filters=tag_filter)["KeyPairs"]:
                add(key.get("Tags"), key["KeyName"])
            for run, names in self._tagged_placement_groups(None).items():
                found.setdefault(run, []).extend(names)
            for run, image in tagged.find_images(self.ec2, None):
                found.setdefault(run, []).append(image["ImageId"])
            for run, resource_id in tagged.find_snapshots(self.ec2, None):
                found.setdefault(run, []).append(resource_id)
            for run, item in tagged.find_uploads(client("s3", self.region), tagged.images_bucket(self.region), None):
                found.setdefault(run, []).append(item)
            from executor import scheduler

            schedules: dict[str, str] = {}
            self._scheduler_call(lambda: schedules.update(scheduler.d2c_schedules(self.region)))
            for name, run in schedules.items():
                found.setdefault(run, []).append(name)
        for run in journal.runs():
            if run.provider == self.name and run.region == self.region:
                live = [r.resource_id for r in journal.resources(run.run_id, live_only=True)]
                if live:
                    found.setdefault(run.run_id, [])
                    found[run.run_id] = sorted(set(found[run.run_id]) | set(live))
        return found
