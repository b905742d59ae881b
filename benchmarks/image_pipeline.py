"""Image pipeline: .vdi to a registered AMI on moto, bytes uploaded, and conversion speed against bare qemu-img.

Builds one guest disk (default 2 GiB virtual, ~600 MiB of files: alternating random and
base64-text MiB, so roughly what a user's data compresses to) as a VDI, then, ``--runs`` times:

* baseline: a bare ``qemu-img convert -O raw`` of the VDI;
* d2c's conversion of the same VDI (``executor.image.convert.convert``, progress parsed);
* the whole ``ensure_ami`` (without the boot rehearsal: this disk has no kernel; see image_boot.py) on moto's threaded server (digest with an empty cache, conversion,
  checks, edits, EBS direct API upload, register_image), moto reset between runs.

It reports the median (min, max) of each, the bytes sent through ``put_snapshot_block`` against
the bytes the VDI holds (``qemu-img map``), and the size of the stream-optimized VMDK that VM
Import would need for the same disk. Usage::

    python benchmarks/image_pipeline.py [--disk-mib 2048] [--data-mib 600] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.image import importer  # noqa: E402
from executor.image.convert import allocated_bytes, convert  # noqa: E402
from executor.image.source import DiskRef  # noqa: E402
from tests.image_builder import Guest, build_raw, build_tree, to_vdi  # noqa: E402


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disk-mib", type=int, default=2048)
    parser.add_argument("--data-mib", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="d2c-bench-image-"))
    os.environ.update({
        "D2C_HOME": str(work / "state"), "D2C_CACHE_DIR": str(work / "cache"),
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
    })
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        started = time.perf_counter()
        tree = build_tree(work / "tree", Guest(payload_mib=args.data_mib))
        raw = build_raw(work / "disk.raw", tree, disk_mib=args.disk_mib, fs_mib=args.disk_mib - 16)
        shutil.rmtree(tree)
        vdi = to_vdi(raw, work / "guest.vdi")
        raw.unlink()
        build_s = time.perf_counter() - started
        source = DiskRef(vdi, "vdi")
        allocated = allocated_bytes(source)

        sent_bytes: list[int] = []
        real_client = importer.client

        def counting_client(service, region=None, **config):
            made = real_client(service, region, **config)
            if service == "ebs":
                made.meta.events.register(
                    "provide-client-params.ebs.PutSnapshotBlock",
                    lambda params, **_: sent_bytes.append(len(params["BlockData"])),
                )
            return made

        importer.client = counting_client
        baseline, ours, pipeline, uploaded = [], [], [], []
        stage_s: list[dict[str, float]] = []
        for run in range(args.runs):
            out = work / "out.raw"
            t = time.perf_counter()
            subprocess.run(["qemu-img", "convert", "-O", "raw", "-f", "vdi", str(vdi), str(out)], check=True)
            baseline.append(time.perf_counter() - t)
            out.unlink()
            t = time.perf_counter()
            convert(source, out, fmt="raw", progress=lambda *_: None)
            ours.append(time.perf_counter() - t)
            if run == 0:
                vmdk = convert(DiskRef(out, "raw"), work / "guest.vmdk", fmt="vmdk")
                vmdk_bytes = vmdk.stat().st_size
                vmdk.unlink()
            out.unlink()
            shutil.rmtree(work / "cache", ignore_errors=True)
            sent_bytes.clear()
            spans: dict[str, list[float]] = {}

            def on_progress(stage, done, total, spans=spans):
                now = time.perf_counter()
                spans.setdefault(stage, [now, now])[1] = now

            t = time.perf_counter()
            ami = importer.ensure_ami(vdi, region="us-east-1", progress=on_progress, boot_test=False)
            pipeline.append(time.perf_counter() - t)
            stage_s.append({stage: end - begin for stage, (begin, end) in spans.items()})
            uploaded.append(sum(sent_bytes))
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
            assert ami.startswith("ami-")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    gib = 2**30
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}")
    print(f"disk: {args.disk_mib} MiB virtual, {args.data_mib} MiB of files, {allocated / 2**20:.0f} MiB allocated in the VDI (built in {build_s:.1f} s)")
    print(f"runs: {args.runs}; seconds as median (min–max)")
    print("| step | seconds |")
    print("| --- | --- |")
    print(f"| bare qemu-img convert VDI -> raw (baseline) | {_median(baseline)} |")
    print(f"| d2c convert VDI -> raw (progress parsed, space checked) | {_median(ours)} |")
    print(f"| ensure_ami: .vdi to registered AMI on moto | {_median(pipeline)} |")
    for stage in ("converting to raw", "uploading blocks"):
        print(f"| ensure_ami step: {stage} (first to last progress report) | {_median([s.get(stage, 0.0) for s in stage_s])} |")
    ratio = statistics.median(ours) / statistics.median(baseline)
    up = statistics.median(uploaded)
    print(f"conversion vs baseline: {ratio:.2f}x (goal <= 1.5x)")
    print(f"uploaded {up / 2**20:.1f} MiB = {up / allocated:.3f}x allocated (goal <= 1.05x); "
          f"stream-optimized VMDK for VM Import: {vmdk_bytes / 2**20:.1f} MiB = {vmdk_bytes / allocated:.3f}x allocated; "
          f"full raw disk: {args.disk_mib / 1024:.1f} GiB = {args.disk_mib * 2**20 / allocated:.2f}x")
    print(f"effective upload rate on moto: {up / statistics.median(pipeline) / 2**20:.1f} MiB/s end to end; total data per run {up / gib:.2f} GiB")


if __name__ == "__main__":
    main()
