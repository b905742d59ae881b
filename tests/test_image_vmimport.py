"""The VM Import route: S3 multipart upload and the IAM role check against moto's server; the EC2 import calls
through botocore's Stubber, because moto does not implement import_image / describe_import_image_tasks.
The stubbed responses follow the shapes in AWS's EC2 API reference (ImportImage, DescribeImportImageTasks).
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from d2c.aws import client as aws_client
from d2c.errors import UsageError, WorkError
from executor.image import vmimport
from executor.image.convert import convert
from executor.image.prepare import prepare_image
from executor.image.source import DiskRef
from tests.image_builder import Guest

pytestmark = pytest.mark.integration
TASK = "import-ami-0123456789abcdef0"
AMI = "ami-0a1b2c3d4e5f67890"
BUCKET = "d2c-images-123456789012-us-east-1"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"},
         "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}}}]}


@pytest.fixture(scope="module")
def vmdk(vm_image, tmp_path_factory):
    """A real stream-optimized VMDK of a prepared guest holding 11 MiB of incompressible data (three 5 MiB parts)."""
    work = tmp_path_factory.mktemp("vmimport")
    prepared = prepare_image(vm_image("bulky", guest=Guest(payload_mib=11)), work)
    return convert(DiskRef(prepared.raw, "raw"), work / "labvm.vmdk", fmt="vmdk")


@pytest.fixture
def role(aws):
    aws_client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(TRUST))


def _task(status, message="", progress=None, **extra):
    task = {"ImportTaskId": TASK, "Status": status, "StatusMessage": message, "BootMode": "legacy-bios", **extra}
    if progress is not None:
        task["Progress"] = progress
    return {"ImportImageTasks": [task]}


def _run(vmdk, ec2, progress=None):
    return vmimport.import_vmdk(
        vmdk, ec2=ec2, s3=aws_client("s3"), iam=aws_client("iam"), bucket=BUCKET, key="labvm.vmdk",
        region="us-east-1", boot_mode="legacy-bios", description="d2c-labvm", tags={"d2c:digest": "abc"},
        progress=progress, poll_s=0, sleep=lambda _: None,
    )


def test_upload_import_and_poll_to_a_tagged_ami(vmdk, role, monkeypatch):
    monkeypatch.setattr(vmimport, "PART_SIZE", 5 * 2**20)
    ec2 = aws_client("ec2")
    stub = Stubber(ec2)
    stub.add_response("import_image", {"ImportTaskId": TASK, "Status": "active", "Progress": "2", "StatusMessage": "pending"}, {
        "Description": "d2c-labvm", "BootMode": "legacy-bios", "RoleName": "vmimport", "TagSpecifications": ANY,
        "DiskContainers": [{"Description": "d2c-labvm", "Format": "vmdk", "UserBucket": {"S3Bucket": BUCKET, "S3Key": "labvm.vmdk"}}],
    })
    stub.add_response("describe_import_image_tasks", _task("active", "converting", "28"), {"ImportTaskIds": [TASK]})
    stub.add_response("describe_import_image_tasks", _task("active", "booting", "65"), {"ImportTaskIds": [TASK]})
    stub.add_response("describe_import_image_tasks", _task("completed", ImageId=AMI, Architecture="x86_64", Platform="Linux"), {"ImportTaskIds": [TASK]})
    stub.add_response("create_tags", {}, {"Resources": [AMI], "Tags": [{"Key": "d2c:digest", "Value": "abc"}]})
    seen = []

    def progress(stage, done, total):
        if stage.startswith("VM Import"):
            head = aws_client("s3").head_object(Bucket=BUCKET, Key="labvm.vmdk")
            seen.append((stage, done, head["ContentLength"]))
        else:
            seen.append((stage, done, total))

    with stub:
        assert _run(vmdk, ec2, progress) == AMI
        stub.assert_no_pending_responses()
    size = vmdk.stat().st_size
    uploads = [s for s in seen if s[0] == "uploading to S3"]
    assert len(uploads) == -(-size // (5 * 2**20)) >= 2 and uploads[-1][1] == size
    assert [s for s in seen if s[0].startswith("VM Import")] == [("VM Import: converting", 28.0, size), ("VM Import: booting", 65.0, size)]
    assert aws_client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_missing_vmimport_role_explains_how_to_create_it_and_uploads_nothing(vmdk, aws):
    ec2 = aws_client("ec2")
    with Stubber(ec2), pytest.raises(UsageError) as caught:
        _run(vmdk, ec2)
    message = str(caught.value)
    assert "needs the IAM role 'vmimport'" in message and "aws iam create-role --role-name vmimport" in message
    assert "--method snapshot" in message
    assert BUCKET not in [b["Name"] for b in aws_client("s3").list_buckets()["Buckets"]]


def test_a_failed_part_aborts_the_multipart_upload(vmdk, role, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    monkeypatch.setattr(vmimport, "PART_SIZE", 5 * 2**20)
    s3 = aws_client("s3")
    parts = []

    def fail_second(params, **_):
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    s3.meta.events.register("provide-client-params.s3.UploadPart", fail_second)
    vmimport.ensure_bucket(s3, BUCKET, "us-east-1")
    with pytest.raises(EndpointConnectionError):
        vmimport.multipart_upload(s3, vmdk, bucket=BUCKET, key="labvm.vmdk", tags={"d2c:digest": "abc"})
    assert parts == [1, 2]
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_failed_import_task_is_reported_and_the_upload_removed(vmdk, role):
    ec2 = aws_client("ec2")
    stub = Stubber(ec2)
    stub.add_response("import_image", {"ImportTaskId": TASK, "Status": "active"}, None)
    stub.add_response("describe_import_image_tasks", _task("deleted", "ClientError: Unknown OS / Missing OS files."), None)
    with stub, pytest.raises(WorkError, match=rf"VM Import task {TASK} failed: ClientError: Unknown OS"):
        _run(vmdk, ec2)
    assert aws_client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_an_ami_that_cannot_be_tagged_is_removed_with_its_snapshot():
    """A failing create_tags must not leave an untagged AMI that 'd2c down --all' cannot find."""
    ec2 = aws_client("ec2", "us-east-1")
    stub = Stubber(ec2)
    stub.add_response("import_image", {"ImportTaskId": TASK, "Status": "active"}, None)
    details = [{"DeviceName": "/dev/sda1", "SnapshotId": "snap-0123456789abcdef0", "Status": "completed"}]
    stub.add_response("describe_import_image_tasks", _task("completed", ImageId=AMI, SnapshotDetails=details), None)
    stub.add_client_error("create_tags", "RequestLimitExceeded", "Request limit exceeded.")
    stub.add_response("deregister_image", {}, {"ImageId": AMI})
    stub.add_response("delete_snapshot", {}, {"SnapshotId": "snap-0123456789abcdef0"})
    with stub, pytest.raises(ClientError, match="RequestLimitExceeded"):
        vmimport.run_import(ec2, bucket=BUCKET, key="labvm.vmdk", boot_mode="legacy-bios", description="d2c-labvm",
                            tags={"d2c:digest": "abc"}, poll_s=0, sleep=lambda _: None)
    stub.assert_no_pending_responses()


def test_ensure_ami_by_vmimport_converts_uploads_and_tags(vm_image, role, monkeypatch):
    """The whole route through ensure_ami: EC2 stubbed (lookup, import, one poll, tags); S3, IAM and STS on moto."""
    from executor.image import importer

    ec2 = aws_client("ec2")
    stub = Stubber(ec2)
    stub.add_response("describe_images", {"Images": []}, None)
    stub.add_response("import_image", {"ImportTaskId": TASK, "Status": "active"}, None)
    stub.add_response("describe_import_image_tasks", _task("completed", ImageId=AMI), None)
    stub.add_response("create_tags", {}, None)
    real_client = importer.client
    monkeypatch.setattr(importer, "client", lambda service, region=None: ec2 if service == "ec2" else real_client(service, region))
    with stub:
        assert importer.ensure_ami(vm_image("bulky", guest=Guest(payload_mib=11)), region="us-east-1", method="vmimport", boot_test=False) == AMI
        stub.assert_no_pending_responses()
    assert aws_client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert aws_client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
