"""Boot rehearsal: boot-to-SSH time of the real Debian 12 test guest, and what ``boot-test`` adds to an import.

Uses the cached debootstrap guest of the tests (tests/fixtures/guest.py; built on first use, needs
root and Debian's package archive). ``--runs`` times, for each accelerator that can be measured
here (TCG always; KVM when /dev/kvm opens and the guest does not stall under it):

* ``boot_test`` of the prepared disk with the run's key: seconds from QEMU's start to the first
  successful SSH login as the login user (``seconds``), and the whole call (boot, login, reading
  root device and address, power-off);
* ``ensure_ami`` of the guest's OVA on moto's threaded server with ``boot_test=False`` (the
  baseline, in the same run) and with the rehearsal; the difference is what the rehearsal adds.

Usage::

    python benchmarks/image_boot.py [--runs 3] [--accel tcg|kvm|both]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d2c.errors import WorkError  # noqa: E402
from executor.image import importer  # noqa: E402
from executor.image.boot_test import boot_test, kvm_usable  # noqa: E402
from executor.image.prepare import prepare_image  # noqa: E402
from tests.fixtures.guest import ensure_guest  # noqa: E402


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accel", choices=["tcg", "kvm", "both"], default="both")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="d2c-bench-boot-"))
    os.environ.update({
        "D2C_HOME": str(work / "state"), "D2C_CACHE_DIR": str(work / "cache"),
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
    })
    guest = ensure_guest()
    key = work / "id_d2c"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (work / "id_d2c.pub").read_text().strip()
    prepared = prepare_image(guest.ova, work / "prepared", public_key=public)
    accels = ["tcg", "kvm"] if args.accel == "both" else [args.accel]
    if "kvm" in accels and not kvm_usable():
        print("KVM: /dev/kvm cannot be opened here; not measured")
        accels.remove("kvm")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load at start {_load()}")
    chosen = accels[0]
    for accel in accels:
        os.environ["D2C_BOOT_TEST_ACCEL"] = accel
        ssh_s, total_s = [], []
        for run in range(args.runs):
            started = time.monotonic()
            try:
                result = boot_test(prepared.raw, serial_log=work / f"{accel}-{run}.log", user=guest.user, key_path=key, timeout_s=900)
            except WorkError as exc:
                print(f"{accel}: {exc}")
                break
            total_s.append(time.monotonic() - started)
            if not result.ok:
                print(f"{accel}: run {run + 1} did not answer: {result.reason}")
                break
            ssh_s.append(result.seconds)
            print(f"{accel} run {run + 1}: SSH login after {result.seconds:.1f} s, whole rehearsal {total_s[-1]:.1f} s, load {_load()}")
        if len(ssh_s) == args.runs:
            print(f"| boot-to-SSH, {accel} | {_median(ssh_s)} s |")
            print(f"| whole rehearsal (boot, login, facts, power-off), {accel} | {_median(total_s)} s |")
            chosen = accel
        else:
            print(f"{accel}: not measured (the guest did not answer under it)")

    os.environ["D2C_BOOT_TEST_ACCEL"] = chosen
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    run_dir = work / "state" / "runs" / "bench-run"
    run_dir.mkdir(parents=True)
    (run_dir / "id_d2c").write_bytes(key.read_bytes())
    timings: dict[bool, list[float]] = {False: [], True: []}
    try:
        for run in range(args.runs):
            for rehearse in (False, True):
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
                started = time.monotonic()
                importer.ensure_ami(guest.ova, region="us-east-1", public_key=public, run_id="bench-run", boot_test=rehearse)
                timings[rehearse].append(time.monotonic() - started)
                print(f"import run {run + 1}, boot test {'on' if rehearse else 'off'}: {timings[rehearse][-1]:.1f} s, load {_load()}")
    finally:
        server.stop()
    added = [with_ - without for with_, without in zip(timings[True], timings[False])]
    print(f"| ensure_ami on moto, --no-boot-test (baseline) | {_median(timings[False])} s |")
    print(f"| ensure_ami on moto, with the boot rehearsal ({chosen}) | {_median(timings[True])} s |")
    print(f"| added by the rehearsal | {_median(added)} s |")
    print(f"load at end {_load()}")


if __name__ == "__main__":
    main()
