"""Which process drives a run, so that ``d2c status`` can tell a live run from an orphaned one.

The controller (``d2c run`` or ``d2c run --resume``) journals its pid and the process's start
time; a pid alone could since have been given to another process, the pair cannot.
"""

from __future__ import annotations

import os
from typing import Any


def this_controller() -> dict[str, Any]:
    """The journal form of the current process as a run's controller."""
    import psutil

    return {"pid": os.getpid(), "started_at": psutil.Process().create_time()}


def controller_alive(details: dict[str, Any]) -> bool | None:
    """Whether the controller journaled in a run's ``details`` still runs; None when none was journaled."""
    import psutil

    recorded = details.get("controller")
    if not recorded:
        return None
    try:
        process = psutil.Process(int(recorded["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - float(recorded["started_at"])) < 0.01
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False
