#!/usr/bin/env python3
"""SSHHost against a real local sshd: command latency and SFTP throughput, with baselines.

Starts an OpenSSH sshd on 127.0.0.1 (the test suite's ``tests/sshd_server.py``) and measures, in
the same run and interleaved so that load on a shared machine hits both alike:

- ``SSHHost.run("true")`` on an open connection against paramiko's bare ``exec_command("true")``
  on the same connection (the cost of the wrapper that reports the pid and sets env/cwd);
- ``SSHHost.put``/``get`` of one random file against OpenSSH's own ``sftp`` client
  (a new connection per transfer, as a user would run it), and ``get`` against paramiko's
  ``SFTPClient.get`` with its default, unbounded read-ahead on the same connection.

Prints a markdown table and the machine it ran on. Needs openssh-server and openssh-client.

    python benchmarks/ssh_transport.py [--runs 10] [--mb 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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
from d2c.transport.ssh import SSHHost  # noqa: E402
from tests.sshd_server import SshServer, generate_keypair  # noqa: E402


def timed(action) -> float:
    """Seconds ``action()`` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bare_exec(host: SSHHost) -> None:
    """``true`` through paramiko alone, on the host's open connection."""
    channel = host._connection().open_session()
    channel.exec_command("true")
    channel.recv_exit_status()
    channel.close()


def paramiko_get(host: SSHHost, remote: str, local: Path) -> None:
    """paramiko's own download with its defaults, on the host's open connection."""
    sftp = host._sftp()
    try:
        sftp.get(remote, str(local))
    finally:
        sftp.close()


def openssh_sftp(server: SshServer, key: Path, known_hosts: Path, batch: str) -> None:
    """One OpenSSH ``sftp`` session running ``batch``."""
    subprocess.run(
        [
            "sftp", "-q", "-b", "-", "-i", str(key), "-P", str(server.port),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "BatchMode=yes", f"{server.user}@{server.address}",
        ],
        input=batch, text=True, check=True, capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (median)")
    parser.add_argument("--transfers", type=int, default=3, help="runs of each transfer (median)")
    parser.add_argument("--mb", type=int, default=50, help="size of the transferred file in MiB")
    args = parser.parse_args(argv)
    if shutil.which("sftp") is None or not Path("/usr/sbin/sshd").exists():
        print("needs openssh-server and openssh-client", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="d2c-bench-ssh-") as scratch:
        work = Path(scratch)
        key = work / "id_ed25519"
        public = generate_keypair(key)
        payload = work / "payload.bin"
        payload.write_bytes(random.Random(1).randbytes(args.mb * 1024 * 1024))
        with SshServer(work / "sshd", authorized_keys=[public]) as server:
            host = SSHHost(server.address, server.port, user=server.user, key_path=key,
                           known_hosts=work / "known_hosts")
            host.run("true")
            bare_exec(host)
            latency: dict[str, list[float]] = {"paramiko exec_command (baseline)": [],
                                               "SSHHost.run": []}
            for _ in range(args.runs):
                latency["paramiko exec_command (baseline)"].append(timed(lambda: bare_exec(host)))
                latency["SSHHost.run"].append(timed(lambda: host.run("true")))

            remote = work / "remote"
            remote.mkdir()
            transfers: dict[str, list[float]] = {
                "put: OpenSSH sftp (baseline)": [], "put: SSHHost.put": [],
                "get: OpenSSH sftp (baseline)": [], "get: SSHHost.get": [],
                "get: paramiko SFTPClient.get, default read-ahead": [],
            }
            for run in range(args.transfers):
                transfers["put: OpenSSH sftp (baseline)"].append(timed(lambda: openssh_sftp(
                    server, key, work / "known_hosts_openssh", f"put {payload} {remote}/a.bin\n")))
                transfers["put: SSHHost.put"].append(
                    timed(lambda: host.put(payload, str(remote / "b.bin"))))
                transfers["get: OpenSSH sftp (baseline)"].append(timed(lambda: openssh_sftp(
                    server, key, work / "known_hosts_openssh", f"get {remote}/a.bin {work}/c.bin\n")))
                transfers["get: SSHHost.get"].append(
                    timed(lambda: host.get(str(remote / "b.bin"), work / "d.bin")))
                transfers["get: paramiko SFTPClient.get, default read-ahead"].append(
                    timed(lambda: paramiko_get(host, str(remote / "b.bin"), work / "e.bin")))
            assert (work / "d.bin").read_bytes() == payload.read_bytes()
            host.close()

    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}\n")
    print(f"| command on an open connection | median ms | min ms | max ms | ({args.runs} runs) |")
    print("| --- | --- | --- | --- | --- |")
    for label, samples in latency.items():
        print(f"| {label} | {1000 * statistics.median(samples):.0f} | "
              f"{1000 * min(samples):.0f} | {1000 * max(samples):.0f} | |")
    print(f"\n| {args.mb} MiB file | median s | MiB/s | ({args.transfers} runs) |")
    print("| --- | --- | --- | --- |")
    for label, samples in transfers.items():
        median = statistics.median(samples)
        print(f"| {label} | {median:.2f} | {args.mb / median:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
