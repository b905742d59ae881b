"""The EC2 provider: launch a plan's instances, reach them over SSH, delete everything afterwards.

Per run it creates a key pair (private key 0600 in the run folder), a security group open for SSH
only to the caller's address and for all traffic inside the group, and the plan's instances
(on-demand, or spot with ``MaxPrice`` set to the plan's recorded spot price, the rate the
watchdog counts at) with the tags ``d2c:run``, ``d2c:role`` and ``Name``,
``InstanceInitiatedShutdownBehavior=terminate`` and user-data that shuts the instance down after
the dead-man minutes. Every resource goes into the journal as soon as AWS returns its id; teardown
deletes what the journal lists and whatever else carries the run's tag, so resources a crash kept
out of the journal are found too. Replacement hosts (after a spot interruption) reuse the run's
key pair and security group.

Instances are reached at their public address, or at the private one with ``connect="private"``
(``--connect private`` / ``D2C_CONNECT=private``: for users on a VPN into the VPC, and for the
tests, whose stand-in instances live at private addresses on this machine). Host keys come from
the console output when cloud-init printed them there, else they are pinned on first use in the
run's own known_hosts (addresses are reused across runs, so pins never outlive the run).
"""

from __future__ import annotations

import os
import time
from decimal import ROUND_DOWN, Decimal
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from d2c.aws import aws_errors, client
from d2c.errors import HostError, HostKeyMismatch, UsageError, WorkError
from d2c.files import atomic_write_text
from d2c.state import runs_dir
from executor.journal import Journal, Resource
from executor.providers.base import CapacityError, Machine, ProvisionRequest, machines_from_journal

RUN_TAG = "d2c:run"
ROLE_TAG = "d2c:role"
UBUNTU_OWNER = "099720109477"
KEY_FILE = "id_d2c"
CHECKIP_URL = "https://checkip.amazonaws.com"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
_CAPACITY_CODES = {
    "InsufficientInstanceCapacity": "AWS has no spare capacity for {type} in {region} right now; try again later or pick another plan",
    "InstanceLimitExceeded": "your account's instance limit in {region} is reached; ask AWS for a higher quota or pick a smaller plan",
    "VcpuLimitExceeded": "your account's vCPU quota in {region} is too small for this plan; ask AWS for a higher quota or pick a smaller plan",
    "MaxSpotInstanceCountExceeded": "your account's spot instance quota in {region} is reached; pick an on-demand plan",
    "Unsupported": "{type} is not offered in {region} (or in this subnet's zone); pick another plan",
}


def spot_max_price(price_usd_h: float) -> str:
    """The plan's recorded spot price as EC2's ``MaxPrice`` (rounded down, so AWS never bills above it)."""
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
    """The address SSH is opened to: ``override``, ``D2C_SSH_FROM``, or this machine's public IP."""
    value = override or os.environ.get("D2C_SSH_FROM")
    if not value:
        try:
            with urllib.request.urlopen(CHECKIP_URL, timeout=10) as response:
                value = response.read().decode().strip()
        except OSError:
            raise UsageError(f"could not discover your public address from {CHECKIP_URL}; pass --ssh-from ADDRESS/32 or set D2C_SSH_FROM") from None
    return value if "/" in value else f"{value}/32"


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


