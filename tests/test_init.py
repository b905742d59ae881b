"""``d2c init``: scaffolding a descriptor from an app folder or a VirtualBox appliance.

VirtualBox itself cannot run here, so the appliance is built by the test: a tar holding an OVF
whose XML follows the shape of a VirtualBox 7 export (namespaces, References, DiskSection with
streamOptimized VMDK disks, VirtualSystem with vbox:Machine, OperatingSystemSection with
vbox:OSType, VirtualHardwareSection items for CPU, memory and disk), and a small disk member.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor
from d2c.ovf import parse_ovf, read_appliance

REPO = Path(__file__).resolve().parents[1]
VMDK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"


def _virtual_system(name: str, os_type: str, os_id: int, cpus: int, memory_mib: int, disk_id: str) -> str:
    return f"""\
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="{os_id}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{os_type}</Description>
      <vbox:OSType ovf:required="false">{os_type}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{cpus} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Caption>{memory_mib} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory_mib} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mib}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/{disk_id}</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.19-linux" uuid="{{6f1c0e55-0000-4000-8000-00000000000{os_id % 10}}}" name="{name}" OSType="{os_type}">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <Hardware>
        <CPU count="{cpus}"><PAE enabled="true"/></CPU>
        <Memory RAMSize="{memory_mib}"/>
      </Hardware>
    </vbox:Machine>
  </VirtualSystem>
"""


def virtualbox_ovf(namespace_version: int = 1) -> str:
    """An OVF shaped like VirtualBox 7's export of a master VM and a worker VM."""
    ns = f"http://schemas.dmtf.org/ovf/envelope/{namespace_version}"
    return f"""<?xml version="1.0"?>
<Envelope ovf:version="{namespace_version}.0" xml:lang="en-US" xmlns="{ns}" xmlns:ovf="{ns}" \
xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" \
xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="cluster-disk001.vmdk"/>
    <File ovf:id="file2" ovf:href="cluster-disk002.vmdk"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="21474836480" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{VMDK_FORMAT}"/>
    <Disk ovf:capacity="10" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk2" ovf:fileRef="file2" ovf:format="{VMDK_FORMAT}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
{_virtual_system("hpc-master", "Ubuntu_64", 94, 2, 4096, "vmdisk1")}\
{_virtual_system("hpc-worker", "Debian_64", 96, 4, 8192, "vmdisk2")}\
</Envelope>
"""


