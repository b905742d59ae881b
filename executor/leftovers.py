"""Finding and deleting what a run left on AWS, by its ``d2c:run`` tag alone (no journal needed).

Teardown and ``d2c down --all`` use this for everything besides instances, volumes, security
groups and key pairs (which the provider handles while it waits on termination):

* **AMIs** owned by the account and tagged with the run: deregistered first, then their EBS
  snapshots deleted (a snapshot in use by a registered AMI cannot be deleted,
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html);
* **snapshots** tagged with the run that no AMI uses any more: an AMI deregistered by hand, or a
  snapshot completed but never registered (the controller killed between ``complete_snapshot``
  and ``register_image``);
* **schedules** named ``d2c-<run>`` (``executor.scheduler``);
* **VM Import uploads** in d2c's bucket ``d2c-images-<account>-<region>``: objects tagged with the
  run, and multipart uploads never completed (S3 keeps and bills their parts until they are
  aborted, https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpu-abort-incomplete-mpu-lifecycle-config.html).
  An unfinished upload has no tags yet, so any in d2c's bucket counts as left over by ``uploads``.

Each ``find_*`` returns ``(run id, resource id)`` pairs; ``run_id=None`` finds every run's.
"""

from __future__ import annotations

from typing import Iterable

RUN_TAG = "d2c:run"
UNFINISHED_UPLOADS = "uploads"
"""The pseudo run id unfinished VM Import uploads are listed under (they carry no tags)."""


def _filters(run_id: str | None) -> list[dict]:
    return [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}] if run_id else [{"Name": "tag-key", "Values": [RUN_TAG]}]


def _run(tags: Iterable[dict] | None) -> str | None:
    return next((t["Value"] for t in tags or [] if t["Key"] == RUN_TAG), None)


def find_images(ec2, run_id: str | None) -> list[tuple[str, dict]]:
    """The account's AMIs tagged with the run: (run id, the describe_images record)."""
    images = ec2.describe_images(Owners=["self"], Filters=_filters(run_id))["Images"]
    return [(_run(i.get("Tags")), i) for i in images if _run(i.get("Tags"))]


def find_snapshots(ec2, run_id: str | None) -> list[tuple[str, str]]:
    """Snapshots tagged with the run."""
    found = []
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=_filters(run_id)):
        found += [(_run(s.get("Tags")), s["SnapshotId"]) for s in page["Snapshots"] if _run(s.get("Tags"))]
    return found


def images_bucket(region: str) -> str | None:
    """d2c's VM Import bucket in ``region`` (``d2c-images-<account>-<region>``), None when the account cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from d2c.aws import client

    try:
        account = client("sts", region, attempts=2).get_caller_identity()["Account"]
    except (BotoCoreError, ClientError):
        return None
    return f"d2c-images-{account}-{region}"


def find_uploads(s3, bucket: str | None, run_id: str | None) -> list[tuple[str, str]]:
    """Objects tagged with the run in d2c's bucket (``key``), and unfinished uploads (``key#upload-id``)."""
    from botocore.exceptions import ClientError

    if bucket is None:
        return []
    found: list[tuple[str, str]] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                run = _run(s3.get_object_tagging(Bucket=bucket, Key=item["Key"]).get("TagSet"))
                if run and (run_id is None or run == run_id):
                    found.append((run, item["Key"]))
        if run_id is None:
            for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                found.append((UNFINISHED_UPLOADS, f"{upload['Key']}#{upload['UploadId']}"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("NoSuchBucket", "404", "AccessDenied"):
            return found
        raise
    return found


def delete_upload(s3, bucket: str, item: str) -> str:
    """Delete an object, or abort an unfinished upload (``key#upload-id``); returns the line to show."""
    if "#" in item:
        key, upload_id = item.rsplit("#", 1)
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        return f"aborted the unfinished upload of s3://{bucket}/{key}"
    s3.delete_object(Bucket=bucket, Key=item)
    return f"deleted s3://{bucket}/{item}"


def image_snapshots(image: dict) -> list[str]:
    """The EBS snapshots an AMI record names."""
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
