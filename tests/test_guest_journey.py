"""The whole journey on a real guest: a VirtualBox appliance through ``d2c run --provider aws``.

The Debian 12 appliance (tests/fixtures/guest.py) is the master role's image. ``d2c run`` does
everything a user's run does against moto's threaded server: checks the image, prepares it with
the run's key and a dead-man bound, boot-rehearses it, uploads it through the EBS direct API,
registers it, launches an instance. The guest hypervisor boots that instance from the
snapshot's blocks as moto holds them, at the instance's private address
(tests/fixtures/guest_hypervisor.py). d2c then logs in with the run's key, contextualizes,
uploads the process-pool example, runs it inside the real guest, streams its log, fetches the
outputs (checked against the option's closed-form price) and tears down: the guest stops and
moto holds nothing of the run. The app's command also records the dead-man timer as the
guest's own systemd shows it. Marked slow (two boots of a real guest, under TCG here); runs
under ``flock /tmp/d2c-netns.lock``. By hand: ``sudo flock /tmp/d2c-netns.lock python3 -m pytest
-q tests/test_guest_journey.py -s`` (the first run builds the guest, about 5 min, then cached).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from d2c.aws import client
from d2c.state import state_dir
from executor.journal import open_journal
from tests.fixtures.executor import write_plans
from tests.test_executor_aws import NOTHING, leftovers

pytestmark = [
    pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(2400),
]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "montecarlo" / "montecarlo.py"
# As root: without D-Bus in the minimal guest, only root reaches systemd (its private socket).
COMMAND = (
    "python3 montecarlo.py --scale 0.005 --workers $D2C_WORKER_COUNT --out out/result.json"
    " && sudo -n systemctl show d2c-deadman.timer -p ActiveState -p TimersMonotonic > out/timer.txt"
)


def test_d2c_run_takes_an_appliance_to_its_outputs_on_a_guest_booted_from_the_uploaded_bytes(debian_guest, guest_hypervisor, tmp_path):
    project = tmp_path / "journey"
    project.mkdir()
    shutil.copy(EXAMPLE, project / "montecarlo.py")
    (project / "d2c.yaml").write_text(
        "name: journey\nworkdir: d2c-work\nroles:\n"
        f"  - {{name: master, image: '{debian_guest.ova}', user: {debian_guest.user}, command: '{COMMAND}'}}\n"
        "inputs:\n  - {local: montecarlo.py, remote: montecarlo.py}\noutputs:\n  - {remote: out, local: results}\n"
    )
    write_plans(project / "plans.json", "journey", [("master", 1, 2)], instance_type="c5.large", price_usd_h=0.085, budget_usd=5.0, time_p50=120.0)
    argv = [sys.executable, "-m", "d2c", "run", "--yes", "--connect", "private", "--subnet", guest_hypervisor.subnet_id,
            "--ssh-from", f"{guest_hypervisor.gateway}/32", "--ssh-timeout", "900", "--deadman", "1h", "--poll", "1"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=2200)
    journey_s = time.monotonic() - started
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], guest_hypervisor.errors)

    output = json.loads((project / "results" / "result.json").read_text())
    assert output["workers"] == 2, "D2C_WORKER_COUNT reached the app inside the guest"
    geometric = output["geometric"]
    assert abs(geometric["estimate"] - geometric["exact"]) < 5 * geometric["stderr"]
    timer = (project / "results" / "timer.txt").read_text()
    assert "ActiveState=active" in timer and "OnBootUSec=1h" in timer.replace(" ", ""), timer

    [run] = open_journal().runs()
    [instance] = open_journal().resources(run.run_id, "instance")
    guest = guest_hypervisor.guests[instance.resource_id]
    assert "asian call" in (run.run_dir / "logs" / "master.log").read_text(), "the app's log streamed back"
    manifest = json.loads(next((state_dir() / "images").glob("*.manifest.json")).read_text())
    assert manifest["boot_test"]["logged_in"] and manifest["boot_test"]["interface"] == "ens5"
    assert guest_hypervisor.wait_for(lambda: instance.resource_id not in guest_hypervisor.hosts and guest.process.poll() is not None, timeout=60), \
        "terminating the instance stops the guest"
    assert leftovers(run.run_id) == NOTHING
    images = client("ec2", "us-east-1").describe_images(Owners=["self"], Filters=[{"Name": "tag:d2c:run", "Values": [run.run_id]}])["Images"]
    assert images == [], "the run's own AMI (its key baked in) is deregistered at teardown"
    events = open_journal().events(run.run_id)
    print(f"d2c run, appliance to outputs: {journey_s:.0f} s;", ", ".join(f"{e.kind} +{e.at - run.created_at:.0f} s" for e in events))
