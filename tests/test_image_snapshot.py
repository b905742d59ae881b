"""The snapshot route end to end against moto's threaded server (real HTTP; moto implements the EBS direct API).

moto's register_image keeps only the name, so the parameters EC2 needs (hvm, ENA, boot mode, root
device) are checked on the request as boto3 sends it.
"""

from __future__ import annotations

import json
import random

import pytest

from d2c.aws import client as aws_client
from d2c.errors import UsageError, WorkError
from d2c.state import state_dir
from executor.image import importer
from executor.image.snapshot_import import BLOCK_SIZE, register_snapshot, upload_snapshot
from tests.image_builder import Guest

pytestmark = pytest.mark.integration
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd2Y3J1bnRlc3RrZXkwMTIzNDU2Nzg5YWJjZGVm d2c-run-test"


@pytest.fixture
def calls(monkeypatch, aws):
    """Record the parameters of every AWS call ensure_ami makes, by operation name."""
    seen: dict[str, list[dict]] = {}
    real_client = importer.client

    def recording_client(service, region=None, **config):
        made = real_client(service, region, **config)

        def record(params, model, **_):
            seen.setdefault(model.name, []).append(dict(params))

        made.meta.events.register(f"provide-client-params.{service}.*", record)
        return made

    monkeypatch.setattr(importer, "client", recording_client)
    return seen


