#!/usr/bin/env python3
"""The fault table: faults tried and survived, hostile outputs, inputs tried and refused.

Runs the fault tests (``tests/test_faults_*.py``) with pytest and prints one markdown table per
kind, each row a case and whether it held (the test's assertions are what "held" means: the exit
code and line the user sees, outputs intact, nothing left in moto or on this machine, file
modes). The stand-in cloud cases need root and network namespaces; run under the suite's lock:

    flock /tmp/d2c-netns.lock python3 benchmarks/fault_table.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("tests/test_faults_inputs.py", "tests/test_faults_local.py", "tests/test_faults_aws.py")
KINDS = {
    "tests.test_faults_inputs": "Inputs refused (exit 2, one line naming the field, nothing created)",
    "tests.test_faults_local": "Faults and hostile apps, rehearsal provider",
    "tests.test_faults_aws": "Faults and hostile apps, stand-in cloud (moto + namespace sshd)",
}


def _case(name: str) -> str:
    base, _, param = name.partition("[")
    words = base.removeprefix("test_").replace("_", " ")
    return f"{words}: {param.rstrip(']')}" if param else words


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        started = time.monotonic()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *FILES], cwd=REPO, env=env, capture_output=True)
        elapsed = time.monotonic() - started
        root = ET.parse(report).getroot()
    rows: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    for case in root.iter("testcase"):
        kind = case.get("classname", "")
        if kind not in rows:
            continue
        if case.find("skipped") is not None:
            verdict = "skipped: " + (case.find("skipped").get("message") or "")[:60]
        elif case.find("failure") is not None or case.find("error") is not None:
            verdict = "**not held**"
        else:
            verdict = "held"
        rows[kind].append((_case(case.get("name", "")), verdict))
    print(f"Machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {elapsed:.0f} s for {sum(len(r) for r in rows.values())} cases.\n")
    for kind, title in KINDS.items():
        held = sum(1 for _, verdict in rows[kind] if verdict == "held")
        print(f"**{title}**: {held} of {len(rows[kind])} held\n")
        print("| case | result |\n| --- | --- |")
        for name, verdict in rows[kind]:
            print(f"| {name} | {verdict} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
