"""``d2c run --detach``: the run goes on in a background controller; the terminal gets its id.

The background process is ``d2c run`` itself with the same plan and options (already
confirmed, so ``--yes``), in a session of its own so that closing the terminal does not stop it,
its output in ``<state>/runs/detached-<pid>.log`` until the run's own folder exists. The run id
is read from the journal, where the controller records its pid as soon as the run is created.
"""

from __future__ import annotations

import subprocess
import sys
import time

import click

from d2c.errors import WorkError
from d2c.state import runs_dir

WAIT_FOR_RUN_S = 120.0


def detach_run(journal, args: list[str]) -> str:
    """Start ``d2c <args>`` in the background, wait until it has journaled its run, print the id and how to follow it."""
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"detached-{time.time_ns()}.log"
    known = {r.run_id for r in journal.runs()}
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "d2c", *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + WAIT_FOR_RUN_S
    while time.monotonic() < deadline:
        run = _run_of(journal, child.pid, known, resumed=_resumed(args))
        if run is not None:
            click.echo(run)
            click.echo(f"run {run} goes on in the background (pid {child.pid}, output in {log_path})", err=True)
            click.echo(f"follow it: d2c logs {run} -f | d2c status {run} | stop it: d2c down {run}", err=True)
            return run
        if child.poll() is not None:
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:]) or "no output"
            raise WorkError(f"the background run ended before it started (exit {child.returncode}): {tail}")
        time.sleep(0.2)
    raise WorkError(f"the background run (pid {child.pid}) has not journaled a run after {WAIT_FOR_RUN_S:.0f} s; see {log_path}")


def _resumed(args: list[str]) -> str | None:
    return args[args.index("--resume") + 1] if "--resume" in args else None


def _run_of(journal, pid: int, known: set[str], resumed: str | None) -> str | None:
    """The run whose controller is ``pid``: a new one, or the resumed one once it has taken it over."""
    for run in journal.runs():
        if (run.run_id not in known or run.run_id == resumed) and (run.details.get("controller") or {}).get("pid") == pid:
            return run.run_id
    return None
