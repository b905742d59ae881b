"""The live display of ``d2c run``: one status line and the transfers, fitted to the terminal.

The status line says where the run stands against what was promised::

    running 0:04:07 · ETA 0:01:03 (p90 0:02:23) · spent $0.0123 of $0.50, watchdog stops at $0.45 · deadline in 0:05:53

* elapsed time runs from the run's start, as the plan's predicted time does (launch to outputs
  back, boot and setup included), so ``ETA`` is the plan's p50 less the elapsed time, then its
  p90 once p50 is past;
* the deadline counts down to the run's start plus the plan set's deadline, the moment the
  watchdog works against;
* the stop point is where the watchdog stops the run: the budget less its reserve for fetching
  outputs and tearing down (:meth:`executor.watchdog.Watchdog.reserve_usd`: the fleet's hourly
  price over the reserve time, plus the egress of the expected outputs).

When the terminal is narrow the parts take their short forms (``ETA 0:01:03``,
``$0.0123/$0.50 stop $0.45``, ``deadline 0:05:53``), least needed first, and only then does a
part go; names and numbers are never cut.

Below it, one row per transfer or step: uploads in bytes with rich's DownloadColumn and
TransferSpeedColumn, provisioning steps and fetched outputs as counts. A row goes when its step
is done (the orchestrator notes the result), and the whole display is transient, so Ctrl-C,
the detach question and the end of the run leave no stale rows behind; the last status line
is printed once, plainly, when the display closes. Without a terminal (a pipe, a log file) notes
and log lines are printed as they come and the status line every 30 seconds.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from d2c.durations import format_clock

PLAIN_EVERY_S = 30.0
_SEPARATOR = " · "
_BYTES_STEPS = ("uploading",)
_STATE_OF_STEP = {"launching": "provisioning", "starting": "provisioning", "ssh": "provisioning", "uploading": "uploading", "downloading": "fetching"}


@dataclass(frozen=True)
class RunTargets:
    """What the status line measures a run against."""

    started_at: float
    """Epoch seconds the run was created (the plan's time and the deadline count from here)."""
    p50_s: float
    p90_s: float
    deadline_at: float | None
    budget_usd: float
    stop_usd: float
    """Spend at which the watchdog stops the run (the budget less its reserve)."""
    simulated: bool = False


def run_targets(plan, planset, *, reserve_s: float, started_at: float, deadline_s: float | None = None, simulated: bool = False) -> RunTargets:
    """Targets of a run of ``plan`` from ``planset`` started at ``started_at``.

    The stop point before the app runs is a first estimate of
    :meth:`executor.watchdog.Watchdog.reserve_usd` (the fleet's hourly price over ``reserve_s``
    plus the egress of the expected outputs); once it runs, every ``live`` update carries the
    watchdog's own stop point, volumes, addresses and the gap to its next check included.
    """
    from planner.billing import BillingRules

    deadline = planset.deadline_s if deadline_s is None else deadline_s
    reserve_usd = plan.hourly_usd * reserve_s / 3600.0 + planset.output_gb * BillingRules().for_region(plan.region).egress_rate
    return RunTargets(
        started_at=started_at,
        p50_s=plan.time_s.p50,
        p90_s=plan.time_s.p90,
        deadline_at=None if deadline is None else started_at + float(deadline),
        budget_usd=planset.budget_usd,
        stop_usd=max(planset.budget_usd - reserve_usd, 0.0),
        simulated=simulated,
    )


def money(usd: float, *, down: bool = False) -> str:
    """``$0.0123`` for fractions of a cent (rehearsals and short runs), ``$0.50``, ``$12.34``, ``$1,234``.

    ``down`` rounds toward zero, for limits: a stop point of $4.995 reads $4.99, never the budget's $5.00.
    """
    if usd < 1 and abs(usd - round(usd, 2)) > 1e-9:
        return f"${math.floor(usd * 1e4) / 1e4 if down else usd:.4f}"
    if usd < 1000:
        return f"${math.floor(usd * 100 + 1e-9) / 100 if down else usd:.2f}"
    return f"${math.floor(usd) if down else usd:,.0f}"


def _parts(state: str, now: float, targets: RunTargets, spent_usd: float | None) -> list[tuple[str, ...]]:
    """The status line's parts, most needed first, each as its forms from longest to shortest."""
    elapsed = max(now - targets.started_at, 0.0)
    parts: list[tuple[str, ...]] = [(f"{state} {format_clock(elapsed)}",)]
    if elapsed < targets.p50_s:
        left = format_clock(targets.p50_s - elapsed)
        parts.append((f"ETA {left} (p90 {format_clock(targets.p90_s - elapsed)})", f"ETA {left}"))
    elif elapsed < targets.p90_s:
        left = format_clock(targets.p90_s - elapsed)
        parts.append((f"ETA {left} (past p50, to p90)", f"ETA {left} p90"))
    else:
        over = format_clock(elapsed - targets.p90_s)
        parts.append((f"ETA passed: {over} past p90", f"{over} past p90"))
    sim = " (simulated)" if targets.simulated else ""
    budget, stop = money(targets.budget_usd), money(targets.stop_usd, down=True)
    if spent_usd is None:
        parts.append((f"budget {budget}{sim}, watchdog stops at {stop}", f"budget {budget}, stops at {stop}", f"budget {budget} stop {stop}", f"budget {budget}"))
    else:
        spent = money(spent_usd)
        parts.append((f"spent {spent} of {budget}{sim}, watchdog stops at {stop}", f"spent {spent} of {budget}, stops at {stop}",
                      f"{spent}/{budget} stop {stop}", f"{spent}/{budget}"))
    if targets.deadline_at is not None:
        left = format_clock(max(targets.deadline_at - now, 0.0))
        parts.append((f"deadline in {left}", f"deadline {left}"))
    return parts


def final_line(now: float, targets: RunTargets, spent_usd: float | None) -> str:
    """The line left on screen when the run is over: how long it took and what it spent, against the plan."""
    took = f"took {format_clock(now - targets.started_at)} (p50 {format_clock(targets.p50_s)}, p90 {format_clock(targets.p90_s)})"
    if spent_usd is None:
        return took
    sim = " (simulated)" if targets.simulated else ""
    return f"{took} · spent {money(spent_usd)} of {money(targets.budget_usd)}{sim}"


def status_line(state: str, now: float, targets: RunTargets, spent_usd: float | None, width: int) -> str:
    """The status line at ``now``, at most ``width`` cells when it can be (the first part always stays).

    Parts take their shorter forms one step at a time, the least needed first in each round;
    when every part is at its shortest, the least needed parts go.
    """
    parts = _parts(state, now, targets, spent_usd)
    chosen = [0] * len(parts)

    def text() -> str:
        return _SEPARATOR.join(forms[i] for forms, i in zip(parts, chosen))

    shortened = True
    while len(text()) > width and shortened:
        shortened = False
        for index in reversed(range(len(parts))):
            if len(text()) > width and chosen[index] < len(parts[index]) - 1:
                chosen[index] += 1
                shortened = True
    while len(text()) > width and len(parts) > 1:
        parts.pop()
        chosen.pop()
    return text()


class RunDisplay:
    """A RunUI (executor.orchestrator) drawing the status line and transfer rows on the terminal."""

    def __init__(self, targets: RunTargets, *, console=None, clock: Callable[[], float] = time.time, ask: Callable[[], str] | None = None):
        from d2c.cli.output import console as shared_console

        self.targets = targets
        self.console = console or shared_console()
        self.clock = clock
        self.ask = ask or _ask_detach_or_stop
        self.state = "starting"
        self.spent_usd: float | None = None
        self.tasks: dict[str, int] = {}
        self.finished: dict[str, float] = {}
        """Steps done, with their totals (their rows are gone)."""
        self.last_plain = 0.0
        self.lock = threading.Lock()
        self.board = _board(self)

    # -- the RunUI protocol -----------------------------------------------------------------------

    def note(self, message: str) -> None:
        self.board.console.print(message, markup=False, highlight=False)

    def log_line(self, line: str) -> None:
        self.board.console.print(f"  | {line}", markup=False, highlight=False, style="dim")

    def live(self, elapsed_s: float, spent_usd: float, stop_usd: float) -> None:
        self.state = "running"
        self.spent_usd = spent_usd
        # The watchdog's own stop point from now on (its reserve counts addresses, volumes and the check gap).
        self.targets = replace(self.targets, stop_usd=stop_usd)
        if self.console.is_terminal:
            self.board.refresh()
        elif self.clock() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = self.clock()
            self.note(self.line(width=200))

    def progress(self, what: str, done: float, total: float) -> None:
        with self.lock:  # upload streams report from several threads
            self._progress(what, done, total)

    def _progress(self, what: str, done: float, total: float) -> None:
        self.state = _STATE_OF_STEP.get(what, self.state)
        total = max(total, 1)
        if self.finished.get(what) == total:
            return  # a late report from a stream that finished before the last one did
        self.finished.pop(what, None)
        if what not in self.tasks:
            unit = "bytes" if what in _BYTES_STEPS else "count"
            self.tasks[what] = self.board.add_task(what, total=total, unit=unit)
        task = self.tasks[what]
        if done >= total:
            self.board.remove_task(task)
            del self.tasks[what]
            self.finished[what] = total
            return
        self.board.update(task, completed=done, total=total)

    def interrupted(self) -> str:
        self.board.stop()
        try:
            return self.ask()
        finally:
            self.board.start()

    # -- the display ---------------------------------------------------------------------------

    def line(self, width: int | None = None) -> str:
        """The status line now, fitted to ``width`` (default: the terminal's)."""
        return status_line(self.state, self.clock(), self.targets, self.spent_usd, width or self.console.width)

    def __enter__(self) -> "RunDisplay":
        self.board.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.board.stop()
        if kind is None and self.spent_usd is not None:
            self.console.print(final_line(self.clock(), self.targets, self.spent_usd), markup=False, highlight=False)


def _ask_detach_or_stop() -> str:
    import click

    if not sys.stdin.isatty():
        return "stop"
    return click.prompt(
        "Keep the run going without this terminal (detach) or stop it now (stop)?",
        type=click.Choice(["detach", "stop"]),
        default="stop",
    )


def _board(display: RunDisplay):
    """A rich Progress that draws the display's status line above its rows."""
    from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn, TransferSpeedColumn
    from rich.table import Column
    from rich.text import Text

    class Amount(ProgressColumn):
        """Bytes as sizes (``1.2/3.4 MB``) for transfers, ``n/m`` for counted steps."""

        def __init__(self):
            super().__init__(table_column=Column(no_wrap=True, justify="right"))
            self.sizes = DownloadColumn()

        def render(self, task):
            if task.fields.get("unit") == "bytes":
                return self.sizes.render(task)
            return Text(f"{task.completed:.0f}/{task.total:.0f}", style="progress.download")

    class Speed(TransferSpeedColumn):
        def render(self, task):
            return super().render(task) if task.fields.get("unit") == "bytes" else Text("")

    class Board(Progress):
        def get_renderables(self):
            yield Text(display.line(), no_wrap=True, overflow="crop", style="bold")
            if self.tasks:
                yield self.make_tasks_table(self.tasks)

    return Board(
        TextColumn("  {task.description}", table_column=Column(no_wrap=True, min_width=13)),
        BarColumn(bar_width=24),
        Amount(),
        Speed(table_column=Column(no_wrap=True, justify="right")),
        console=display.console,
        transient=True,
        refresh_per_second=4,
        disable=not display.console.is_terminal,
    )


def rehearsal_line(record) -> str | None:
    """For a rehearsal (``--provider local``): the app's measured wall time against what the
    profile predicts on this machine for the plan's workers, since the report's prediction is
    for the plan's cloud types. None for cloud runs, or when the profile, plans or times are gone."""
    from d2c.errors import UsageError

    details = record.details
    profile_path = details.get("profile")
    if not details.get("simulated") or not profile_path or "master_ended_at" not in details or "master_started_at" not in details:
        return None
    from planner.plans import load_plans
    from profiler.profile_file import load_profile

    try:
        profile = load_profile(Path(profile_path))
        plan = load_plans(Path(record.plans_file)).plan(record.plan_rank)
    except (UsageError, OSError):
        return None
    workers = sum(a.count * a.workers_per_instance for a in plan.roles)
    scale = float(details.get("scale", profile.full_scale))
    here = profile.predictor.runtime(scale, workers, host_memory_mb=profile.host.memory_mb, workers_per_host=workers)
    wall = float(details["master_ended_at"]) - float(details["master_started_at"])
    return (f"on this machine the app took {wall:.1f} s; the profile predicts p50 {here.p50:.1f} s, p90 {here.p90:.1f} s "
            f"here at scale {scale:g} with {workers} worker{'s' if workers != 1 else ''} (the plan's times are for its cloud types)")
