"""The VM Import route: a stream-optimized VMDK uploaded to S3 in parts, then ``ec2.import_image``.

VM Import needs a service role named ``vmimport`` that EC2 assumes to read the bucket; it is
checked before anything is uploaded, and when missing the error says how to create it. The
upload is an S3 multipart upload that is aborted on any failure, so no invisible parts are left
to bill. The import task is polled with ``describe_import_image_tasks`` until it completes, and
the uploaded object is deleted afterwards either way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

from d2c.errors import UsageError, WorkError
from executor.image.convert import ProgressFn
from executor.image.snapshot_import import remove_image, tag_list, undone_on_failure

ROLE_NAME = "vmimport"
PART_SIZE = 64 * 2**20
ROLE_HELP = (
    "create the 'vmimport' service role once: a role trusted by vmie.amazonaws.com with read access "
    "to the bucket and ec2 snapshot/image permissions, as in "
    "https://docs.aws.amazon.com/vm-import/latest/userguide/required-permissions.html "
    "('aws iam create-role --role-name vmimport --assume-role-policy-document file://trust-policy.json', then "
    "'aws iam put-role-policy --role-name vmimport --policy-name vmimport --policy-document file://role-policy.json'), "
    "or use the default --method snapshot, which needs no role"
)


def check_role(iam) -> None:
    """UsageError explaining how to create the ``vmimport`` role when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        iam.get_role(RoleName=ROLE_NAME)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchEntity", "NoSuchEntityException"):
            raise UsageError(f"VM Import needs the IAM role '{ROLE_NAME}', which this account lacks; {ROLE_HELP}") from None
        raise


def ensure_bucket(s3, bucket: str, region: str) -> None:
    """Create ``bucket`` in ``region`` unless it already exists."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError:
        pass
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **extra)


def multipart_upload(s3, path: Path, *, bucket: str, key: str, tags: dict[str, str], progress: ProgressFn | None = None) -> None:
    """Upload ``path`` to ``s3://bucket/key`` in parts; the upload is aborted if any part fails."""
    size = Path(path).stat().st_size
    tagging = urlencode(tags)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Tagging=tagging)["UploadId"]
    try:
        parts = []
        with open(path, "rb") as handle:
            number = 1
            while chunk := handle.read(PART_SIZE):
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
                if progress is not None:
                    progress("uploading to S3", min(number * PART_SIZE, size), size)
                number += 1
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def run_import(
    ec2,
    *,
    bucket: str,
    key: str,
    boot_mode: str,
    description: str,
    tags: dict[str, str],
    poll_s: float = 30.0,
    timeout_s: float = 4 * 3600.0,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Start ``import_image`` on the uploaded VMDK, poll it to the end, tag the AMI; returns its id.

    When the AMI cannot be tagged it is deregistered and its snapshots deleted, and the tagging
    error is raised.
    """
    task_id = ec2.import_image(
        Description=description,
        DiskContainers=[{"Description": description, "Format": "vmdk", "UserBucket": {"S3Bucket": bucket, "S3Key": key}}],
        BootMode=boot_mode,
        RoleName=ROLE_NAME,
        TagSpecifications=[{"ResourceType": "import-image-task", "Tags": tag_list(tags)}],
    )["ImportTaskId"]
    deadline = time.monotonic() + timeout_s
    while True:
        task = ec2.describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"][0]
        status = task.get("Status", "")
        if status == "completed" and task.get("ImageId"):
            image_id = task["ImageId"]
            snapshots = [d["SnapshotId"] for d in task.get("SnapshotDetails", []) if d.get("SnapshotId")]
            # VM Import cannot tag the AMI it makes; an AMI left untagged would be invisible to
            # 'd2c down --all', so it is removed again when tagging fails.
            with undone_on_failure(lambda: remove_image(ec2, image_id, snapshots), f"tagging AMI {image_id}"):
                ec2.create_tags(Resources=[image_id], Tags=tag_list(tags))
            return image_id
        if status in ("deleted", "deleting"):
            raise WorkError(f"VM Import task {task_id} failed: {task.get('StatusMessage', 'no reason given')}")
        if progress is not None:
            progress(f"VM Import: {task.get('StatusMessage', status)}", float(task.get("Progress", 0) or 0), 100.0)
        if time.monotonic() > deadline:
            ec2.cancel_import_task(ImportTaskId=task_id)
            raise WorkError(f"VM Import task {task_id} did not finish in {timeout_s / 3600:.1f} h; cancelled")
        sleep(poll_s)


def import_vmdk(
    vmdk: Path,
    *,
    ec2,
    s3,
    iam,
    bucket: str,
    key: str,
    region: str,
    boot_mode: str,
    description: str,
    tags: dict[str, str],
    progress: ProgressFn | None = None,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The whole route: role check, bucket, multipart upload, import and polling; the S3 object is removed after."""
    check_role(iam)
    ensure_bucket(s3, bucket, region)
    multipart_upload(s3, vmdk, bucket=bucket, key=key, tags=tags, progress=progress)
    try:
        return run_import(ec2, bucket=bucket, key=key, boot_mode=boot_mode, description=description, tags=tags, poll_s=poll_s, progress=progress, sleep=sleep)
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
