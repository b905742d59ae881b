"""What a run is given and what it hands back: its timing settings, how it talks to its user, how it ended.

These cross from the command line into the orchestrator and back; tests drive runs with a
:class:`RecordingUI`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from executor.uploads import DEFAULT_STREAMS
from executor.watchdog import DEFAULT_RESERVE_S

EXIT_BY_OUTCOME = {"succeeded": 0, "detached": 0, "failed": 1, "stopped": 1}


@dataclass(frozen=True)
class RunSettings:
    """Timing knobs of a run; the defaults suit EC2, tests shorten them."""

    poll_s: float = 2.0
    reserve_s: float = DEFAULT_RESERVE_S
    states_every_s: float = 15.0
    unreachable_s: float = 300.0
    """Give up on a master that has not answered for this long."""
    streams: int = DEFAULT_STREAMS
    profile_path: Path | None = None
    """The profile to append the measured point to after a successful run."""
    deadman_s: float | None = None
    """A tighter dead-man bound asked for with ``d2c run --deadman`` (seconds after boot)."""


class RunUI(Protocol):
    """How a run talks to its user; the command line draws bars, tests record."""

    def note(self, message: str) -> None:
        """A line saying what was done and why."""

    def log_line(self, line: str) -> None:
        """A line of the master's log."""

    def live(self, elapsed_s: float, spent_usd: float, stop_usd: float) -> None:
        """The live status line; ``stop_usd`` is where the watchdog stops the run now (the budget
        less its current reserve: the next check, the fetch and the teardown)."""

    def progress(self, what: str, done: int, total: int) -> None:
        """Progress of provisioning, uploads and downloads."""

    def interrupted(self) -> str:
        """The user pressed Ctrl-C: ``detach`` or ``stop``."""


@dataclass
class RecordingUI:
    """A RunUI that keeps everything (tests, and runs without a terminal); Ctrl-C means stop."""

    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    lives: list[tuple[float, float, float]] = field(default_factory=list)
    choice: str = "stop"

    def note(self, message: str) -> None:
        self.notes.append(message)

    def log_line(self, line: str) -> None:
        self.log.append(line)

    def live(self, elapsed_s: float, spent_usd: float, stop_usd: float) -> None:
        self.lives.append((elapsed_s, spent_usd, stop_usd))

    def progress(self, what: str, done: int, total: int) -> None:
        """Progress is not recorded."""

    def interrupted(self) -> str:
        return self.choice


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the command line."""

    run_id: str
    outcome: str
    """``succeeded``, ``failed``, ``stopped`` or ``detached``."""
    message: str
    report_path: Path | None
    capacity_error: bool = False
    """The run failed because the cloud lacked capacity or quota for the plan."""

    @property
    def exit_code(self) -> int:
        """0 for success or detach, 1 otherwise."""
        return EXIT_BY_OUTCOME[self.outcome]
