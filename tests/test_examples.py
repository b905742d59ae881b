"""The example apps run on this machine and produce correct, checkable output.

Each app is copied to a temporary folder and run at a small scale the way its d2c.yaml says
(the profile command rendered for one point), plus direct runs that check the numbers: the Monte
Carlo estimate against a closed-form price, the MPI integral against pi.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _copy_example(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("out", "results", "mpi_pi", "*.o"))
    return target


def _run(command: list[str] | str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180,
                          shell=isinstance(command, str), env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- montecarlo (process pool)

def _montecarlo(app: Path, *args: str) -> dict:
    out = app / "out" / f"result-{'-'.join(args).replace('.', '_')}.json"
    result = _run([sys.executable, "montecarlo.py", *args, "--out", str(out)], app)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


@pytest.fixture
def montecarlo(tmp_path: Path) -> Path:
    return _copy_example("montecarlo", tmp_path)


def test_montecarlo_estimate_matches_the_closed_form(montecarlo: Path):
    result = _montecarlo(montecarlo, "--scale", "0.005", "--workers", "2")

    assert result["paths"] == 320_000 and result["workers"] == 2 and result["tasks"] == 256
    geometric, arithmetic = result["geometric"], result["arithmetic"]
    assert geometric["exact"] == pytest.approx(5.6204344, abs=1e-6)
    # Plain Monte Carlo of the geometric average must agree with its exact price.
    assert abs(geometric["estimate"] - geometric["exact"]) < 4 * geometric["stderr"]
    assert geometric["stderr"] < 0.03
    # The arithmetic average dominates the geometric one path by path, so its price is higher;
    # the control variate must cut the standard error several-fold.
    assert geometric["exact"] < arithmetic["estimate"] < geometric["exact"] + 0.5
    assert arithmetic["stderr"] < arithmetic["stderr_without_control"] / 10


def test_montecarlo_result_does_not_depend_on_worker_count(montecarlo: Path):
    one = _montecarlo(montecarlo, "--scale", "0.005", "--workers", "1")
    two = _montecarlo(montecarlo, "--scale", "0.005", "--workers", "2")
    other_seed = _montecarlo(montecarlo, "--scale", "0.005", "--workers", "2", "--seed", "7")

    assert one["checksum"] == two["checksum"]
    assert one["arithmetic"]["estimate"] == two["arithmetic"]["estimate"]
    assert other_seed["checksum"] != two["checksum"]
    assert abs(other_seed["arithmetic"]["estimate"] - two["arithmetic"]["estimate"]) < 6 * two["arithmetic"]["stderr"]


def test_montecarlo_standard_error_shrinks_with_scale(montecarlo: Path):
    small = _montecarlo(montecarlo, "--scale", "0.0025", "--workers", "2")
    large = _montecarlo(montecarlo, "--scale", "0.01", "--workers", "2")
    assert large["paths"] == 4 * small["paths"]
    ratio = small["geometric"]["stderr"] / large["geometric"]["stderr"]
    assert ratio == pytest.approx(2.0, rel=0.1)


def test_montecarlo_runs_as_its_descriptor_profiles_it(montecarlo: Path):
    profile = load_descriptor(montecarlo).profile
    command = profile.render(profile.scales[0], 2)

    result = _run(command.replace("python3 ", f"{sys.executable} ", 1), montecarlo)

    assert result.returncode == 0, result.stderr
    written = json.loads((montecarlo / "out" / "result.json").read_text())
    assert written["scale"] == profile.scales[0] and written["workers"] == 2
    assert written["timings"]["setup_s"] > 0 and written["timings"]["parallel_s"] > 0
    assert not list((montecarlo / "out").glob("*.partial"))


def test_montecarlo_rejects_a_bad_scale(montecarlo: Path):
    result = _run([sys.executable, "montecarlo.py", "--scale", "0"], montecarlo)
    assert result.returncode == 2
    assert "--scale must be positive" in result.stderr
    assert not (montecarlo / "out").exists()


# ---------------------------------------------------------------- mpi_pi (MPI master/worker)

# Running as root (CI containers) and more ranks than cores are settings of the test machine,
# not of the app: OpenMPI reads them from the environment. Open MPI 4.1 shares its hardware
# topology through a shared-memory segment mapped into a hole of mpirun's address space, and
# writing it now and then segfaults inside hwloc on this kind of guest; vmhole=none skips it.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_rtc_hwloc_vmhole": "none",
}


@pytest.fixture
def mpi_pi(tmp_path: Path) -> Path:
    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("mpicc/mpirun not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)")
    app = _copy_example("mpi_pi", tmp_path)
    built = _run(["make"], app)
    assert built.returncode == 0, built.stderr
    return app


def _pi(app: Path, mpirun: list[str], *args: str) -> dict:
    result = _run([*mpirun, "./mpi_pi", *args, "--out", "out/pi.json"], app, MPI_ENV)
    assert result.returncode == 0, result.stderr
    assert "pi = 3.14159265358" in result.stdout
    return json.loads((app / "out" / "pi.json").read_text())


def test_mpi_pi_with_two_ranks_computes_pi(mpi_pi: Path):
    result = _pi(mpi_pi, ["mpirun", "-np", "2"], "--scale", "0.005")

    assert result["ranks"] == 2 and result["intervals"] == 100_000_000
    assert abs(result["pi"] - math.pi) < 1e-12
    assert result["midpoint_error_bound"] < 1e-15
    # The master only hands out work: the one worker rank computed every chunk.
    assert result["chunks_per_rank"] == [0, result["chunks"]] and result["chunks"] == 100


def test_mpi_pi_shares_chunks_among_workers_from_a_hostfile(mpi_pi: Path):
    (mpi_pi / "hostfile").write_text("localhost slots=3\n")

    result = _pi(mpi_pi, ["mpirun", "--hostfile", "hostfile", "-np", "3"], "--scale", "0.005", "--chunk", "250000")

    assert result["ranks"] == 3 and result["chunks"] == 400
    master, *workers = result["chunks_per_rank"]
    assert master == 0 and sum(workers) == 400 and min(workers) > 0
    assert abs(result["pi"] - math.pi) < 1e-12


def test_mpi_pi_runs_as_its_descriptor_profiles_it(mpi_pi: Path):
    descriptor = load_descriptor(mpi_pi)
    assert [(r.name, r.count, r.command is None) for r in descriptor.roles] == [("master", 1, False), ("worker", None, True)]
    assert "--hostfile $D2C_MPI_HOSTFILE -np $D2C_WORKER_COUNT" in descriptor.master.command

    assert min(descriptor.profile.workers) >= 2, "with one rank computing at 1 and 2 ranks, profiling sees no speed-up"
    result = _run(descriptor.profile.render(descriptor.profile.scales[0], 3), mpi_pi, MPI_ENV)

    assert result.returncode == 0, result.stderr
    written = json.loads((mpi_pi / "out" / "pi.json").read_text())
    assert written["ranks"] == 3 and written["chunks_per_rank"][0] == 0 and sum(written["chunks_per_rank"]) == written["chunks"]
    assert abs(written["pi"] - math.pi) < 1e-12


def test_mpi_pi_rejects_a_bad_argument(mpi_pi: Path):
    result = _run(["mpirun", "-np", "1", "./mpi_pi", "--scael", "1"], mpi_pi, MPI_ENV)
    assert result.returncode != 0
    assert "unknown argument --scael" in result.stderr
    assert not (mpi_pi / "out").exists()
