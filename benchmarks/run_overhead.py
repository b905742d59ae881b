#!/usr/bin/env python3
"""The time d2c adds around an app, and parallel input upload against scp, on the stand-in cloud.

The stand-in is the test suite's: moto's threaded server as the EC2 API and the namespace
hypervisor (``tests/fixtures/hypervisor.py``) turning each instance into an sshd in its own
network namespace. Instances are "running" as soon as moto says so, so the figures are d2c's own
overhead (API calls, SSH handshakes, contextualization, uploads, polling, teardown) without EC2's
boot time.

1. Run overhead: ``--runs`` runs of a 1 master + 2 worker plan whose app does nothing
   (``true``), with the default settings (2 s polling). From the journal's events:
   provision-to-first-command (run created -> master command started; split into provisioning,
   contextualization + upload, start) and last-output-to-teardown (the app's output is written
   the instant it starts, so: command started -> end noticed by polling -> outputs fetched ->
   everything deleted).
2. Upload throughput to one host: ``executor.uploads.upload`` (4 SFTP streams, and 1 stream) against
   OpenSSH ``scp -r`` of the same folder, interleaved in the same run.

Needs root (network namespaces), openssh-server/client. Prints markdown tables.

    python benchmarks/run_overhead.py [--runs 5] [--upload-runs 3] [--files 32] [--mb-per-file 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cli_startup import cpu_model  # noqa: E402
from tests.fixtures.executor import app_project, write_plans  # noqa: E402
from tests.fixtures.hypervisor import Hypervisor, namespaces_allowed  # noqa: E402
from tests.fixtures.moto_server import _free_port  # noqa: E402


def start_cloud(workdir: Path):
    """moto on loopback, boto3 pointed at it, a subnet and the hypervisor watching it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        D2C_HOME=str(workdir / "state"),
    )
    from d2c.aws import client

    ec2 = client("ec2", "us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.231.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.231.1.0/24")["Subnet"]["SubnetId"]
    hypervisor = Hypervisor(ec2, subnet_id=subnet, cidr="10.231.1.0/24", folder=workdir / "hosts").start()
    return server, hypervisor


def event_times(run_id: str) -> dict[str, float]:
    from executor.journal import open_journal

    times: dict[str, float] = {}
    for event in open_journal().events(run_id):
        times.setdefault(event.kind, event.at)
    return times


def one_run(project: Path, hypervisor: Hypervisor) -> dict[str, float]:
    from d2c.descriptor import load_descriptor
    from executor.journal import open_journal
    from executor.orchestrator import Orchestrator
    from executor.providers.aws import AwsProvider
    from planner.plans import load_plans

    provider = AwsProvider(region="us-east-1", connect="private", ssh_from=f"{hypervisor.gateway}/32", subnet_id=hypervisor.subnet_id)
    planset = load_plans(project / "plans.json")
    result = Orchestrator(open_journal(), provider).start(
        load_descriptor(project / "d2c.yaml"), planset, planset.plan(1), plans_path=project / "plans.json"
    )
    if result.outcome != "succeeded":
        raise SystemExit(f"benchmark run failed: {result.message}")
    t = event_times(result.run_id)
    return {
        "provision": t["provisioned"] - t["created"],
        "contextualize + upload": t["uploaded"] - t["provisioned"],
        "start command": t["started"] - t["uploaded"],
        "provision-to-first-command": t["started"] - t["created"],
        "end of command noticed (polling)": t["master-ended"] - t["started"],
        "fetch outputs": t["fetched"] - t["master-ended"],
        "teardown": t["torn-down"] - t["fetched"],
        "last-output-to-teardown": t["torn-down"] - t["started"],
    }


def launch_one(hypervisor: Hypervisor, workdir: Path):
    """One instance outside any run, with a key of our own, for the upload comparison."""
    from d2c.aws import client
    from d2c.files import atomic_write_text

    ec2 = client("ec2", "us-east-1")
    key = ec2.create_key_pair(KeyName="bench", KeyType="ed25519")
    key_path = workdir / "bench_key"
    atomic_write_text(key_path, key["KeyMaterial"], mode=0o600)
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName="bench", SubnetId=hypervisor.subnet_id)["Instances"][0]
    if not hypervisor.wait_for(lambda: instance["InstanceId"] in hypervisor.hosts, timeout=30):
        raise SystemExit(f"the stand-in host did not start: {hypervisor.errors}")
    time.sleep(0.5)
    return instance["PrivateIpAddress"], key_path


