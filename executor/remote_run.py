"""Running a role's command on a host so that it outlives the controller, and watching it.

The command starts under ``setsid nohup`` in the host's work folder with ``.d2c/env.sh`` sourced;
its output goes to ``.d2c/<tag>.log``, its process group id to ``.d2c/<tag>.pid`` and, when it
ends, its exit status to ``.d2c/<tag>.exit``. Everything needed to follow it lives on the host,
so a controller that crashed (or a ``d2c run --resume`` from another shell) picks it up again.
Each poll is one round trip that returns the status and the log lines not yet seen.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from d2c.errors import HostError
from d2c.transport.base import Host

_STATUS_MARK = "D2C-STATUS"


@dataclass(frozen=True)
class Poll:
    """What one look at a running command found."""

    exit_status: int | None
    """The command's exit status once it has ended, else None."""
    done_file: bool
    """True when the descriptor's done-file exists."""
    lines: tuple[str, ...]
    """Complete log lines written since the previous poll."""

    @property
    def finished(self) -> bool:
        """The command ended or declared itself done."""
        return self.exit_status is not None or self.done_file


def start_command(host: Host, *, workdir: str, tag: str, command: str) -> None:
    """Start ``command`` detached on ``host`` (replacing the status of an earlier attempt)."""
    inner = f"source .d2c/env.sh; {command}\nstatus=$?; echo $status > .d2c/{tag}.exit.tmp; mv .d2c/{tag}.exit.tmp .d2c/{tag}.exit"
    script = (
        f"cd {shlex.quote(workdir)} && mkdir -p .d2c && rm -f .d2c/{tag}.exit && "
        f"(setsid nohup bash -c {shlex.quote(inner)} > .d2c/{tag}.log 2>&1 < /dev/null & echo $! > .d2c/{tag}.pid)"
    )
    result = host.run(script, timeout=60)
    if not result.ok:
        raise HostError(f"{host.name}: could not start the {tag} command: {result.stderr_tail or result.stdout_tail}")


class CommandWatch:
    """Follows a command started by :func:`start_command`; ``lines_seen`` survives a resume."""

    def __init__(self, host: Host, *, workdir: str, tag: str, done_file: str | None = None, lines_seen: int = 0):
        self.host = host
        self.workdir = workdir
        self.tag = tag
        self.done_file = done_file
        self.lines_seen = lines_seen

    def poll(self, timeout: float = 60.0) -> Poll:
        """Read the status (first, so that every line written before the end is counted) and new lines."""
        done_test = f"test -e {shlex.quote(self.done_file)} && echo yes || echo no" if self.done_file else "echo no"
        log = f".d2c/{self.tag}.log"
        script = (
            f"cd {shlex.quote(self.workdir)} || exit 3; "
            f"status=$(cat .d2c/{self.tag}.exit 2>/dev/null || echo -); done=$({done_test}); "
            f"total=$(cat {log} 2>/dev/null | wc -l); "
            f"echo {_STATUS_MARK} $status $done $total; "
            f"if [ $total -gt {self.lines_seen} ]; then tail -n +{self.lines_seen + 1} {log} | head -n $(($total - {self.lines_seen})); fi"
        )
        received: list[str] = []
        result = self.host.run(script, timeout=timeout, on_stdout=received.append)
        if not result.ok or not received or not received[0].startswith(_STATUS_MARK):
            raise HostError(f"{self.host.name}: could not read the state of the {self.tag} command (exit {result.exit_status})")
        _, status, done, total = received[0].split()
        lines = tuple(received[1:])
        self.lines_seen += len(lines)
        return Poll(exit_status=None if status == "-" else int(status), done_file=done == "yes", lines=lines)

    def kill(self) -> None:
        """Stop the command's whole process group: TERM, up to 2 s to exit, then KILL.

        The command leads its own session, so its members are found by session id; zombies
        (already dead, waiting for their new parent to reap them) do not count as running.
        """
        group = f"-$(cat .d2c/{self.tag}.pid)"
        self.host.run(
            f"cd {shlex.quote(self.workdir)} || exit 0; kill -TERM -- {group} 2>/dev/null || exit 0; "
            f"for i in $(seq 20); do ps -o stat= -s {group[1:]} | grep -qv '^Z' || exit 0; sleep 0.1; done; "
            f"kill -KILL -- {group} 2>/dev/null; true",
            timeout=30,
        )
