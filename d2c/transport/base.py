"""The interface every host transport implements, and the result types it returns."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Protocol

OutputCallback = Callable[[str], None]
"""Called with each line of output (without its newline) as it arrives."""

TAIL_LINES = 50


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: its exit status, the last lines it printed, and how long it took."""

    command: str
    exit_status: int
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its time limit."""
        return self.exit_status == 0 and not self.timed_out


class OutputTail:
    """Keeps the last ``TAIL_LINES`` lines of a stream and forwards each line to a callback."""

    def __init__(self, callback: OutputCallback | None = None, lines: int = TAIL_LINES):
        self._lines: deque[str] = deque(maxlen=lines)
        self._callback = callback

    def feed(self, line: str) -> None:
        """Record one line (its trailing newline stripped) and pass it on."""
        line = line.rstrip("\r\n")
        self._lines.append(line)
        if self._callback is not None:
            self._callback(line)

    def text(self) -> str:
        """The kept lines joined by newlines."""
        return "\n".join(self._lines)


def pump_lines(stream: IO[bytes], tail: OutputTail) -> None:
    """Feed each line of ``stream`` to ``tail`` until the stream ends or breaks, then close it.

    Run in a reader thread per stream, so a command's stdout and stderr are read as they come.
    """
    try:
        for raw in iter(stream.readline, b""):
            tail.feed(raw.decode("utf-8", errors="replace"))
    except (OSError, EOFError):
        pass  # the connection or pipe went away: the command's end is reported by its status
    stream.close()


class RunningCommand(Protocol):
    """A command started in the background on a host, for callers that watch it while it runs."""

    pid: int
    """The process id on the host (the root of the command's process tree)."""

    def poll(self) -> int | None:
        """The exit status if the command has ended, else None."""

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait for the end (killing the process tree at ``timeout``) and return its result."""

    def kill(self) -> None:
        """Kill the command's whole process tree."""


class Host(Protocol):
    """A machine d2c can run commands on and copy files to and from."""

    name: str
    """A short label for messages, e.g. ``local`` or ``ubuntu@10.0.0.5:22``."""

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> CommandResult:
        """Run a shell command, streaming its output lines; kill its tree at ``timeout`` seconds.

        Every transport runs a command the same way, by starting it and waiting for it, so
        transports subclass Host and inherit this.
        """
        process = self.start(command, env=env, cwd=cwd, on_stdout=on_stdout, on_stderr=on_stderr)
        return process.wait(timeout=timeout)

    def start(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> RunningCommand:
        """Start a shell command in the background and return a handle to watch it."""

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file or folder (recursively) to ``remote`` on the host."""

    def get(self, remote: str, local: Path) -> None:
        """Copy a file or folder (recursively) from the host to ``local``."""

    def close(self) -> None:
        """Release connections; the host object may not be used afterwards."""
