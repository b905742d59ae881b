"""Running commands and copying files on a machine over SSH (paramiko), behind the Host interface.

One ``SSHHost`` holds one SSH connection, opened on first use (and again if it dropped). Every
``run``/``start``/``put``/``get`` opens its own channel on that connection, so several threads may
share one ``SSHHost`` — for example to upload files in parallel, each thread with its own SFTP
channel. Servers cap the channels open at once on one connection (OpenSSH: ``MaxSessions``,
10 by default).

Commands run through ``/bin/sh``, which changes directory, exports the environment (values quoted,
so nothing relies on the server's ``AcceptEnv``), reports its pid and then becomes ``bash -c
COMMAND`` (``sh`` where bash is missing) in the environment the login shell set up. OpenSSH
starts each command as the leader of a new session and process group, so that pid is the root of
the command's process tree and killing its process group ends the whole tree. A command killed
by a signal has exit status -1: the server reports a signal, not a status.

Authentication is by key only (ed25519, ECDSA or RSA, without a passphrase). Host keys are pinned
on first use in a known_hosts file (see :mod:`d2c.transport.known_hosts`), or checked against the
one key the caller expects.

paramiko is imported here only; import this module inside the commands that need it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import IO, Iterator, Mapping

import paramiko

from d2c.errors import HostError, HostKeyMismatch, UsageError
from d2c.state import known_hosts_path
from d2c.transport.base import CommandResult, Host, OutputCallback, OutputTail, pump_lines
from d2c.transport.known_hosts import KnownHosts, PublicKey, check_expected, parse_public_key

# paramiko logs connection failures with tracebacks; d2c reports them as one line instead, so
# without a handler configured by the caller they must not fall through to Python's last resort.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOST_KEY_ALGORITHMS = {
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"],
}
# Seconds to wait for a killed command's channel to close before giving up on it.
_KILL_GRACE_S = 5.0
# A larger window than paramiko's default keeps SFTP transfers from stalling on round trips.
_WINDOW_SIZE = 16 * 1024 * 1024
# Read requests of 32 KiB in flight while downloading, half the window: paramiko's default sends
# them all at once, far more than the window holds, and was 3x slower (benchmarks/ssh_transport.py).
_PREFETCH_REQUESTS = PREFETCH_REQUESTS = _WINDOW_SIZE // (2 * 32 * 1024)
# Mode bits taken from remote files: permissions only, never setuid, setgid or sticky.
_COPIED_MODE_BITS = 0o777


def _reason(exc: BaseException) -> str:
    """A short human reason for a connection failure."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, paramiko.ChannelException):
        return exc.text
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_LABEL_CHARS = 60


def command_label(command: str) -> str:
    """How a command is named in a message: its first line, cut short, never its whole text.

    Set-up scripts carry the run's private key and cluster files; a failure must name the
    command without repeating what it holds.
    """
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    if "PRIVATE KEY" in command:
        return "a set-up script"
    if len(first) > _LABEL_CHARS or len(lines) > 1:
        return repr(first[:_LABEL_CHARS] + " …")
    return repr(first)


def _remote_path(remote: str) -> str:
    """A path for SFTP: ``~/x`` and ``x`` both mean ``x`` under the login home."""
    if remote == "~":
        return "."
    if remote.startswith("~/"):
        return remote[2:] or "."
    return remote


