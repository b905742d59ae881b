"""The image journey on a real guest: a VirtualBox appliance imported to moto, launched, booted from the uploaded bytes.

The Debian 12 appliance (tests/fixtures/guest.py) goes through ``ensure_ami`` as ``d2c run``
calls it — checked, prepared with the run's key and a dead-man bound, boot-rehearsed, uploaded
through the EBS direct API, registered. An instance launched from the AMI in moto is booted by
the guest hypervisor from the snapshot's blocks, at the instance's private address; d2c's SSH
transport logs in there as the image's login user with the run's key, runs the process-pool
example inside the guest, fetches its output (checked against the option's closed-form price),
finds the dead-man timer armed in the guest's own systemd, and terminating the instance stops
the guest. Marked slow (two boots of a real guest); runs under ``flock /tmp/d2c-netns.lock``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from d2c.aws import client
from d2c.state import runs_dir, state_dir
from d2c.transport.ssh import SSHHost
from executor.image import importer

pytestmark = [
    pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(2400),
]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "montecarlo" / "montecarlo.py"
RUN_ID = "journey-1"
DEADMAN_S = 3600


def _login(address: str, user: str, key: Path, known_hosts: Path, timeout_s: float = 900) -> SSHHost:
    deadline = time.monotonic() + timeout_s
    while True:
        host = SSHHost(address, 22, user=user, key_path=key, known_hosts=known_hosts, connect_timeout=5, retries=1, name="guest")
        try:
            host.connect()
            return host
        except Exception:
            host.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_an_imported_appliance_boots_from_its_snapshot_runs_the_example_and_stops(debian_guest, guest_hypervisor, tmp_path, monkeypatch):
    run_dir = runs_dir() / RUN_ID
    run_dir.mkdir(parents=True)
    key = run_dir / "id_d2c"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()

    started = time.monotonic()
    ami = importer.ensure_ami(debian_guest.ova, region="us-east-1", public_key=public, run_id=RUN_ID, deadman_s=DEADMAN_S)
    imported_s = time.monotonic() - started
    manifest = json.loads(next((state_dir() / "images").glob("*.manifest.json")).read_text())
    assert manifest["boot_test"]["logged_in"] and manifest["boot_test"]["interface"] == "ens5"
    # The launched guest boots under the accelerator the rehearsal ended with (KVM can stall here).
    monkeypatch.setenv("D2C_BOOT_TEST_ACCEL", manifest["boot_test"]["accel"])

    ec2 = client("ec2", "us-east-1")
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="c5.large", SubnetId=guest_hypervisor.subnet_id)["Instances"][0]
    instance_id, address = instance["InstanceId"], instance["PrivateIpAddress"]
    assert guest_hypervisor.wait_for(lambda: instance_id in guest_hypervisor.guests, timeout=300), guest_hypervisor.errors
    with _login(address, debian_guest.user, key, tmp_path / "known_hosts") as host:
        booted_s = time.monotonic() - started
        assert host.run("findmnt -no SOURCE /").stdout_tail.strip() == "/dev/nvme0n1p1"
        host.put(EXAMPLE, "montecarlo.py")
        result = host.run("python3 montecarlo.py --scale 0.02 --workers 2 --out out/result.json", timeout=600)
        assert result.ok, result.stderr_tail
        host.get("out/result.json", tmp_path / "result.json")
        # As root: without D-Bus in the minimal guest, only root reaches systemd (its private socket).
        shown = host.run("sudo -n systemctl show d2c-deadman.timer -p ActiveState -p TimersMonotonic")
        timer = shown.stdout_tail
    output = json.loads((tmp_path / "result.json").read_text())
    geometric = output["geometric"]
    assert abs(geometric["estimate"] - geometric["exact"]) < 5 * geometric["stderr"]
    assert "ActiveState=active" in timer and "OnBootUSec=1h" in timer.replace(" ", ""), shown.stderr_tail

    ec2.terminate_instances(InstanceIds=[instance_id])
    guest = guest_hypervisor.guests[instance_id]
    # The hypervisor forgets the instance before it stops QEMU, so wait for the process itself.
    assert guest_hypervisor.wait_for(lambda: instance_id not in guest_hypervisor.hosts and guest.process.poll() is not None, timeout=60)
    print(f"import with rehearsal {imported_s:.0f} s; import to login on the launched guest {booted_s:.0f} s; "
          f"whole journey {time.monotonic() - started:.0f} s")