def _tags(run_id: str, role: str | None, name: str) -> list[dict[str, str]]:
    tags = [{"Key": RUN_TAG, "Value": run_id}, {"Key": "Name", "Value": name}]
    if role:
        tags.append({"Key": ROLE_TAG, "Value": role})
    return tags


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
        self.running_timeout_s = running_timeout_s
        self.ssh_timeout_s = ssh_timeout_s
        self.terminate_timeout_s = terminate_timeout_s
        self.poll_s = poll_s
        self._ec2 = None

    @property
    def ec2(self):
        if self._ec2 is None:
            self._ec2 = client("ec2", self.region)
        return self._ec2

    # -- provisioning ---------------------------------------------------------------------------

    def provision(self, request: ProvisionRequest, journal: Journal) -> list[Machine]:
        """Key pair, security group, instances; then wait for them to run and answer SSH."""
        run_id = request.run_id
        key_name = self._key_pair(request, journal)
        group_id = self._security_group(request, journal)
        images = self._images(request)
        launched: list[tuple[str, Any]] = []
        total = sum(a.count for a in request.allocations)
        for allocation in request.allocations:
            role = request.roles[allocation.role]
            params: dict[str, Any] = {
                "ImageId": images[allocation.role],
                "InstanceType": allocation.instance_type,
                "MinCount": allocation.count,
                "MaxCount": allocation.count,
                "KeyName": key_name,
                "SecurityGroupIds": [group_id],
                "InstanceInitiatedShutdownBehavior": "terminate",
                "UserData": deadman_user_data(run_id, request.deadman_minutes),
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": _tags(run_id, allocation.role, f"d2c {run_id} {allocation.role}")},
                    {"ResourceType": "volume", "Tags": _tags(run_id, allocation.role, f"d2c {run_id} {allocation.role}")},
                ],
            }
            if self.subnet_id:
                params["SubnetId"] = self.subnet_id
            if allocation.market == "spot":
                params["InstanceMarketOptions"] = {
                    "MarketType": "spot",
                    # Capped at the price the watchdog accrues at, so the bill never outruns its count.
                    "SpotOptions": {
                        "SpotInstanceType": "one-time",
                        "InstanceInterruptionBehavior": "terminate",
                        "MaxPrice": spot_max_price(allocation.price_usd_h),
                    },
                }
            instances = self._run_instances(params, allocation.instance_type)
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
                    "price_usd_h": allocation.price_usd_h,
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
        self._wait_running(request, journal, [i["InstanceId"] for _, i in launched])
        self._record_storage(run_id, journal)
        new_ids = {instance["InstanceId"] for _, instance in launched}
        self._wait_ssh(request, journal, [m for m in machines_from_journal(journal, run_id) if m.instance_id in new_ids])
        return [m for m in machines_from_journal(journal, run_id) if m.instance_id in new_ids]

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
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr, "Description": "d2c controller"}]},
                    {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id, "Description": "hosts of the run"}]},
                ],
            )
        return group_id

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
                    base[allocation.arch] = self._base_ami(allocation.arch)
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
                )
        return images

    def _base_ami(self, arch: str) -> str:
        machine = "arm64" if arch == "arm64" else "amd64"
        with aws_errors(f"looking up an Ubuntu image in {self.region}"):
            found = self.ec2.describe_images(
                Owners=[UBUNTU_OWNER],
                Filters=[
                    {"Name": "name", "Values": [f"ubuntu/images/*ubuntu-*-{machine}-server-*"]},
                    {"Name": "state", "Values": ["available"]},
                ],
            )["Images"]
        if not found:
            raise WorkError(f"no Ubuntu {machine} image found in {self.region}; give the role a VM image instead")
        return sorted(found, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))[-1]["ImageId"]

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
                raise CapacityError(f"launching {params['MaxCount']} x {instance_type}: {text} ({code})") from None

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
        host_key = None
        try:
            with aws_errors("reading the console output"):
                output = self.ec2.get_console_output(InstanceId=instance["InstanceId"]).get("Output", "")
            host_key = host_key_from_console(output or "")
        except WorkError:
            host_key = None
        details = {"private_address": private, "connect_address": address, "host_key": host_key, "public_address": public}
        journal.update_resource(request.run_id, "instance", instance["InstanceId"], details)
        for mapping in instance.get("BlockDeviceMappings", []):
            volume_id = mapping.get("Ebs", {}).get("VolumeId")
            if volume_id:
                journal.add_resource(Resource(request.run_id, "volume", volume_id, self.region, None, time.time(), details={"instance": instance["InstanceId"]}))

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
                host = self.open_host(machine, connect_timeout=max(1.0, min(10.0, deadline - time.monotonic())), retries=1)
                try:
                    if host.run("true", timeout=30).ok:
                        if not machine.host_key:
                            journal.update_resource(machine.run_id, "instance", machine.instance_id, {"host_key": self.pinned_key(machine)})
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
            known_hosts=None if machine.host_key else run_dir / "known_hosts",
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

        pins = KnownHosts(runs_dir() / machine.run_id / "known_hosts").lookup(machine.connect_address, 22)
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
            live = set(self._tagged_instances(run_id, LIVE_STATES)) | journaled
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
            groups = {r.resource_id for r in journal.resources(run_id, "security_group", live_only=True)}
            groups |= {g["GroupId"] for g in self.ec2.describe_security_groups(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["SecurityGroups"]}
            for group_id in sorted(groups):
                self._delete_with_retry(lambda g=group_id: self.ec2.delete_security_group(GroupId=g), "InvalidGroup.NotFound")
                journal.mark_deleted(run_id, "security_group", group_id)
                lines.append(f"deleted security group {group_id}")
            for image in self.ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["Images"]:
                self.ec2.deregister_image(ImageId=image["ImageId"])
                lines.append(f"deregistered image {image['ImageId']}")
                for mapping in image.get("BlockDeviceMappings", []):
                    snapshot_id = mapping.get("Ebs", {}).get("SnapshotId")
                    if snapshot_id:
                        self._delete_with_retry(lambda s=snapshot_id: self.ec2.delete_snapshot(SnapshotId=s), "InvalidSnapshot.NotFound")
                        lines.append(f"deleted snapshot {snapshot_id}")
            keys = {r.resource_id for r in journal.resources(run_id, "key_pair", live_only=True)}
            keys |= {k["KeyName"] for k in self.ec2.describe_key_pairs(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}])["KeyPairs"]}
            for key_name in sorted(keys):
                self.ec2.delete_key_pair(KeyName=key_name)
                journal.mark_deleted(run_id, "key_pair", key_name)
                lines.append(f"deleted key pair {key_name}")
        (runs_dir() / run_id / KEY_FILE).unlink(missing_ok=True)
        return lines

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

    def _delete_with_retry(self, delete, gone_code: str) -> None:
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
                if code not in ("DependencyViolation", "VolumeInUse", "IncorrectState") or time.monotonic() > deadline:
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
        for run in journal.runs():
            if run.provider == self.name and run.region == self.region:
                live = [r.resource_id for r in journal.resources(run.run_id, live_only=True)]
                if live:
                    found.setdefault(run.run_id, [])
                    found[run.run_id] = sorted(set(found[run.run_id]) | set(live))
        return found
