"""What the dashboard may do besides showing, when started with ``--allow-rehearsal``: nothing else.

The one action is a rehearsal of a plan on this machine (``d2c run --provider local --plan N``),
which spends no money and launches nothing in the cloud. It runs as its own ``d2c`` process, in
its own session so that it outlives the dashboard, writing its journal and report as any run
does; the dashboard then shows it like any other run. A rehearsal that fails at once (a plan made
for another descriptor, a role given as a VM image) is answered with the command's own error line.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

STARTUP_WAIT_S = 3.0
"""How long to watch a new rehearsal for an immediate refusal before sending the user to it."""


@dataclass(frozen=True)
class ActionResult:
    """An action's answer: an HTTP status, a line for the user, and where to go next."""

    status: int
    message: str
    location: str | None = None


def _drain(stream) -> None:
    for _ in iter(stream.readline, ""):
        pass


def rehearse(project, form: dict[str, list[str]]) -> ActionResult:
    """Start ``d2c run --provider local`` for the plan ranked ``form['plan']``."""
    planset = project.plans().value
    if planset is None:
        return ActionResult(409, project.plans().problem or "no plans.json to rehearse")
    try:
        rank = int((form.get("plan") or [""])[0])
    except ValueError:
        return ActionResult(400, "plan: give the rank of a plan, e.g. plan=1")
    if rank not in {p.rank for p in planset.plans}:
        return ActionResult(400, f"plan: no plan ranked {rank} in {project.plans_path}")
    journal = project.journal()
    before = {r.run_id for r in journal.runs()} if journal is not None else set()
    process = subprocess.Popen(
        [sys.executable, "-m", "d2c", "run", "--provider", "local", "--plan", str(rank), "--plans", str(project.plans_path)],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None and process.returncode != 0:
            lines = [line.strip() for line in process.stderr.read().splitlines() if line.strip()]
            return ActionResult(400 if process.returncode == 2 else 500, next((line for line in lines if line.startswith("error:")), f"d2c run exited {process.returncode}"))
        journal = project.journal()
        new = [r.run_id for r in journal.runs() if r.run_id not in before] if journal is not None else []
        if new:
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return ActionResult(303, f"rehearsal {new[0]} started", f"/runs/{new[0]}")
        if process.poll() is not None:
            break
        time.sleep(0.1)
    threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    return ActionResult(303, "rehearsal started", "/runs")


ACTIONS = {"/actions/rehearse": rehearse}
"""The actions ``--allow-rehearsal`` enables, by the path they are posted to."""
