"""Reading what VirtualBox gives a user: .ova, .ovf + disk, .vbox + disk, bare disks; bad input refused."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from d2c.errors import UsageError
from executor.image.checks import inspect_disk
from executor.image.convert import convert
from executor.image.digest import image_digest
from executor.image.disk import read_layout
from executor.image.prepare import check_image
from executor.image.source import open_source
from tests.image_builder import build_disk, make_ova, ovf_text

VBOX = """<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{{11111111-2222-3333-4444-555555555555}}" name="labvm" OSType="Ubuntu_64">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{{aaaaaaaa-0000-0000-0000-000000000001}}" location="{disk}" format="VDI" type="Normal">
          <HardDisk uuid="{{aaaaaaaa-0000-0000-0000-000000000002}}" location="Snapshots/{{x}}.vdi" format="VDI"/>
        </HardDisk>
      </HardDisks>
    </MediaRegistry>
    <Hardware><CPU count="2"/><Memory RAMSize="2048"/>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI" PortCount="1">
          <AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{{{attached}}}"/></AttachedDevice>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
"""


def _vdi_of(ova, dest):
    with tarfile.open(ova) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(".vdi"))
        archive.extract(member, dest, filter="data")
    return dest / member.name


def test_ova_disk_is_read_in_place_with_the_descriptor_facts(ubuntu_ova):
    source = open_source(ubuntu_ova)
    assert (source.kind, source.name, source.os_type) == ("ova", "labvm", "Ubuntu_64")
    assert source.disk.format == "vdi" and source.disk.path == ubuntu_ova and source.disk.offset > 0
    assert source.virtual_size == 352 * 2**20
    assert source.files == (ubuntu_ova,)


def test_ovf_vbox_and_bare_disks_all_reach_the_same_guest(ubuntu_ova, tmp_path):
    vdi = _vdi_of(ubuntu_ova, tmp_path)
    ovf = tmp_path / "labvm.ovf"
    ovf.write_text(ovf_text(vdi.name, 352 * 2**20))
    vbox = tmp_path / "labvm.vbox"
    vbox.write_text(VBOX.format(disk=vdi.name, attached="aaaaaaaa-0000-0000-0000-000000000001"))
    raw = tmp_path / "bare.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vdi), str(raw)], check=True)
    sources = {p.suffix: open_source(p) for p in (ovf, vbox, vdi, raw)}
    assert sources[".ovf"].disk.path == vdi and sources[".ovf"].files == (ovf, vdi)
    assert sources[".vbox"].os_type == "Ubuntu_64" and sources[".vbox"].disk.path == vdi
    assert sources[".vdi"].disk.format == "vdi" and sources[".raw"].disk.format == "raw"
    assert {s.virtual_size for s in sources.values()} == {352 * 2**20}


def test_the_ova_member_converts_to_the_partitioned_disk(ubuntu_gpt_ova, tmp_path):
    raw = convert(open_source(ubuntu_gpt_ova).disk, tmp_path / "disk.raw")
    layout = read_layout(raw)
    assert layout.label == "gpt" and layout.has_esp
    assert [p.filesystem for p in layout.partitions] == ["unknown", "ext4"]
    assert layout.partitions[1].offset == 9 * 2**20
    assert not (tmp_path / "disk.raw.partial").exists()


def test_a_vbox_booting_from_a_snapshot_is_refused_with_what_to_do(ubuntu_ova, tmp_path):
    vdi = _vdi_of(ubuntu_ova, tmp_path)
    vbox = tmp_path / "labvm.vbox"
    vbox.write_text(VBOX.format(disk=vdi.name, attached="aaaaaaaa-0000-0000-0000-000000000002"))
    with pytest.raises(UsageError, match=r"labvm\.vbox: the boot disk is a snapshot; delete or merge"):
        open_source(vbox)


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (b"just some notes\n" * 100, ".vdi", "not a disk image"),
        (b"", ".img", "not a disk image"),
    ],
)
def test_files_that_are_not_disk_images_are_named_and_refused(tmp_path, content, suffix, message):
    path = tmp_path / f"notes{suffix}"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as caught:
        open_source(path)
    assert str(path) in str(caught.value)


def test_a_truncated_ova_is_refused_before_any_conversion(ubuntu_ova, tmp_path):
    cut = tmp_path / "cut.ova"
    with open(ubuntu_ova, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(ubuntu_ova.stat().st_size // 3))
    with pytest.raises(UsageError, match=r"cut\.ova: not a readable OVA archive \(unexpected end of data\); export the VM again"):
        open_source(cut)


def test_an_ova_missing_its_disk_names_the_disk(ubuntu_ova, tmp_path):
    only_ova = tmp_path / "only.ova"
    with tarfile.open(ubuntu_ova) as archive, tarfile.open(only_ova, "w") as out:
        member = next(m for m in archive.getmembers() if m.name.endswith(".ovf"))
        out.addfile(member, archive.extractfile(member))
    with pytest.raises(UsageError, match=r"only\.ova: the OVA lacks the disk file 'labvm-disk001\.vdi'"):
        open_source(only_ova)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        open_source(tmp_path / "nope.ova")


def test_a_stream_optimized_vmdk_inside_an_ova_is_read_in_place(ubuntu_ova, tmp_path):
    vdi = _vdi_of(ubuntu_ova, tmp_path)
    vmdk = tmp_path / "labvm-disk001.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(vdi), str(vmdk)], check=True)
    ova = make_ova(vmdk, tmp_path / "vmware-style.ova")
    source = open_source(ova)
    assert source.disk.format == "vmdk" and source.disk.offset > 0
    raw = convert(source.disk, tmp_path / "from-vmdk.raw")
    same = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "vdi", str(raw), str(vdi)], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout


def test_each_vm_of_a_two_vm_appliance_is_its_own_disk(cluster_ova, tmp_path):
    head, worker = open_source(cluster_ova, vm="head"), open_source(cluster_ova, vm="worker")
    assert (head.name, head.vm, worker.name, worker.vm) == ("head", "head", "worker", "worker")
    assert head.disk.offset != worker.disk.offset
    for source in (head, worker):
        raw = convert(source.disk, tmp_path / f"{source.name}.raw")
        assert inspect_disk(raw).fs.read_text("/etc/d2c-role") == f"{source.name}\n"
    assert image_digest(head.files, vm=head.vm) != image_digest(worker.files, vm=worker.vm)


def test_a_multi_vm_appliance_needs_the_vm_named(cluster_ova):
    with pytest.raises(UsageError, match=r"cluster\.ova: the appliance holds 2 VMs \('head', 'worker'\); choose one with 'vm:'"):
        open_source(cluster_ova)
    with pytest.raises(UsageError, match=r"cluster\.ova: the appliance has no VM named 'db'; its VMs are 'head', 'worker'"):
        open_source(cluster_ova, vm="db")


def test_a_single_vm_appliance_takes_its_vm_by_name_or_by_default(ubuntu_ova, tmp_path):
    assert open_source(ubuntu_ova).vm == open_source(ubuntu_ova, vm="labvm").vm == "labvm"
    raw = tmp_path / "labvm.raw"
    raw.write_bytes(b"")
    with pytest.raises(UsageError, match=r"--vm labvm names a VM of an appliance, but this is not an \.ova or \.ovf"):
        open_source(raw, vm="labvm")


def test_a_disk_whose_name_holds_a_colon_is_read_as_a_file(tmp_path, monkeypatch):
    build_disk(tmp_path, file_name="vm:1.vdi", vdi=True)
    monkeypatch.chdir(tmp_path)
    source = open_source(Path("vm:1.vdi"))
    assert (source.disk.format, source.virtual_size) == ("vdi", 352 * 2**20)
    report = check_image(Path("vm:1.vdi"))
    assert report.ok and report.arch == "x86_64"
