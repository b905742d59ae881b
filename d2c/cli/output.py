"""Terminal output shared by every command: rich tables and progress, stable JSON.

rich is imported on first use so that ``d2c --help`` does not pay for it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_console = None


def console():
    """The shared rich console (stdout)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def note(message: str) -> None:
    """A one-line remark to stderr, e.g. the catalog's age or a fallback taken."""
    print(message, file=sys.stderr)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (the documented ``--json`` output)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def progress(transient: bool = False):
    """A rich progress bar for long work; quiet (no bar) when stdout is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(),
        transient=transient,
        disable=not console().is_terminal,
    )
