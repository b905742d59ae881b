"""Money on EC2 against moto's server: credit mode, no public address, the schedule, spot zone and cap, leftovers.

Each run here launches for real in moto, then fails at SSH (nothing answers in these subnets),
which is enough: the launch, the schedule and the teardown all happen. What the run looked like
while its instances lived is read just before teardown terminates them.
"""

from __future__ import annotations

import base64
import calendar
import json
import subprocess
import sys
import time
from urllib.parse import parse_qs

import pytest
from botocore.exceptions import ClientError

from d2c.aws import client
from executor.journal import open_journal
from executor.orchestrator import Orchestrator, RunSettings
from executor.providers.aws import RUN_TAG, AwsProvider
from tests.fixtures.executor import write_plans
from tests.test_executor_aws import NOTHING, _project, _start, leftovers

pytestmark = pytest.mark.integration

FAST = RunSettings(poll_s=0.2, states_every_s=0.5, reserve_s=60)
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _subnet(cidr: str, *, public: bool = False) -> str:
    ec2 = client("ec2", "us-east-1")
    vpc = ec2.create_vpc(CidrBlock=cidr.replace(".1.0/24", ".0.0/16"))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    if public:
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    return subnet


def _watch_before_teardown(provider: AwsProvider, look) -> dict:
    """Call ``look(seen)`` once, just before the run's instances are terminated."""
    seen: dict = {}

    def before(params, **_):
        if "state" not in seen:
            seen["state"] = True
            look(seen, params)

    provider.ec2.meta.events.register("before-parameter-build.ec2.TerminateInstances", before)
    return seen


def _sent(provider: AwsProvider) -> list[dict[str, list[str]]]:
    sent: list[dict[str, list[str]]] = []
    provider.ec2.meta.events.register(
        "before-send.ec2.RunInstances", lambda request, **_: sent.append(parse_qs(request.body if isinstance(request.body, str) else request.body.decode()))
    )
    return sent


def test_t3_launches_in_standard_mode_without_a_public_address_and_its_schedule_comes_and_goes(aws, tmp_path):
    client("iam", "us-east-1").create_role(RoleName="d2c-scheduler", AssumeRolePolicyDocument=json.dumps(TRUST))
    subnet = _subnet("10.241.1.0/24", public=True)  # a subnet that hands out public addresses unless told not to
    project = _project(tmp_path, "./job.sh", [("master", 1, 1), ("worker", 2, 1)])
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", subnet_id=subnet, ssh_timeout_s=1, poll_s=0.1)
    sent = _sent(provider)

    def look(seen, params):
        ec2 = client("ec2", "us-east-1")
        ids = params["InstanceIds"]
        seen["credits"] = {c["InstanceId"]: c["CpuCredits"] for c in ec2.describe_instance_credit_specifications(InstanceIds=ids)["InstanceCreditSpecifications"]}
        seen["instances"] = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
        seen["volumes"] = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])["Volumes"]
        run = next(t["Value"] for t in seen["instances"][0]["Tags"] if t["Key"] == RUN_TAG)
        seen["schedule"] = client("scheduler", "us-east-1").get_schedule(Name=f"d2c-{run}")

    seen = _watch_before_teardown(provider, look)
    started = time.time()
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert result.outcome == "failed" and "did not answer SSH" in result.message

    ids = sorted(i["InstanceId"] for i in seen["instances"])
    assert len(ids) == 3
    assert seen["credits"] == {i: "standard" for i in ids}, "t3 asked for standard mode, not AWS's unlimited default"
    assert all("PublicIpAddress" not in i for i in seen["instances"])
    assert all(s["NetworkInterface.1.AssociatePublicIpAddress"] == ["false"] for s in sent), sorted(sent[0])
    assert all(s["CreditSpecification.CpuCredits"] == ["standard"] for s in sent)
    assert all(i["MetadataOptions"]["HttpTokens"] == "required" for i in seen["instances"])
    assert seen["volumes"] and all(v["Encrypted"] for v in seen["volumes"])

    schedule = seen["schedule"]
    target = schedule["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:ec2:terminateInstances"
    assert sorted(json.loads(target["Input"])["InstanceIds"]) == ids
    assert target["RoleArn"].endswith(":role/d2c-scheduler")
    assert schedule["ActionAfterCompletion"] == "DELETE" and schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    minutes = int(base64.b64decode(sent[0]["UserData"][0]).decode().split("shutdown -h +")[1].split()[0])
    at = calendar.timegm(time.strptime(schedule["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)"))
    assert started + 180 + minutes * 60 <= at <= time.time() + 180 + minutes * 60 + 60, "fires at the dead-man bound, boot included"

    with pytest.raises(ClientError, match="ResourceNotFound"):
        client("scheduler", "us-east-1").get_schedule(Name=f"d2c-{result.run_id}")
    assert leftovers(result.run_id) == NOTHING
    bounds = open_journal().run(result.run_id).details["bounds"]
    assert any(b.startswith("EventBridge schedule d2c-") for b in bounds)


def test_a_role_the_scheduler_cannot_assume_leaves_the_in_guest_bounds_and_says_so(aws, tmp_path):
    trust_ec2 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    client("iam", "us-east-1").create_role(RoleName="d2c-scheduler", AssumeRolePolicyDocument=json.dumps(trust_ec2))
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)])
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", subnet_id=_subnet("10.242.1.0/24"), ssh_timeout_s=1, poll_s=0.1)
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message, "the run went on without a schedule"
    bounds = open_journal().run(result.run_id).details["bounds"]
    assert any("does not trust scheduler.amazonaws.com" in b and "in-guest bounds still hold" in b for b in bounds), bounds
    assert client("scheduler", "us-east-1").list_schedules()["Schedules"] == []
    assert leftovers(result.run_id) == NOTHING


