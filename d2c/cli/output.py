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


def progress(transient: bool = False, *, box_s: float | None = None, status_below: bool = False):
    """A rich progress bar for long work; quiet (no bar) when stdout is not a terminal.

    The bar keeps its width at 80 columns; the points done show as ``done/planned``. With
    ``box_s`` the elapsed time reads against the time box (``0:00:12/0:05:00``, which is when
    the work ends at the latest). With ``status_below`` each task's status text goes on a line
    of its own under the bars, wrapped at words, instead of squeezing into the bar's row.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    from d2c.durations import format_clock

    class AgainstBox(ProgressColumn):
        def render(self, task):
            return Text(f"{format_clock(task.elapsed or 0.0)}/{format_clock(box_s)}", style="progress.elapsed")

    class StatusBelow(Progress):
        def get_renderables(self):
            yield self.make_tasks_table(self.tasks)
            for task in self.tasks:
                if task.fields.get("status"):
                    yield Text(f"  {task.fields['status']}")

    columns = [
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=20),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        AgainstBox(table_column=Column(no_wrap=True)) if box_s is not None else TimeElapsedColumn(table_column=Column(no_wrap=True)),
    ]
    if not status_below:
        columns.append(TextColumn("{task.fields[status]}", table_column=Column(overflow="fold", ratio=1)))
    return (StatusBelow if status_below else Progress)(
        *columns,
        console=console(),
        transient=transient,
        disable=not console().is_terminal,
    )