def make_inputs(folder: Path, files: int, mb_per_file: float) -> int:
    folder.mkdir(parents=True)
    size = int(mb_per_file * 1024 * 1024)
    for index in range(files):
        (folder / f"input_{index:03d}.bin").write_bytes(os.urandom(size))
    return files * size


def upload_with_d2c(address: str, key: Path, folder: Path, remote: str, streams: int) -> float:
    from d2c.transport.ssh import SSHHost
    from executor.uploads import upload

    def open_host():
        return SSHHost(address, 22, user="root", key_path=key, known_hosts=key.with_name("known_hosts"))

    cleanup = open_host()
    cleanup.run(f"rm -rf {remote}")
    cleanup.close()
    started = time.perf_counter()
    upload({"h": open_host}, {"h": [(folder, remote)]}, streams=streams)
    return time.perf_counter() - started


def upload_with_scp(address: str, key: Path, folder: Path, remote: str) -> float:
    options = ["-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    subprocess.run(["ssh", *options, f"root@{address}", f"rm -rf {remote}"], check=True)
    started = time.perf_counter()
    subprocess.run(["scp", "-q", "-r", *options, str(folder), f"root@{address}:{remote}"], check=True)
    return time.perf_counter() - started


def table(rows: list[tuple[str, list[float]]], unit: str) -> list[str]:
    lines = [f"| what | median {unit} | min {unit} | max {unit} |", "| --- | --- | --- | --- |"]
    for name, values in rows:
        lines.append(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--upload-runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--mb-per-file", type=float, default=2.0)
    args = parser.parse_args()
    reason = namespaces_allowed()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="d2c-bench-"))
    server, hypervisor = start_cloud(workdir)
    try:
        project = app_project(workdir, "noop", {"noop.sh": "#!/bin/bash\nmkdir -p out\necho done > out/done.txt\n"},
                              "roles:\n  - {name: master, image: app, user: root, command: ./noop.sh}\n"
                              "  - {name: worker, image: app, user: root, count: 2}\noutputs:\n  - {remote: out, local: results}\n")
        write_plans(project / "plans.json", "noop", [("master", 1, 1), ("worker", 2, 1)])
        measured: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for name, value in one_run(project, hypervisor).items():
                measured.setdefault(name, []).append(value)
            hypervisor.wait_for(lambda: not hypervisor.hosts)

        address, key = launch_one(hypervisor, workdir)
        folder = workdir / "inputs"
        total = make_inputs(folder, args.files, args.mb_per_file)
        uploads: dict[str, list[float]] = {"scp -r (baseline)": [], "d2c upload, 1 stream": [], "d2c upload, 4 streams": []}
        for _ in range(args.upload_runs):
            uploads["scp -r (baseline)"].append(upload_with_scp(address, key, folder, "/tmp/bench-scp"))
            uploads["d2c upload, 1 stream"].append(upload_with_d2c(address, key, folder, "/tmp/bench-d2c1", 1))
            uploads["d2c upload, 4 streams"].append(upload_with_d2c(address, key, folder, "/tmp/bench-d2c4", 4))
    finally:
        hypervisor.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other work; Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d')}.\n")
    print(f"Run overhead, 1 master + 2 workers, app `true`, {args.runs} runs, default settings:\n")
    print("\n".join(table(list(measured.items()), "s")))
    print(f"\nUpload of {args.files} files x {args.mb_per_file:g} MiB ({total / 2**20:.0f} MiB) to one host, {args.upload_runs} runs:\n")
    lines = ["| what | median s | MiB/s (median) | vs scp |", "| --- | --- | --- | --- |"]
    base = statistics.median(uploads["scp -r (baseline)"])
    for name, values in uploads.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {total / 2**20 / median:.1f} | {base / median:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
