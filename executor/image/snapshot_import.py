"""The snapshot route: write a raw disk into an EBS snapshot with the EBS direct API, then register an AMI.

No S3 bucket, no IAM role and no hour-long VM Import: ``start_snapshot``, one
``put_snapshot_block`` per 512 KiB block that holds data (with its base64 SHA-256 checksum), and
``complete_snapshot``. Blocks come from ``qemu-img map`` of the sparse copy, so holes are never
read, and blocks that read back all zero are skipped too (a new snapshot reads zero wherever no
block was written). Several blocks go up at once from a thread pool. If anything fails, the
snapshot is deleted so nothing half-made is left (or billed); if that deletion fails too, the error
still leads with the original failure and names what to delete by hand.

The AMI is tagged as it is registered (``TagSpecifications``), so no untagged AMI that
``d2c down --all`` cannot find exists even for a moment on EC2.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from d2c.aws import aws_errors
from d2c.errors import D2CError, WorkError
from executor.image.convert import ProgressFn, data_extents
from executor.image.source import DiskRef

BLOCK_SIZE = 512 * 1024
GIB = 2**30
_ZERO_BLOCK = bytes(BLOCK_SIZE)


@dataclass(frozen=True)
class SnapshotUpload:
    """What one upload did: the snapshot, the blocks sent and skipped, and the bytes on the wire."""

    snapshot_id: str
    volume_gib: int
    blocks_sent: int
    blocks_zero_skipped: int
    bytes_sent: int


def candidate_blocks(raw: Path) -> list[int]:
    """Indexes of the 512 KiB blocks of ``raw`` that overlap data (holes and known zeros left out)."""
    indexes: set[int] = set()
    for start, length in data_extents(DiskRef(Path(raw), "raw")):
        indexes.update(range(start // BLOCK_SIZE, (start + length - 1) // BLOCK_SIZE + 1))
    return sorted(indexes)


def checksum(block: bytes) -> str:
    """The base64 SHA-256 the EBS direct API expects with each block."""
    return base64.b64encode(hashlib.sha256(block).digest()).decode()


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """``tags`` in the ``[{"Key": ..., "Value": ...}]`` form every AWS tagging parameter takes."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


@contextmanager
def undone_on_failure(undo: Callable[[], None], action: str) -> Iterator[None]:
    """Run ``undo`` when the block (doing ``action``) fails, then re-raise the block's own error.

    When ``undo`` fails as well, the error raised still leads with the block's failure (as the
    one-line d2c error it stands for, AWS errors worded as for ``action``) and appends what could
    not be cleaned up, so a cleanup failure never takes the place of the real cause.
    """
    try:
        yield
    except BaseException as exc:
        try:
            undo()
        except Exception as cleanup:  # noqa: BLE001 - reported inside the original error below
            if not isinstance(exc, Exception):
                exc.add_note(str(cleanup))
                raise
            original = _as_d2c_error(exc, action)
            raise type(original)(f"{original.message}; {cleanup}") from exc
        raise


def _as_d2c_error(exc: Exception, action: str) -> D2CError:
    """``exc`` as the one-line d2c error it is reported as (AWS errors as ``aws_errors`` words them)."""
    if isinstance(exc, D2CError):
        return exc
    try:
        with aws_errors(action):
            raise exc
    except D2CError as translated:
        return translated
    except Exception:  # noqa: BLE001 - not an AWS error: name it as it is
        return WorkError(f"{action}: {type(exc).__name__}: {exc}")


def upload_snapshot(
    raw: Path,
    *,
    ebs,
    ec2,
    tags: dict[str, str],
    description: str,
    workers: int = 8,
    progress: ProgressFn | None = None,
    wait_timeout_s: float = 3600.0,
) -> SnapshotUpload:
    """Write the raw disk ``raw`` into a new EBS snapshot and wait until it is usable."""
    size = Path(raw).stat().st_size
    volume_gib = max(1, math.ceil(size / GIB))
    blocks = candidate_blocks(raw)
    snapshot_id = ebs.start_snapshot(VolumeSize=volume_gib, Tags=tag_list(tags), Description=description)["SnapshotId"]
    lock = threading.Lock()
    counts = {"done": 0, "sent": 0, "zero": 0}
    fd = os.open(raw, os.O_RDONLY)

    def send(index: int) -> None:
        block = os.pread(fd, BLOCK_SIZE, index * BLOCK_SIZE).ljust(BLOCK_SIZE, b"\0")
        zero = block == _ZERO_BLOCK
        if not zero:
            ebs.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=index,
                BlockData=block,
                DataLength=BLOCK_SIZE,
                Checksum=checksum(block),
                ChecksumAlgorithm="SHA256",
            )
        with lock:
            counts["done"] += 1
            counts["zero" if zero else "sent"] += 1
            if progress is not None:
                progress("uploading blocks", counts["done"], len(blocks))

    try:
        with undone_on_failure(lambda: delete_snapshot(ec2, snapshot_id), f"uploading snapshot {snapshot_id}"):
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(send, i) for i in blocks]:
                    future.result()
            ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=counts["sent"])
            _wait_completed(ec2, snapshot_id, wait_timeout_s)
    finally:
        os.close(fd)
    return SnapshotUpload(snapshot_id, volume_gib, counts["sent"], counts["zero"], counts["sent"] * BLOCK_SIZE)


