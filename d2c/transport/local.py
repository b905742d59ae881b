"""Running commands and copying files on this machine, behind the same interface as SSH."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping

from d2c.errors import HostError
from d2c.transport.base import CommandResult, Host, OutputCallback, OutputTail, pump_lines


class LocalProcess:
    """A command running on this machine in its own process group."""

    def __init__(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None,
        cwd: Path | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ):
        self.command = command
        self._started = time.monotonic()
        self._timed_out = False
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            self._popen = subprocess.Popen(
                ["/bin/bash", "-c", command],
                cwd=str(cwd) if cwd else None,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise HostError(f"local: cannot start {command!r}: {exc.strerror}") from exc
        self.pid = self._popen.pid
        self._stdout = OutputTail(on_stdout)
        self._stderr = OutputTail(on_stderr)
        self._readers = [
            threading.Thread(target=pump_lines, args=(self._popen.stdout, self._stdout), daemon=True),
            threading.Thread(target=pump_lines, args=(self._popen.stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def poll(self) -> int | None:
        """The exit status if the command has ended, else None."""
        return self._popen.poll()

    def kill(self) -> None:
        """Kill the command's whole process group."""
        try:
            os.killpg(self._popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait for the command to end; at ``timeout`` seconds kill it and report a time-out."""
        try:
            status = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self.kill()
            status = self._popen.wait()
        for reader in self._readers:
            reader.join()
        return CommandResult(
            command=self.command,
            exit_status=status,
            stdout_tail=self._stdout.text(),
            stderr_tail=self._stderr.text(),
            duration_s=time.monotonic() - self._started,
            timed_out=self._timed_out,
        )


class LocalHost(Host):
    """This machine as a host. Relative remote paths and the default cwd resolve under ``root``."""

    def __init__(self, root: Path | None = None, name: str = "local"):
        self.root = Path(root).resolve() if root else None
        if self.root:
            self.root.mkdir(parents=True, exist_ok=True)
        self.name = name

    def _resolve(self, remote: str) -> Path:
        path = Path(remote).expanduser()
        if not path.is_absolute() and self.root:
            path = self.root / path
        return path

    def start(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> LocalProcess:
        """Start ``command`` under bash in the background."""
        workdir = self._resolve(cwd) if cwd else self.root
        return LocalProcess(command, env=env, cwd=workdir, on_stdout=on_stdout, on_stderr=on_stderr)

    def put(self, local: Path, remote: str) -> None:
        """Copy a file or folder to ``remote``."""
        _copy(Path(local), self._resolve(remote), self.name)

    def get(self, remote: str, local: Path) -> None:
        """Copy a file or folder from ``remote``."""
        _copy(self._resolve(remote), Path(local), self.name)

    def close(self) -> None:
        """Nothing to release for this machine."""


def _copy(source: Path, target: Path, host_name: str) -> None:
    if not source.exists():
        raise HostError(f"{host_name}: {source} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)