def test_spot_goes_to_the_priced_zone_capped_at_on_demand_and_accrues_the_zones_price(aws, tmp_path):
    project = _project(tmp_path, "./job.sh", [("master", 1, 1)], market="spot")
    write_plans(project / "plans.json", "script", [("master", 1, 1)], market="spot", price_usd_h=0.004, on_demand_usd_h=0.0104, zone="us-east-1c")
    # No --subnet: the launch goes to the default VPC's subnet in the plan's zone.
    provider = AwsProvider(region="us-east-1", connect="private", ssh_from="192.0.2.1/32", ssh_timeout_s=1, poll_s=0.1)
    sent = _sent(provider)

    def look(seen, params):
        ec2 = client("ec2", "us-east-1")
        seen["instances"] = [i for r in ec2.describe_instances(InstanceIds=params["InstanceIds"])["Reservations"] for i in r["Instances"]]

    seen = _watch_before_teardown(provider, look)
    result = _start(Orchestrator(open_journal(), provider, settings=FAST), project)
    assert "did not answer SSH" in result.message
    [instance] = seen["instances"]
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1c"
    assert sent[0]["InstanceMarketOptions.SpotOptions.MaxPrice"] == ["0.010400"]
    ec2 = client("ec2", "us-east-1")
    subnet = ec2.describe_subnets(SubnetIds=[sent[0]["NetworkInterface.1.SubnetId"][0]])["Subnets"][0]
    assert subnet["AvailabilityZone"] == "us-east-1c" and subnet["DefaultForAz"]
    zone_price = float(ec2.describe_spot_price_history(InstanceTypes=["t3.micro"], AvailabilityZone="us-east-1c")["SpotPriceHistory"][0]["SpotPrice"])
    [resource] = open_journal().resources(result.run_id, "instance")
    assert resource.details["price_usd_h"] == zone_price and resource.details["planned_price_usd_h"] == 0.004
    report = json.loads(result.report_path.read_text())
    assert report["instances"][0]["price_usd_h"] == zone_price, "the report counts the zone's actual spot price"


def test_down_all_without_a_journal_deletes_a_tagged_snapshot_image_and_volume(aws, tmp_path):
    ec2 = client("ec2", "us-east-1")
    tag = [{"Key": RUN_TAG, "Value": "crashed-run"}]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=[{"ResourceType": "volume", "Tags": tag}])["VolumeId"]
    # A snapshot completed but never registered (the controller died between complete_snapshot and register_image).
    lone = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag}])["SnapshotId"]
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=instance, Name="d2c-crashed")["ImageId"]
    ec2.create_tags(Resources=[image], Tags=tag)
    image_snapshots = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"] if "Ebs" in m]
    ec2.terminate_instances(InstanceIds=[instance])
    assert open_journal().runs() == []

    found = AwsProvider(region="us-east-1").leftovers(open_journal())
    assert set(found["crashed-run"]) >= {volume, lone, image}
    down = subprocess.run([sys.executable, "-m", "d2c", "down", "--all"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert f"crashed-run: deregistered image {image}" in down.stdout, down.stdout
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{RUN_TAG}", "Values": ["crashed-run"]}])["Images"] == []
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert lone not in remaining and not set(image_snapshots) & remaining
    assert ec2.describe_volumes(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": ["crashed-run"]}])["Volumes"] == []
    assert AwsProvider(region="us-east-1").leftovers(open_journal()) == {}


def test_down_all_aborts_an_unfinished_vm_import_upload_and_deletes_tagged_objects(aws):
    s3 = client("s3", "us-east-1")
    bucket = f"d2c-images-{client('sts', 'us-east-1').get_caller_identity()['Account']}-us-east-1"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="vm.vmdk", Body=b"disk", Tagging="d2c%3Arun=upload-run")
    s3.put_object(Bucket=bucket, Key="other.txt", Body=b"not d2c's")
    s3.create_multipart_upload(Bucket=bucket, Key="half.vmdk", Tagging="d2c%3Arun=upload-run")
    found = AwsProvider(region="us-east-1").leftovers(open_journal())
    assert found["upload-run"] == ["vm.vmdk"] and len(found["uploads"]) == 1
    down = subprocess.run([sys.executable, "-m", "d2c", "down", "--all"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other.txt"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_image_list_prices_kept_images_and_rm_removes_one(aws):
    ec2 = client("ec2", "us-east-1")
    base = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    kept = ec2.create_image(InstanceId=instance, Name="d2c desktop-vm")["ImageId"]
    ec2.create_tags(Resources=[kept], Tags=[{"Key": "d2c:digest", "Value": "sha256:abc"}, {"Key": "d2c:image", "Value": "desktop.ova"}])
    size = sum(m["Ebs"]["VolumeSize"] for m in ec2.describe_images(ImageIds=[kept])["Images"][0]["BlockDeviceMappings"] if "Ebs" in m)
    listed = subprocess.run([sys.executable, "-m", "d2c", "image", "list", "--json"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["image_id"] == kept and row["source"] == "desktop.ova" and row["monthly_usd"] == pytest.approx(size * 0.05)
    refused = subprocess.run([sys.executable, "-m", "d2c", "image", "rm", base], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not an AMI d2c imported" in refused.stderr
    removed = subprocess.run([sys.executable, "-m", "d2c", "image", "rm", kept], capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert f"deregistered image {kept}" in removed.stdout
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [kept]}])["Images"] == []
