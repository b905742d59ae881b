"""A real OpenSSH server for tests: its own config, host key and authorized_keys in a folder.

``SshServer(workdir, authorized_keys=[...]).start()`` runs ``/usr/sbin/sshd -D -e -f CONFIG`` on
127.0.0.1 at a free port, for the current user (root logs in with keys only — ``PermitRootLogin
prohibit-password``; other users work too, since ``StrictModes no``, ``UsePAM no`` and the pid
file lives in the folder).

Network namespaces: with ``netns="NAME"`` the server runs under ``ip netns exec NAME``, listening
on ``address`` (the namespace's own address, e.g. a fake EC2 instance's private IP) at ``port``
(22 unless given). The caller creates the namespace, its interfaces and routes, and deletes them
after ``stop()``. Readiness is read from sshd's own log line ("Server listening on ..."), so
``start()`` works even before the namespace is reachable from the caller.
``tests/test_ssh_host.py::test_sshd_in_a_network_namespace_is_reached_at_its_own_address`` shows
the whole set-up (a veth pair, one end in the namespace).

The host key is made once per ``workdir``: a server restarted in the same folder keeps its
identity, one in a new folder is a "rebuilt machine" whose changed key clients must refuse.
``stop()`` also kills the per-connection sshd processes and the commands still running under
them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
_START_TIMEOUT_S = 10.0


def generate_keypair(path: Path, key_type: str = "ed25519") -> str:
    """Create a passphrase-less key pair at ``path`` (and ``path.pub``); return the public line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    size = ["-b", "2048"] if key_type == "rsa" else []
    comment = f"d2c-test-{path.name}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, *size, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``address`` right now."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


class SshServer:
    """One sshd process serving the current user with the given authorized keys."""

    def __init__(
        self,
        workdir: Path,
        *,
        authorized_keys: list[str],
        address: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
    ):
        self.workdir = Path(workdir)
        self.address = address
        self.netns = netns
        self.port = port if port is not None else (22 if netns else free_port(address))
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._authorized_keys = list(authorized_keys)
        self._process: subprocess.Popen | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        if not self.host_key_path.exists():
            generate_keypair(self.host_key_path)
        public_path = self.host_key_path.with_name(self.host_key_path.name + ".pub")
        self.host_public_key = public_path.read_text().strip()

    def _write_config(self) -> None:
        keys = self.workdir / "authorized_keys"
        keys.write_text("".join(f"{line.strip()}\n" for line in self._authorized_keys))
        keys.chmod(0o600)
        self.config_path.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}",
                    f"Port {self.port}",
                    f"HostKey {self.host_key_path}",
                    f"AuthorizedKeysFile {keys}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    "UseDNS no",
                    "PrintMotd no",
                    "LogLevel INFO",
                    # Tests open many channels and connections at once (parallel SFTP, watchers).
                    "MaxSessions 64",
                    "MaxStartups 64",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start(self) -> "SshServer":
        """Start sshd and wait until it listens; raise RuntimeError with its log if it does not."""
        if not SSHD.exists():
            raise RuntimeError(f"{SSHD} not found: install openssh-server")
        if os.geteuid() == 0:
            # sshd's privilege separation needs this empty folder when run as root.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._write_config()
        command = [str(SSHD), "-D", "-e", "-f", str(self.config_path)]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                status = self._process.returncode
                raise RuntimeError(f"sshd exited with status {status}: {self.log()}")
            if "Server listening on" in self.log():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"sshd did not listen on {self.address}:{self.port} within {_START_TIMEOUT_S:.0f} s: "
            f"{self.log()}"
        )

    def log(self) -> str:
        """What sshd has written to its log so far."""
        return self.log_path.read_text(errors="replace").strip() if self.log_path.exists() else ""

    @property
    def pid(self) -> int | None:
        """The listening sshd's process id while it runs."""
        return self._process.pid if self._process else None

    def stop(self) -> None:
        """Kill the listening sshd and the per-connection sshd processes it forked."""
        if self._process is None:
            return
        import psutil

        try:
            children = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self._process.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> "SshServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def have_sshd() -> bool:
    """Whether the OpenSSH server and ssh-keygen are installed."""
    return SSHD.exists() and shutil.which("ssh-keygen") is not None
