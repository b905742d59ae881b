"""One run at a time per project: a lock file in the state folder, held while a controller lives.

``d2c run`` (and ``d2c run --resume``) takes an exclusive ``flock`` on ``<state>/run.lock`` for
as long as its process lives and writes its pid there; the kernel drops the lock when the process
ends, however it ends (SIGKILL included), so a stale lock cannot block the project. A run that
is still active in the journal without a controller (detached, or its controller was killed)
blocks a new run as well, since resuming it would write the same output folders.

Runs started with ``--allow-concurrent`` take no lock and block nothing: each puts its outputs in
a folder of its own (``results/<run>/``), so no two runs ever write the same files.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from d2c.errors import UsageError
from d2c.state import PRIVATE_FILE_MODE, state_dir
from executor.controller import controller_alive, this_controller
from executor.journal import Journal

LOCK_NAME = "run.lock"
_HELD: list[int] = []
"""Descriptors of locks this process holds; they stay open until the process exits."""


def _conflict(journal: Journal, holder: dict | None, resuming: str | None) -> str | None:
    """Why a run may not start now, naming the run in the way; None when nothing is."""
    for run in journal.runs():
        if not run.active or run.run_id == resuming or run.details.get("per_run_outputs"):
            continue
        alive = controller_alive(run.details)
        if alive:
            return f"run {run.run_id} is running in this project (pid {run.details['controller']['pid']}); wait for it, stop it with 'd2c down {run.run_id}'"
        return f"run {run.run_id} is still active in this project (its controller is gone); follow it with 'd2c run --resume {run.run_id}' or stop it with 'd2c down {run.run_id}'"
    if holder:
        return f"another 'd2c run' (pid {holder.get('pid')}) is starting in this project; wait for it"
    return None


def acquire_run_lock(journal: Journal, *, resuming: str | None = None) -> None:
    """Hold the project's run lock until this process ends; UsageError (exit 2) naming the live run otherwise."""
    path = state_dir() / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(path)
        os.close(fd)
        reason = _conflict(journal, holder, resuming) or f"another 'd2c run' (pid {(holder or {}).get('pid')}) holds {path}"
        raise UsageError(f"{reason}; or pass --allow-concurrent to run side by side (outputs then go to results/<run>/)") from None
    reason = _conflict(journal, None, resuming)
    if reason:
        os.close(fd)
        raise UsageError(f"{reason}; or pass --allow-concurrent to run side by side (outputs then go to results/<run>/)")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(this_controller()).encode())
    except OSError:
        pass  # a full disk: the lock holds all the same, only the holder's pid goes unnamed
    _HELD.append(fd)


def release_run_lock() -> None:
    """Let go of the locks this process holds (``--detach`` hands the run to a background controller, which takes its own)."""
    while _HELD:
        os.close(_HELD.pop())


def _read_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
