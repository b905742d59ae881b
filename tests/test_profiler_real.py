"""Profiling real programs, then running them at a larger scale than profiled and comparing.

The machine is shared and has two cores, so wall times are compared with the time spent waiting
for CPUs taken by other work removed (``RunRecord.own_wall_s``, from the threads' schedstat), as
the model fits them; each larger run is measured up to three times and the fastest compared.
Tolerance: 20 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from d2c.transport.local import LocalHost
from profiler.experiment import run_point
from profiler.profile_file import load_profile
from profiler.sampling import LocalTreeSampler, ProcTreeSampler, TreeAccumulator, sample_tree_into
from tests.fixtures.profiler import POOL_APP, XZ_COMMAND, write_app

pytestmark = pytest.mark.integration


def profile(folder: Path, max_time: str = "60s") -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "d2c", "profile", "--max-time", max_time], cwd=folder, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def own_time(host: LocalHost, command: str, scale: float, workers: int) -> float:
    text = command.replace("{scale}", f"{scale:g}").replace("{workers}", str(workers))
    outcome = run_point(host, text, scale=scale, workers=workers, repeat=1, sampler_factory=LocalTreeSampler, stop_at=time.monotonic() + 120)
    assert outcome.result.ok, outcome.result.stderr_tail
    return outcome.record.own_wall_s


MAX_DRIFT = 1.3
"""How far the machine's speed may move between profiling and checking for the check to count."""


def check_extrapolation(folder: Path, command: str, scale: float, workers: int) -> None:
    """The app's own time at (scale, workers) lands within 20 % of the profile's p50, or between
    80 % of p50 and p90 (where a researcher was told it could land, when the profile itself was
    measured on a loaded machine).

    Other people's work on this machine slows runs down, by more than the time spent waiting
    for a CPU (shared caches and memory bandwidth make the same work take more CPU time). So
    each attempt first re-runs the largest profiled point at the same worker count: the ratio of
    its time now to its time in the profile is the machine's drift, and the larger run is
    compared at the machine speed the profile saw. Up to three attempts; one in the band counts.
    When none is and the machine's speed moved by more than ``MAX_DRIFT`` between profiling and
    checking, the test is skipped with the drift seen: the profile was measured unevenly.
    """
    profile_ = load_profile(folder / "profile.json")
    estimate = profile_.predictor.runtime(scale, workers)
    predicted = estimate.p50
    low, high = 0.8 * predicted, max(1.2 * predicted, estimate.p90)
    reference = max(r.scale for r in profile_.runs if r.workers == float(workers))
    profiled = min(r.own_wall_s for r in profile_.runs if (r.scale, r.workers) == (reference, float(workers)))
    host = LocalHost(root=folder)
    seen = []
    for _ in range(3):
        drift = own_time(host, command, reference, workers) / profiled
        seen.append((own_time(host, command, scale, workers) / drift, drift))
        if low <= seen[-1][0] <= high:
            break
    measured = next((m[0] for m in seen if low <= m[0] <= high), seen[-1][0])
    drifts = [d for _, d in seen]
    if not low <= measured <= high and not all(1 / MAX_DRIFT <= d <= MAX_DRIFT for d in drifts):
        # The machine's speed moved this much between profiling and checking (other work on its
        # cores): the profile's own points were then measured unevenly, and no fit can be judged
        # against them. Accuracy under control is benchmarks/predictor_accuracy.py's job.
        pytest.skip(f"this machine's speed changed by {min(drifts):.2f}-{max(drifts):.2f}x between profiling and checking")
    assert low <= measured <= high, (
        f"{profile_.predictor.name}: predicted p50 {predicted:.2f}s p90 {estimate.p90:.2f}s, measured (at profiling speed, drift) {seen}")


def test_xz_profiled_up_to_8_mib_predicts_16_mib(xz_app):
    """Twice the largest profiled scale. Runs of several seconds on this shared virtual machine
    vary by a quarter from one run to the next (32 MiB took 4.3 to 6.8 s with no steal time
    seen by the guest), more than the 20 % allowed, so farther extrapolations are measured over
    many runs by benchmarks/predictor_accuracy.py instead."""
    result = profile(xz_app)
    assert "model" in result.stdout
    document = json.loads((xz_app / "profile.json").read_text())
    runs = document["runs"]
    # The session may stop before the whole design once the full-scale p90 is stable (or
    # profiling costs 5 % of the predicted run); it has climbed at least two scales, both counts.
    points = {(r["scale"], r["workers"]) for r in runs}
    assert {(2, 1.0), (2, 2.0)} <= points and len({s for s, _ in points}) >= 2
    assert points <= {(s, w) for s in (2, 4, 8) for w in (1.0, 2.0)}
    assert all(r["summary"]["cpu_user_s"] > 0 for r in runs)
    assert document["host"]["logical_cores"] >= 1 and document["host"]["speed"] > 0
    check_extrapolation(xz_app, XZ_COMMAND, 16, 1)
    check_extrapolation(xz_app, XZ_COMMAND, 16, 2)


