"""VirtualBox VMs to AMIs: read the appliance, check it, edit a copy minimally, convert, import.

The flow (``importer.ensure_ami``): ``source`` finds the disk inside an .ova/.ovf/.vbox or a bare
disk file; ``convert`` makes a sparse raw copy with qemu-img; ``disk`` reads its partition table
and opens the root filesystem with e2fsprogs; ``checks`` lists what EC2 needs (pass/fix/fail);
``prepare`` applies the fixes to the copy and records each in a manifest; ``snapshot_import``
(EBS direct API) or ``vmimport`` (S3 + VM Import) turns it into an AMI tagged with ``digest``.
The user's original image is only ever read.
"""