def _shell_path(path: str) -> str:
    """A path quoted for sh, keeping ``~/`` meaning the login home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class SSHProcess:
    """A command running on an SSH host; ``pid`` is its process id on that host."""

    def __init__(
        self,
        host: "SSHHost",
        command: str,
        channel: paramiko.Channel,
        *,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ):
        self.command = command
        self._host = host
        self._channel = channel
        self._started = time.monotonic()
        self._timed_out = False
        self._killed = False
        self._stdout = OutputTail(on_stdout)
        self._stderr = OutputTail(on_stderr)
        stdout = channel.makefile("rb")
        stderr = channel.makefile_stderr("rb")
        self.pid = self._read_pid(stdout, stderr)
        self._readers = [
            threading.Thread(target=pump_lines, args=(stdout, self._stdout), daemon=True),
            threading.Thread(target=pump_lines, args=(stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_pid(self, stdout: IO[bytes], stderr: IO[bytes]) -> int:
        """Skip anything the login shell printed and read the pid line the wrapper prints.

        Until then nothing but the login shell and the wrapper has written, so stderr can wait.
        """
        marker = self._host._marker
        self._channel.settimeout(self._host.connect_timeout)
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith(marker):
                    self._channel.settimeout(None)
                    return int(line[len(marker) :])
            why = stderr.read().decode("utf-8", errors="replace").strip().splitlines()
        except (OSError, ValueError, EOFError) as exc:
            why = [_reason(exc)]
        self._channel.close()
        reason = why[-1] if why else "the remote shell ended before running it"
        raise HostError(f"{self._host.label}: cannot start {command_label(self.command)}: {reason}")

    def poll(self) -> int | None:
        """The exit status if the command has ended, else None."""
        if self._channel.status_event.is_set():
            return self._channel.exit_status
        return None

    def kill(self) -> None:
        """Kill the command's process group on the host (all of its process tree)."""
        self._killed = True
        if self._channel.status_event.is_set():
            return
        self._host.run(
            f"kill -KILL -- -{self.pid} 2>/dev/null || kill -KILL {self.pid} 2>/dev/null; true",
            timeout=_KILL_GRACE_S * 2,
        )

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait for the command to end; at ``timeout`` seconds kill it and report a time-out."""
        if not self._channel.status_event.wait(timeout):
            self._timed_out = True
            self.kill()
            self._channel.status_event.wait(_KILL_GRACE_S)
        for reader in self._readers:
            reader.join(timeout=_KILL_GRACE_S)
        status = self._channel.exit_status if self._channel.status_event.is_set() else -1
        self._channel.close()
        ended_by_us = self._timed_out or self._killed
        if status == -1 and not ended_by_us and not self._host._is_connected():
            raise HostError(f"{self._host.label}: connection lost while running {command_label(self.command)}")
        return CommandResult(
            command=self.command,
            exit_status=status,
            stdout_tail=self._stdout.text(),
            stderr_tail=self._stderr.text(),
            duration_s=time.monotonic() - self._started,
            timed_out=self._timed_out,
        )


class SSHHost(Host):
    """A machine reached over SSH with a key; see the module docstring for the guarantees.

    ``retries`` is the number of connection attempts, ``backoff_s`` the pause after the first
    failed one (doubling after each further one); each attempt waits at most ``connect_timeout``
    seconds for the TCP connection, the SSH handshake and the authentication. A refused or
    changed host key is never retried. ``known_hosts`` defaults to the project's
    ``d2c.state.known_hosts_path()``; ``expected_host_key`` (an OpenSSH public key line, e.g.
    from an instance's console output) replaces pinning with that one key. ``name`` labels the
    host in messages.
    """

    def __init__(
        self,
        hostname: str,
        port: int = 22,
        *,
        user: str,
        key_path: Path,
        known_hosts: Path | None = None,
        expected_host_key: str | None = None,
        connect_timeout: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        name: str | None = None,
    ):
        self.hostname = hostname
        self.port = int(port)
        self.user = user
        self.key_path = Path(key_path).expanduser()
        self.known_hosts = Path(known_hosts) if known_hosts else None
        self.expected_host_key = parse_public_key(expected_host_key) if expected_host_key else None
        self.connect_timeout = connect_timeout
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        address = f"{user}@{hostname}:{self.port}"
        self.name = name or address
        self.label = f"ssh {address}" if not name or name == address else f"{name} (ssh {address})"
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        # A per-host random prefix, so the pid line cannot be confused with the login's output.
        self._marker = f"d2c-pid-{secrets.token_hex(6)}:"

    def __enter__(self) -> "SSHHost":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHHost({self.name!r})"

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection now instead of on first use."""
        self._connection()

    def _is_connected(self) -> bool:
        transport = self._transport
        return transport is not None and transport.is_active()

    def _connection(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            if self._transport is not None:
                self._transport.close()
            self._transport = self._connect_with_retries()
            return self._transport

    def _load_key(self) -> paramiko.PKey:
        try:
            return paramiko.PKey.from_path(self.key_path)
        except FileNotFoundError:
            raise UsageError(f"{self.label}: key file {self.key_path} not found") from None
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            # cryptography reports an encrypted OpenSSH key without a password as a TypeError.
            if isinstance(exc, TypeError) and "password" not in str(exc):
                raise UsageError(
                    f"{self.label}: {self.key_path} is not a private key d2c can use ({exc})"
                ) from None
            raise UsageError(
                f"{self.label}: key {self.key_path} has a passphrase; use a key without one "
                f"(ssh-keygen -p -N '' -f {self.key_path})"
            ) from None
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise UsageError(
                f"{self.label}: {self.key_path} is not a private key d2c can use ({_reason(exc)})"
            ) from None

    def _connect_with_retries(self) -> paramiko.Transport:
        pkey = self._load_key()
        started = time.monotonic()
        last: BaseException | None = None
        refused_auth = False
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._connect_once(pkey)
            except HostKeyMismatch:
                raise
            except socket.gaierror as exc:
                raise HostError(
                    f"{self.label}: cannot resolve {self.hostname} ({_reason(exc)})"
                ) from exc
            except paramiko.AuthenticationException as exc:
                refused_auth, last = True, exc
            except (OSError, EOFError, paramiko.SSHException) as exc:
                refused_auth, last = False, exc
        elapsed = time.monotonic() - started
        attempts = f"{self.retries} attempt{'s' if self.retries > 1 else ''} over {elapsed:.1f} s"
        if refused_auth:
            raise HostError(
                f"{self.label}: key {self.key_path} refused after {attempts} ({_reason(last)})"
            )
        raise HostError(f"{self.label}: no answer after {attempts} ({_reason(last)})")

    def _connect_once(self, pkey: paramiko.PKey) -> paramiko.Transport:
        sock = socket.create_connection((self.hostname, self.port), timeout=self.connect_timeout)
        # Small request/reply exchanges (opening channels) otherwise wait on delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(
            sock, default_window_size=_WINDOW_SIZE, default_max_packet_size=32768
        )
        try:
            transport.banner_timeout = self.connect_timeout
            transport.handshake_timeout = self.connect_timeout
            transport.auth_timeout = self.connect_timeout
            known = None
            if self.expected_host_key is None:
                known = KnownHosts(self.known_hosts or known_hosts_path())
            self._prefer_host_key_types(transport, known)
            transport.start_client(timeout=self.connect_timeout)
            if transport.host_key is None:
                # start_client returns at its timeout without raising when the server is silent.
                raise paramiko.SSHException(f"no SSH handshake within {self.connect_timeout:g} s")
            server_key = transport.get_remote_server_key()
            presented = PublicKey(server_key.get_name(), server_key.asbytes())
            if known is None:
                check_expected(self.label, self.expected_host_key, presented)
            else:
                known.verify_or_pin(self.hostname, self.port, presented)
            transport.auth_publickey(self.user, pkey)
            if not transport.is_authenticated():
                raise paramiko.AuthenticationException("more authentication required")
            transport.set_keepalive(30)
            return transport
        except BaseException:
            transport.close()
            raise

    def _prefer_host_key_types(
        self, transport: paramiko.Transport, known: KnownHosts | None
    ) -> None:
        """Ask the server first for the key types we can check, as OpenSSH's client does."""
        if known is None:
            wanted = [self.expected_host_key.key_type]
        else:
            wanted = [p.key.key_type for p in known.lookup(self.hostname, self.port)]
        if not wanted:
            return
        options = transport.get_security_options()
        supported = list(options.key_types)
        first: list[str] = []
        for key_type in wanted:
            for algorithm in _HOST_KEY_ALGORITHMS.get(key_type, [key_type]):
                if algorithm in supported and algorithm not in first:
                    first.append(algorithm)
        options.key_types = first + [t for t in supported if t not in first]

    def close(self) -> None:
        """Close the connection (a later call would open a new one)."""
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _open_channel(self) -> paramiko.Channel:
        for attempt in range(2):
            transport = self._connection()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.ChannelException as exc:
                # The server answered and said no (e.g. too many channels): not a dead link.
                raise HostError(f"{self.label}: cannot open a channel ({_reason(exc)})") from exc
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if attempt:
                    raise HostError(
                        f"{self.label}: cannot open a channel ({_reason(exc)})"
                    ) from exc
                # The connection dropped since it was last used: open a new one, once.
                self._drop(transport)
        raise AssertionError("unreachable")

    def _drop(self, transport: paramiko.Transport) -> None:
        with self._lock:
            if self._transport is transport:
                transport.close()
                self._transport = None

    # -- commands -----------------------------------------------------------------------------

    def _wrap(self, command: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
        lines = []
        if cwd:
            lines.append(f"cd -- {_shell_path(cwd)} || exit 125")
        for key, value in (env or {}).items():
            if not _ENV_NAME.match(key):
                raise UsageError(f"{self.label}: {key!r} is not a valid environment variable name")
            lines.append(f"export {key}={shlex.quote(str(value))}")
        lines.append(f"printf '%s%s\\n' {shlex.quote(self._marker)} \"$$\"")
        quoted = shlex.quote(command)
        # The login shell has read the user's rc files already; --norc keeps bash from
        # reading .bashrc a second time (it does so when it thinks sshd started it).
        lines.append(f"command -v bash >/dev/null 2>&1 && exec bash --norc -c {quoted}")
        lines.append(f"exec sh -c {quoted}")
        return "exec /bin/sh -c " + shlex.quote("\n".join(lines))

    def start(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> SSHProcess:
        """Start ``command`` in the background; relative ``cwd`` is under the login home."""
        wrapped = self._wrap(command, env, cwd)
        channel = self._open_channel()
        try:
            channel.exec_command(wrapped)
            channel.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise HostError(f"{self.label}: cannot start {command_label(command)}: {_reason(exc)}") from exc
        return SSHProcess(self, command, channel, on_stdout=on_stdout, on_stderr=on_stderr)

    # -- files --------------------------------------------------------------------------------

    def open_sftp(self) -> paramiko.SFTPClient:
        """An SFTP client on its own channel (callers close it), for walks the Host interface lacks."""
        return self._sftp()

    def _sftp(self) -> paramiko.SFTPClient:
        channel = self._open_channel()
        try:
            channel.invoke_subsystem("sftp")
            return paramiko.SFTPClient(channel)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise HostError(f"{self.label}: the server offers no SFTP ({_reason(exc)})") from exc

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file, or a folder recursively, to ``remote`` (created with its parents).

        A folder's contents land in ``remote`` itself; modes and modification times are kept.
        """
        local = Path(local)
        if not local.exists():
            raise HostError(f"{self.label}: {local} does not exist")
        target = _remote_path(remote)
        sftp = self._sftp()
        try:
            parent = str(PurePosixPath(target).parent)
            _sftp_makedirs(sftp, parent)
            if local.is_dir():
                folders = []
                for folder, dirs, files in os.walk(local, followlinks=True):
                    relative = Path(folder).relative_to(local)
                    # A symlink back up the tree: copying it would never end.
                    dirs[:] = [d for d in dirs if not _loops_back(local, relative / d)]
                    remote_folder = str(PurePosixPath(target, *relative.parts))
                    _sftp_makedirs(sftp, remote_folder)
                    folders.append((Path(folder), remote_folder))
                    for file_name in sorted(files):
                        source = Path(folder, file_name)
                        if source.is_file():
                            _sftp_put_file(sftp, source, f"{remote_folder}/{file_name}")
                # Modes last, deepest first: a read-only folder must not block its own files.
                for folder, remote_folder in reversed(folders):
                    sftp.chmod(remote_folder, stat.S_IMODE(folder.stat().st_mode))
            else:
                _sftp_put_file(sftp, local, target)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError(
                f"{self.label}: cannot copy {local} to {remote}: {_reason(exc)}"
            ) from exc
        finally:
            sftp.close()

    def get(self, remote: str, local: Path) -> None:
        """Copy a remote file, or a folder recursively, to ``local`` (created with its parents).

        Each file appears whole or not at all (written beside its target, then renamed). Modes
        are kept as permission bits only (``0o777``): a setuid or setgid bit set on the host
        never reaches this machine. The server's folder listings are not trusted: an entry whose
        name is not one plain file name (empty, ``.``, ``..``, or holding ``/`` or NUL) stops the
        copy with a HostError naming it, before anything is written for it; files copied before
        it stay.
        """
        local = Path(local)
        source = _remote_path(remote)
        sftp = self._sftp()
        try:
            try:
                attributes = sftp.stat(source)
            except FileNotFoundError:
                raise HostError(f"{self.label}: {remote} does not exist") from None
            local.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISDIR(attributes.st_mode or 0):
                local.mkdir(exist_ok=True)
                for remote_file, relative, file_attributes in _sftp_walk(sftp, source):
                    target = local.joinpath(*PurePosixPath(relative).parts)
                    if stat.S_ISDIR(file_attributes.st_mode or 0):
                        target.mkdir(parents=True, exist_ok=True)
                        os.chmod(target, ((file_attributes.st_mode or 0) & _COPIED_MODE_BITS) | 0o700)
                    else:
                        _sftp_get_file(sftp, remote_file, target, file_attributes)
            else:
                _sftp_get_file(sftp, source, local, attributes)
        except UnsafeRemoteName as exc:
            raise HostError(f"{self.label}: cannot copy {remote} to {local}: {exc}") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError(
                f"{self.label}: cannot copy {remote} to {local}: {_reason(exc)}"
            ) from exc
        finally:
            sftp.close()


class UnsafeRemoteName(HostError):
    """A remote folder listing named an entry that is not one plain file name."""


def check_remote_name(name: str, folder: str) -> str:
    """``name`` as listed in the remote ``folder``; UnsafeRemoteName unless it is one plain file name.

    A hostile or broken server could list ``..`` or ``a/../../x``; joined to a local path such a
    name would write outside the folder being copied into.
    """
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnsafeRemoteName(f"{folder} lists an entry named {name!r}, which is not a plain file name; refusing to copy it")
    return name


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """``mkdir -p`` over SFTP."""
    if path in ("", ".", "/"):
        return
    try:
        if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            return
        raise NotADirectoryError(20, "Not a directory", path)
    except FileNotFoundError:
        pass
    _sftp_makedirs(sftp, str(PurePosixPath(path).parent))
    try:
        sftp.mkdir(path)
    except OSError:
        # Another channel may have created it in the meantime.
        if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            raise


def _sftp_put_file(sftp: paramiko.SFTPClient, local: Path, remote: str) -> None:
    info = local.stat()
    sftp.put(str(local), remote, confirm=True)
    sftp.chmod(remote, stat.S_IMODE(info.st_mode))
    sftp.utime(remote, (info.st_atime, info.st_mtime))


def _sftp_get_file(
    sftp: paramiko.SFTPClient, remote: str, local: Path, attributes: paramiko.SFTPAttributes
) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".part", dir=local.parent)
    os.close(fd)
    try:
        sftp.get(remote, partial, max_concurrent_prefetch_requests=_PREFETCH_REQUESTS)
        os.chmod(partial, (attributes.st_mode or 0o644) & _COPIED_MODE_BITS)
        if attributes.st_mtime is not None:
            os.utime(partial, (attributes.st_atime or attributes.st_mtime, attributes.st_mtime))
        os.replace(partial, local)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _loops_back(root: Path, relative: Path) -> bool:
    """Whether folder ``root/relative`` is (through symlinks) one of its own ancestors."""
    real = os.path.realpath(root / relative)
    ancestors = [root, *(root / parent for parent in relative.parents if parent != Path("."))]
    return any(os.path.realpath(ancestor) == real for ancestor in ancestors)


def _sftp_walk(
    sftp: paramiko.SFTPClient, root: str, relative: str = "", ancestors: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, paramiko.SFTPAttributes]]:
    """Every folder and file under ``root``, parents before children.

    Symlinks are followed, except broken ones and links back to a folder being copied.
    """
    folder = f"{root}/{relative}" if relative else root
    ancestors = ancestors | {sftp.normalize(folder)}
    for entry in sorted(sftp.listdir_attr(folder), key=lambda e: e.filename):
        check_remote_name(entry.filename, folder)
        path = f"{folder}/{entry.filename}"
        child = f"{relative}/{entry.filename}" if relative else entry.filename
        attributes = entry
        if stat.S_ISLNK(entry.st_mode or 0):
            try:
                attributes = sftp.stat(path)
            except FileNotFoundError:
                continue
        if stat.S_ISDIR(attributes.st_mode or 0):
            if sftp.normalize(path) in ancestors:
                continue
            yield path, child, attributes
            yield from _sftp_walk(sftp, root, child, ancestors)
        elif stat.S_ISREG(attributes.st_mode or 0):
            yield path, child, attributes
