"""End to end on the namespace hypervisor: the MPI example on 1 master + 2 workers.

``d2c run`` (the command line, in a subprocess) provisions three instances in moto; the hypervisor
makes each a namespace host with sshd; mpirun on the master starts the worker ranks over SSH with
the run's key and the hostfile d2c wrote; the result comes back to the desktop and moto is left
with nothing of the run.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

from executor.journal import open_journal
from tests.fixtures.executor import EXAMPLES, write_plans
from tests.test_executor_aws import NOTHING, leftovers

pytestmark = pytest.mark.integration


@pytest.fixture
def mpi_project(tmp_path):
    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("OpenMPI (mpicc, mpirun) is not installed; see .ci/install")
    app = tmp_path / "mpi_pi"
    shutil.copytree(EXAMPLES / "mpi_pi", app)
    subprocess.run(["make", "-s", "-C", str(app)], check=True, capture_output=True)
    # The OMPI_ settings are the test machine's, as in tests/test_examples.py's MPI_ENV.
    (tmp_path / "d2c.yaml").write_text(
        f"""name: mpi-pi
workdir: d2c-work
roles:
  - name: master
    image: {app}
    user: root
    command: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rtc_hwloc_vmhole=none mpirun --hostfile $D2C_MPI_HOSTFILE -np $D2C_WORKER_COUNT ./mpi_pi --scale 0.01 --out out/pi.json
    count: 1
  - name: worker
    image: {app}
    user: root
    count: 2
outputs:
  - {{remote: out, local: results}}
"""
    )
    write_plans(tmp_path / "plans.json", "mpi-pi", [("master", 1, 1), ("worker", 2, 1)], budget_usd=2.0)
    return tmp_path


def test_mpi_example_across_three_namespace_hosts(hypervisor, mpi_project):
    command = [
        sys.executable, "-m", "d2c", "run", "--yes", "--connect", "private", "--subnet", hypervisor.subnet_id,
        "--ssh-from", f"{hypervisor.gateway}/32", "--poll", "0.3",
    ]
    result = subprocess.run(command, cwd=mpi_project, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr

    answer = json.loads((mpi_project / "results" / "pi.json").read_text())
    assert answer["ranks"] == 3
    assert abs(answer["pi"] - math.pi) <= answer["midpoint_error_bound"] + 1e-12
    assert all(count > 0 for count in answer["chunks_per_rank"][1:]), "both worker hosts computed chunks"
    assert len(hypervisor.launched) == 3

    run = open_journal().runs()[0]
    assert run.outcome == "succeeded"
    assert leftovers(run.run_id) == NOTHING
    assert hypervisor.wait_for(lambda: not hypervisor.hosts)