def _blocks(raw):
    data = raw.read_bytes()
    return {i // BLOCK_SIZE: data[i : i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)}


def test_every_block_reads_back_and_zero_blocks_are_not_sent(aws, tmp_path):
    raw = tmp_path / "disk.raw"
    rng = random.Random(7)
    with open(raw, "wb") as handle:
        handle.truncate(8 * BLOCK_SIZE)
        handle.write(rng.randbytes(BLOCK_SIZE))
        handle.write(bytes(BLOCK_SIZE))
        handle.seek(5 * BLOCK_SIZE + 4096)
        handle.write(rng.randbytes(100))
        handle.seek(7 * BLOCK_SIZE)
        handle.write(rng.randbytes(BLOCK_SIZE))
    ebs, ec2 = aws_client("ebs"), aws_client("ec2")
    upload = upload_snapshot(raw, ebs=ebs, ec2=ec2, tags={"d2c:digest": "d1"}, description="test", workers=4)
    listed = ebs.list_snapshot_blocks(SnapshotId=upload.snapshot_id)["Blocks"]
    assert sorted(int(b["BlockIndex"]) for b in listed) == [0, 5, 7]
    assert (upload.blocks_sent, upload.blocks_zero_skipped, upload.bytes_sent) == (3, 1, 3 * BLOCK_SIZE)
    source = _blocks(raw)
    for block in listed:
        got = ebs.get_snapshot_block(SnapshotId=upload.snapshot_id, BlockIndex=int(block["BlockIndex"]), BlockToken=block["BlockToken"])
        assert got["BlockData"].read() == source[int(block["BlockIndex"])]
        assert got["DataLength"] == BLOCK_SIZE
    snapshot = ec2.describe_snapshots(SnapshotIds=[upload.snapshot_id])["Snapshots"][0]
    assert {"Key": "d2c:digest", "Value": "d1"} in snapshot["Tags"]


def test_ensure_ami_imports_once_and_reuses_by_digest(ubuntu_gpt_ova, calls):
    ami = importer.ensure_ami(ubuntu_gpt_ova, region="us-east-1", public_key=KEY, run_id="run-7", boot_test=False)
    ec2 = aws_client("ec2")
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["d2c:run"] == "run-7" and tags["d2c:image"] == "labvm.ova" and len(tags["d2c:digest"]) == 64
    register = calls["RegisterImage"][0]
    assert (register["VirtualizationType"], register["EnaSupport"], register["BootMode"], register["RootDeviceName"]) == ("hvm", True, "uefi", "/dev/xvda")
    assert register["Architecture"] == "x86_64"
    assert register["TagSpecifications"] == [{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    snapshot_id = register["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert {"Key": "d2c:digest", "Value": tags["d2c:digest"]} in snapshot["Tags"]
    sent = len(calls["PutSnapshotBlock"])
    assert 0 < sent < 352 * 2**20 // BLOCK_SIZE // 4
    assert sorted(p.name for p in (state_dir() / "images").iterdir()) == [f"{tags['d2c:digest'][:16]}.manifest.json"]

    again = importer.ensure_ami(ubuntu_gpt_ova, region="us-east-1", public_key=KEY, run_id="run-8", boot_test=False)
    assert again == ami
    assert len(calls["PutSnapshotBlock"]) == sent and len(calls["StartSnapshot"]) == 1


def test_a_failed_upload_deletes_the_snapshot(ubuntu_ova, calls, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    real_client = importer.client

    def flaky_client(service, region=None, **config):
        made = real_client(service, region, **config)
        if service == "ebs":
            def fail(**_):
                if len(calls.get("PutSnapshotBlock", [])) >= 3:
                    raise EndpointConnectionError(endpoint_url="https://ebs.us-east-1.amazonaws.com")
            made.meta.events.register("before-call.ebs.PutSnapshotBlock", fail)
        return made

    monkeypatch.setattr(importer, "client", flaky_client)
    with pytest.raises(WorkError, match="cannot reach AWS"):
        importer.ensure_ami(ubuntu_ova, region="us-east-1", boot_test=False)
    snapshot_id = calls["DeleteSnapshot"][0]["SnapshotId"]
    ec2 = aws_client("ec2")
    left = ec2.describe_snapshots(Filters=[{"Name": "tag-key", "Values": ["d2c:digest"]}])["Snapshots"]
    assert snapshot_id not in [s["SnapshotId"] for s in left]
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": ["d2c:digest"]}])["Images"] == []
    assert not any(p.name.endswith(".work") for p in (state_dir() / "images").iterdir())


def test_each_vm_of_an_appliance_becomes_its_own_ami(cluster_ova, calls):
    with pytest.raises(UsageError, match="holds 2 VMs"):
        importer.ensure_ami(cluster_ova, region="us-east-1", boot_test=False)
    assert "StartSnapshot" not in calls
    head = importer.ensure_ami(cluster_ova, region="us-east-1", vm="head", boot_test=False)
    worker = importer.ensure_ami(cluster_ova, region="us-east-1", vm="worker", boot_test=False)
    assert head != worker
    images = aws_client("ec2").describe_images(ImageIds=[head, worker])["Images"]
    tags = {i["ImageId"]: {t["Key"]: t["Value"] for t in i["Tags"]} for i in images}
    assert (tags[head]["d2c:vm"], tags[worker]["d2c:vm"]) == ("head", "worker")
    assert tags[head]["d2c:digest"] != tags[worker]["d2c:digest"]
    assert importer.ensure_ami(cluster_ova, region="us-east-1", vm="worker", boot_test=False) == worker


def test_a_failing_image_uploads_nothing(vm_image, calls):
    with pytest.raises(UsageError, match="not ready for EC2 — ENA driver"):
        importer.ensure_ami(vm_image("no-ena", guest=Guest(ena=False)), region="us-east-1", boot_test=False)
    assert "StartSnapshot" not in calls and "CreateMultipartUpload" not in calls


def _fail(client, operation, code):
    """Make every ``operation`` call of ``client`` fail with the AWS error ``code``."""
    from botocore.exceptions import ClientError

    def fail(**_):
        raise ClientError({"Error": {"Code": code, "Message": f"{operation} refused for the test"}}, operation)

    client.meta.events.register(f"before-call.ec2.{operation}", fail)


def _snapshot(ec2):
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    return ec2.create_snapshot(VolumeId=volume)["SnapshotId"]


def _register(ec2, snapshot_id):
    return register_snapshot(
        ec2, snapshot_id=snapshot_id, name="d2c-labvm-0123456789ab", volume_gib=1, arch="x86_64",
        boot_mode="legacy-bios", tags={"d2c:digest": "d1"},
    )


def _own_images(ec2):
    return ec2.describe_images(Owners=["self"])["Images"]


def test_registered_amis_carry_their_tags(aws):
    ec2 = aws_client("ec2")
    ami = _register(ec2, _snapshot(ec2))
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert {"Key": "d2c:digest", "Value": "d1"} in image["Tags"]


def test_registered_amis_are_imdsv2_only(aws):
    """moto accepts ImdsSupport but does not keep it (describe_images leaves it out), so the request is read as sent."""
    ec2 = aws_client("ec2")
    sent: dict = {}
    ec2.meta.events.register("before-parameter-build.ec2.RegisterImage", lambda params, **_: sent.update(params))
    ami = _register(ec2, _snapshot(ec2))
    assert sent["ImdsSupport"] == "v2.0"
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["ImageId"] == ami


def test_a_failed_tagging_removes_the_ami_and_then_the_snapshot(aws):
    from botocore.exceptions import ClientError

    ec2 = aws_client("ec2")
    snapshot_id = _snapshot(ec2)
    _fail(ec2, "CreateTags", "RequestLimitExceeded")
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        _register(ec2, snapshot_id)
    assert _own_images(ec2) == []
    assert snapshot_id not in [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]]


def test_a_failing_cleanup_never_hides_the_original_error(ubuntu_ova, calls, monkeypatch):
    real_client = importer.client

    def failing_client(service, region=None, **config):
        made = real_client(service, region, **config)
        if service == "ec2":
            _fail(made, "CreateTags", "RequestLimitExceeded")
            _fail(made, "DeleteSnapshot", "InvalidSnapshot.InUse")
        return made

    monkeypatch.setattr(importer, "client", failing_client)
    with pytest.raises(WorkError) as caught:
        importer.ensure_ami(ubuntu_ova, region="us-east-1", boot_test=False)
    message = str(caught.value)
    snapshot_id = calls["DeleteSnapshot"][0]["SnapshotId"]
    assert message.startswith("registering AMI d2c-labvm-")
    assert ": AWS said RequestLimitExceeded: CreateTags refused for the test; " in message
    assert f"snapshot {snapshot_id} could not be deleted" in message
    assert f"delete it with 'aws ec2 delete-snapshot --snapshot-id {snapshot_id}'" in message
    assert len(message.splitlines()) == 1
    assert calls["DeregisterImage"] and _own_images(aws_client("ec2")) == []


def test_an_image_that_does_not_boot_is_refused_before_any_upload(ubuntu_ova, calls, monkeypatch):
    """The Ubuntu-shaped test disk passes every check but has no boot code: the rehearsal refuses it, nothing is uploaded."""
    from executor.image.boot_test import qemu_binary

    if qemu_binary("x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (see .ci/install)")
    monkeypatch.setenv("D2C_BOOT_TEST_ACCEL", "tcg")
    monkeypatch.setenv("D2C_BOOT_TEST_TIMEOUT", "20")
    with pytest.raises(UsageError) as refused:
        importer.ensure_ami(ubuntu_ova, region="us-east-1", public_key=KEY)
    message = str(refused.value)
    assert "does not boot as EC2 (Nitro) presents it — SSH did not answer within 20 s" in message
    assert "the serial console stayed empty" in message and "--no-boot-test" in message
    assert not {"StartSnapshot", "PutSnapshotBlock", "RegisterImage"} & set(calls)
    images = state_dir() / "images"
    assert [p.suffix for p in sorted(images.glob("*.serial.log"))] == [".log"]
    manifest = json.loads(next(images.glob("*.manifest.json")).read_text())
    assert manifest["boot_test"]["ok"] is False