def delete_snapshot(ec2, snapshot_id: str) -> None:
    """Delete a snapshot left by a failed import; if that fails too, say which one to delete by hand."""
    try:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    except Exception as exc:  # noqa: BLE001 - the original failure is re-raised by the caller
        raise WorkError(
            f"snapshot {snapshot_id} could not be deleted ({exc}); "
            f"delete it with 'aws ec2 delete-snapshot --snapshot-id {snapshot_id}'"
        ) from exc


def deregister_image(ec2, image_id: str) -> None:
    """Deregister an AMI left by a failed import; if that fails too, say which one to remove by hand."""
    try:
        ec2.deregister_image(ImageId=image_id)
    except Exception as exc:  # noqa: BLE001 - the original failure is re-raised by the caller
        raise WorkError(
            f"AMI {image_id} could not be deregistered ({exc}); "
            f"remove it with 'aws ec2 deregister-image --image-id {image_id}'"
        ) from exc


def _wait_completed(ec2, snapshot_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
        if snapshot["State"] == "completed":
            return
        if snapshot["State"] == "error":
            raise WorkError(f"snapshot {snapshot_id} failed: {snapshot.get('StateMessage', 'no reason given')}")
        if time.monotonic() > deadline:
            raise WorkError(f"snapshot {snapshot_id} still {snapshot['State']} after {timeout_s:.0f} s")
        time.sleep(5)


def register_snapshot(ec2, *, snapshot_id: str, name: str, volume_gib: int, arch: str, boot_mode: str, tags: dict[str, str]) -> str:
    """Register an HVM, ENA-enabled AMI booting from ``snapshot_id``, tagged ``tags``; returns the AMI id.

    On any failure nothing is left: the AMI (if registered) is deregistered and the snapshot
    deleted, in that order, since a snapshot cannot be deleted while an AMI uses it.

    ``ImdsSupport='v2.0'`` marks the AMI as IMDSv2-only: instances launched from it get
    ``HttpTokens=required`` even when launched by hand outside d2c (RegisterImage,
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RegisterImage.html; the field's text:
    https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/ec2/aws.sdk.kotlin.services.ec2.model/-register-image-request/).
    """
    root = "/dev/xvda"
    action = f"registering AMI {name}"
    with undone_on_failure(lambda: delete_snapshot(ec2, snapshot_id), action):
        image_id = ec2.register_image(
            Name=name,
            Description=f"d2c import of {name}",
            Architecture=arch,
            RootDeviceName=root,
            BlockDeviceMappings=[
                {"DeviceName": root, "Ebs": {"SnapshotId": snapshot_id, "VolumeSize": volume_gib, "VolumeType": "gp3", "DeleteOnTermination": True}}
            ],
            VirtualizationType="hvm",
            EnaSupport=True,
            BootMode=boot_mode,
            ImdsSupport="v2.0",
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(tags)}],
        )["ImageId"]
        # EC2 applies TagSpecifications atomically; endpoints that ignore them (moto keeps only the
        # name) get the same tags here, with the AMI removed again if even that fails.
        with undone_on_failure(lambda: deregister_image(ec2, image_id), action):
            ec2.create_tags(Resources=[image_id], Tags=tag_list(tags))
    return image_id


def remove_image(ec2, image_id: str, snapshot_ids: list[str]) -> None:
    """Deregister an AMI a failed import made, then delete its snapshots (which it no longer uses)."""
    deregister_image(ec2, image_id)
    for snapshot_id in snapshot_ids:
        delete_snapshot(ec2, snapshot_id)
