"""AMIs d2c imported and kept for reuse: listing them with what they cost to keep, and removing them.

An AMI is stored as its EBS snapshots, billed per GB-month of data stored (standard tier,
$0.05 per GB-month in us-east-1, https://aws.amazon.com/ebs/pricing/). The listing prices each
AMI at its snapshots' volume sizes, an upper bound (a snapshot stores only the blocks written).
Removal deregisters the AMI, then deletes its snapshots, the order AWS requires
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html).

d2c's AMIs are those tagged ``d2c:digest`` (``executor.image.importer``); an AMI also tagged
``d2c:run`` belongs to one run and is deleted at its teardown.
"""

from __future__ import annotations

from dataclasses import dataclass

from d2c.aws import aws_errors, client
from d2c.errors import UsageError
from executor.image.importer import DIGEST_TAG
from executor.leftovers import image_snapshots
from planner.billing import SNAPSHOT_USD_GB_MONTH


@dataclass(frozen=True)
class KeptImage:
    """One d2c AMI with its storage."""

    image_id: str
    name: str
    created: str
    source: str
    """The VM image file it was made from (its ``d2c:image`` tag)."""
    run_id: str | None
    snapshot_gb: float

    @property
    def monthly_usd(self) -> float:
        """Snapshot storage per month at the standard tier's rate."""
        return self.snapshot_gb * SNAPSHOT_USD_GB_MONTH


def _tag(image: dict, key: str) -> str | None:
    return next((t["Value"] for t in image.get("Tags", []) if t["Key"] == key), None)


def list_images(region: str) -> list[KeptImage]:
    """The account's d2c AMIs in ``region``, newest first."""
    with aws_errors(f"listing d2c images in {region}"):
        images = client("ec2", region).describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [DIGEST_TAG]}])["Images"]
    kept = [
        KeptImage(
            image_id=i["ImageId"],
            name=i.get("Name", ""),
            created=i.get("CreationDate", ""),
            source=_tag(i, "d2c:image") or "",
            run_id=_tag(i, "d2c:run"),
            snapshot_gb=float(sum(m["Ebs"].get("VolumeSize", 0) for m in i.get("BlockDeviceMappings", []) if "Ebs" in m)),
        )
        for i in images
    ]
    return sorted(kept, key=lambda k: k.created, reverse=True)


def remove_image(region: str, image_id: str) -> list[str]:
    """Deregister a d2c AMI and delete its snapshots; UsageError for an AMI that is not d2c's."""
    ec2 = client("ec2", region)
    with aws_errors(f"removing image {image_id}"):
        found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"]
        if not found or _tag(found[0], DIGEST_TAG) is None:
            raise UsageError(f"{image_id}: not an AMI d2c imported in {region}; see 'd2c image list --region {region}'")
        ec2.deregister_image(ImageId=image_id)
        lines = [f"deregistered image {image_id}"]
        for snapshot_id in image_snapshots(found[0]):
            ec2.delete_snapshot(SnapshotId=snapshot_id)
            lines.append(f"deleted snapshot {snapshot_id}")
    return lines