def build_ova(path: Path, ovf_text: str) -> Path:
    """Write an .ova: the OVF first, then the disks it references (small dummy VMDK bytes)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        members = [("cluster.ovf", ovf_text.encode()),
                   ("cluster-disk001.vmdk", b"KDMV" + bytes(8188)),
                   ("cluster-disk002.vmdk", b"KDMV" + bytes(4092))]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            archive.addfile(info, io.BytesIO(data))
    return path


def _d2c(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "d2c", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def appliance(tmp_path: Path) -> Path:
    (tmp_path / "vms").mkdir()
    return build_ova(tmp_path / "vms" / "cluster.ova", virtualbox_ovf())


def test_init_from_app_folder_writes_a_descriptor_check_accepts(tmp_path: Path):
    app = tmp_path / "my solver"
    app.mkdir()
    (app / "main.py").write_text("print('solving')\n")

    result = _d2c(app, "init")

    assert result.returncode == 0, result.stderr
    assert "wrote d2c.yaml" in result.stdout
    descriptor = load_descriptor(app / "d2c.yaml")
    assert descriptor.name == "my-solver"
    assert descriptor.master.image == app and descriptor.master.command == "python3 main.py"
    check = _d2c(app, "check")
    assert check.returncode == 0, check.stderr
    assert "valid" in check.stdout


@pytest.mark.parametrize("folder_name", ["2024", "yes", "null", "0x1F"])
def test_init_quotes_names_yaml_would_read_as_something_else(tmp_path: Path, folder_name: str):
    app = tmp_path / folder_name
    app.mkdir()
    (app / "run.sh").write_text("#!/bin/sh\n")

    assert _d2c(app, "init").returncode == 0
    check = _d2c(app, "check")

    assert check.returncode == 0, check.stderr
    assert load_descriptor(app).name == folder_name


def test_init_gives_the_mode_a_plain_write_would_give(tmp_path: Path):
    (tmp_path / "main.py").write_text("")
    old = os.umask(0o027)
    try:
        assert _d2c(tmp_path, "init").returncode == 0
    finally:
        os.umask(old)
    assert (tmp_path / "d2c.yaml").stat().st_mode & 0o777 == 0o640


def test_init_names_the_app_folder_relative_to_the_descriptor(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "project").mkdir()

    result = _d2c(tmp_path, "init", "--from", "src", "-o", "project")

    assert result.returncode == 0, result.stderr
    text = (tmp_path / "project" / "d2c.yaml").read_text()
    assert "image: ../src\n" in text and "command: ./run.sh\n" in text
    assert load_descriptor(tmp_path / "project").master.image == tmp_path / "src"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path):
    (tmp_path / "main.py").write_text("")
    original = "# my own descriptor, hand-tuned\nname: keep\n"
    (tmp_path / "d2c.yaml").write_text(original)

    refused = _d2c(tmp_path, "init")

    assert refused.returncode == 2
    assert refused.stderr == "error: d2c.yaml: already exists; pass --force to overwrite it\n"
    assert (tmp_path / "d2c.yaml").read_text() == original

    forced = _d2c(tmp_path, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "d2c.yaml").read_text() != original
    assert load_descriptor(tmp_path).master.command == "python3 main.py"


def test_init_from_virtualbox_ova_lists_machines_and_roles(tmp_path: Path, appliance: Path):
    result = _d2c(tmp_path, "init", "--from", "vms/cluster.ova")

    assert result.returncode == 0, result.stderr
    text = (tmp_path / "d2c.yaml").read_text()
    assert "# VM 'hpc-master': Ubuntu_64, 2 CPUs, 4096 MiB memory, disks: cluster-disk001.vmdk (20.0 GiB)" in text
    assert "# VM 'hpc-worker': Debian_64, 4 CPUs, 8192 MiB memory, disks: cluster-disk002.vmdk (10.0 GiB)" in text
    descriptor = load_descriptor(tmp_path / "d2c.yaml")
    assert descriptor.name == "cluster"
    master, worker = descriptor.roles
    assert (master.name, master.count, master.image, master.vm) == ("master", 1, appliance, "hpc-master")
    assert (worker.name, worker.count, worker.command, worker.image, worker.vm) == ("worker", None, None, appliance, "hpc-worker")
    assert _d2c(tmp_path, "check").returncode == 0


def test_ova_is_read_as_virtualbox_wrote_it(appliance: Path):
    master, worker = read_appliance(appliance)

    assert (master.name, master.os_type, master.cpus, master.memory_mib) == ("hpc-master", "Ubuntu_64", 2, 4096)
    assert [(d.disk_id, d.file_name, d.capacity_bytes, d.format_url) for d in master.disks] == [
        ("vmdisk1", "cluster-disk001.vmdk", 20 * 2**30, VMDK_FORMAT)]
    assert (worker.name, worker.os_type, worker.cpus, worker.memory_mib) == ("hpc-worker", "Debian_64", 4, 8192)
    assert [d.capacity_bytes for d in worker.disks] == [10 * 2**30]


def test_ovf_2_envelope_with_storage_items_is_read(tmp_path: Path):
    """VirtualBox's "OVF 2.0" export uses the envelope/2 namespace and SASD StorageItem disks."""
    sasd = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
    text = virtualbox_ovf(namespace_version=2).replace(
        'xmlns:xsi=', f'xmlns:sasd="{sasd}" xmlns:xsi=')
    text = text.replace("<Item>\n        <rasd:AddressOnParent>0</rasd:AddressOnParent>", "<StorageItem>\n        <sasd:AddressOnParent>0</sasd:AddressOnParent>")
    for tag in ("Caption", "Description", "ElementName", "HostResource", "InstanceID", "Parent"):
        text = text.replace(f"<rasd:{tag}>disk1</rasd:{tag}>", f"<sasd:{tag}>disk1</sasd:{tag}>")
    text = text.replace("<rasd:HostResource>", "<sasd:HostResource>").replace("</rasd:HostResource>", "</sasd:HostResource>")
    text = text.replace("<rasd:Parent>3</rasd:Parent>\n        <rasd:ResourceType>17</rasd:ResourceType>\n      </Item>",
                        "<rasd:Parent>3</rasd:Parent>\n        <sasd:ResourceType>17</sasd:ResourceType>\n      </StorageItem>")
    assert "<StorageItem>" in text

    master, worker = parse_ovf(text, tmp_path / "cluster.ovf")

    assert (master.cpus, master.memory_mib, [d.file_name for d in master.disks]) == (2, 4096, ["cluster-disk001.vmdk"])
    assert (worker.cpus, worker.memory_mib, [d.file_name for d in worker.disks]) == (4, 8192, ["cluster-disk002.vmdk"])


def test_init_from_bare_ovf_file(tmp_path: Path):
    (tmp_path / "cluster.ovf").write_text(virtualbox_ovf())
    result = _d2c(tmp_path, "init", "--from", "cluster.ovf")
    assert result.returncode == 0, result.stderr
    assert "image: cluster.ovf\n" in (tmp_path / "d2c.yaml").read_text()


@pytest.mark.parametrize("keep_bytes", [700, 9000], ids=["inside-the-ovf", "inside-a-disk"])
def test_truncated_ova_is_one_line_and_exit_2(tmp_path: Path, appliance: Path, keep_bytes: int):
    data = appliance.read_bytes()
    assert len(data) > keep_bytes
    appliance.write_bytes(data[:keep_bytes])

    result = _d2c(tmp_path, "init", "--from", "vms/cluster.ova")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: vms/cluster.ova: not a readable OVA archive")
    assert "export the VM again" in result.stderr
    assert not (tmp_path / "d2c.yaml").exists()


@pytest.mark.parametrize(("ovf", "phrase"), [
    ("<Envelope><Broken", "the OVF descriptor is not valid XML"),
    ("<html><body>404</body></html>", "not an OVF descriptor"),
    ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>', "declares no virtual machine"),
])
def test_ova_with_a_bad_descriptor_is_refused(tmp_path: Path, ovf: str, phrase: str):
    build_ova(tmp_path / "bad.ova", ovf)
    result = _d2c(tmp_path, "init", "--from", "bad.ova")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and phrase in result.stderr
    assert not (tmp_path / "d2c.yaml").exists()


def test_init_from_something_else_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    missing = _d2c(tmp_path, "init", "--from", "nowhere")
    other = _d2c(tmp_path, "init", "--from", "notes.txt")
    assert (missing.returncode, other.returncode) == (2, 2)
    assert missing.stderr == "error: nowhere: does not exist; give an app folder or an .ova/.ovf appliance\n"
    assert other.stderr == "error: notes.txt: not an app folder or a VirtualBox appliance (.ova/.ovf)\n"