def test_process_pool_profiled_up_to_scale_1_predicts_scale_4(pool_app):
    profile(pool_app)
    document = json.loads((pool_app / "profile.json").read_text())
    two_workers = [r for r in document["runs"] if r["workers"] == 2.0]
    # The pool's tree: the shell exec'd into python, plus two worker processes.
    assert two_workers and max(r["summary"]["max_processes"] for r in two_workers) >= 3
    assert all(r["summary"]["worker_rss_mb"] for r in two_workers)
    check_extrapolation(pool_app, f"{sys.executable} pool.py {{scale}} {{workers}}", 4.0, 2)


def test_profiling_stops_before_a_run_would_pass_its_share_of_the_full_run(tmp_path):
    """An app whose full run is predicted at about 100 s may be profiled for 5 % of that once
    five points are measured: the session stops before the run that would pass it, with the
    design unfinished and the reason said. No repeats, so the stable-prediction stop (which
    needs the noise between repeats) cannot end it first."""
    from d2c.descriptor import ProfileSpec
    from profiler.session import MIN_POINTS_TO_STOP, PROFILE_SHARE, profile_app

    command = f"{sys.executable} -c 'import time; time.sleep(0.05 + 0.1 * {{scale}} / {{workers}})'"
    spec = ProfileSpec(command=command, scales=(1, 2, 4, 8, 16, 32), workers=(1, 2), full_scale=2000, repeats=1)
    stopped = []
    started = time.monotonic()
    runs = profile_app(LocalHost(root=tmp_path), spec, max_time_s=60, sampler_factory=LocalTreeSampler, on_progress=lambda p: p.stopped and stopped.append(p.stopped))
    spent = time.monotonic() - started
    cap = PROFILE_SHARE * 100
    assert len({(r.scale, r.workers) for r in runs}) >= MIN_POINTS_TO_STOP
    assert len(runs) < 12, "the design (12 points, about 10 s) is cut short"
    assert stopped and "another run would take it past" in stopped[-1], stopped
    assert spent <= cap * 1.15, f"profiling took {spent:.1f}s against a cap of {cap:.1f}s"


def test_local_and_proc_samplers_agree_on_a_process_tree(tmp_path):
    script = tmp_path / "tree.py"
    script.write_text(
        "import multiprocessing as mp, time\n"
        "def hold(_):\n"
        "    block = bytearray(60_000_000)\n"
        "    x = 0\n"
        "    for i in range(8_000_000): x = (x * 31 + i) & 0xFFFFFFFF\n"
        "    time.sleep(0.6)\n"
        "    return len(block)\n"
        "if __name__ == '__main__':\n"
        "    with mp.Pool(2) as pool: pool.map(hold, range(2))\n"
    )
    host = LocalHost(root=tmp_path)
    process = host.start(f"{sys.executable} {script}")
    local, proc = TreeAccumulator(), TreeAccumulator()
    samplers = (LocalTreeSampler(process.pid), ProcTreeSampler(host, process.pid))
    started = time.monotonic()
    while process.poll() is None:
        sample_tree_into(local, samplers[0].sample())
        sample_tree_into(proc, samplers[1].sample())
        time.sleep(0.1)
    process.wait()
    wall = time.monotonic() - started
    for summary in (local.summary(wall), proc.summary(wall)):
        assert summary.max_processes == 3
        assert summary.worker_rss_mb == pytest.approx(62, rel=0.25)
        assert summary.master_rss_mb < summary.worker_rss_mb
        assert summary.peak_rss_mb > 2 * 55
        # Two workers of 8 million loop iterations each: about 0.4 s each on this machine.
        assert summary.cpu_s > 0.6 and 0.0 <= summary.contention < 1.0


def test_profiling_over_ssh_reads_proc_in_the_remote_host(tmp_path, sshd, client_key):
    folder = tmp_path / "remote-app"
    folder.mkdir()
    (folder / "pool.py").write_text(POOL_APP)
    desktop = {"host": f"ssh://{sshd.user}@{sshd.address}:{sshd.port}", "key": str(client_key)}
    # A full run long enough (scale 400) that 5 % of it lets the session measure all six points.
    write_app(folder, f"{sys.executable} {folder / 'pool.py'} {{scale}} {{workers}}", scales=[0.25, 0.5, 1.0], workers=[1, 2], full_scale=400.0, repeats=1, desktop=desktop)
    profile(folder)
    document = json.loads((folder / "profile.json").read_text())
    assert document["host"]["name"].endswith(f":{sshd.port}") or str(sshd.port) in document["host"]["name"]
    runs = document["runs"]
    assert len(runs) >= 4 and all(r["status"] == "ok" for r in runs)
    largest = max((r for r in runs if r["workers"] == 2.0), key=lambda r: r["scale"])
    sampled = largest["summary"]
    assert sampled["samples"] >= 2 and sampled["max_processes"] >= 3 and sampled["cpu_user_s"] > 0.2
    assert 0.0 <= largest["contention"] < 1.0
    loaded = load_profile(folder / "profile.json")
    own = [r.own_wall_s for r in loaded.runs if (r.scale, r.workers) == (1.0, 2.0)][0]
    assert loaded.predictor.runtime(1.0, 2).p50 == pytest.approx(own, rel=0.5)
