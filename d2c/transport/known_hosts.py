"""Host key pinning in OpenSSH's known_hosts format: trust on first use, refuse any change.

A host is named as OpenSSH names it: ``hostname`` on port 22, ``[hostname]:port`` otherwise. The
first key a host presents is appended to the file; afterwards a host must present one of the keys
pinned for it, or the connection is refused with :class:`HostKeyMismatch` naming the line to
remove if the change is expected. A changed key is never written over.

Plain and hashed (``|1|salt|hash``) host fields are read, with ``*``/``?`` wildcards and ``!``
negation. Marker lines (``@cert-authority``, ``@revoked``) are not used by d2c and are skipped.
This module does not import paramiko: keys are handled as (type, blob) pairs.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from d2c.errors import HostKeyMismatch, UsageError
from d2c.files import atomic_write_text

_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class PublicKey:
    """An SSH public key: its type name (``ssh-ed25519``, ``ssh-rsa``, ...) and its wire blob."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def line(self) -> str:
        """The key as ``type base64``, the middle of a known_hosts or authorized_keys line."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"


@dataclass(frozen=True)
class PinnedKey:
    """A key pinned for a host, with the file line (1-based) it came from."""

    key: PublicKey
    line_number: int


def parse_public_key(text: str) -> PublicKey:
    """Read an OpenSSH public key line (``type base64 [comment]``, as in a ``.pub`` file).

    A leading host field (a known_hosts line) is tolerated. Raises :class:`UsageError` when the
    text is not a public key.
    """
    fields = text.strip().split()
    for index in range(min(2, len(fields) - 1)):
        key_type, data = fields[index], fields[index + 1]
        if not (key_type.startswith(("ssh-", "ecdsa-", "sk-"))):
            continue
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            break
        if _blob_type(blob) == key_type:
            return PublicKey(key_type, blob)
        break
    raise UsageError(f"not an OpenSSH public key line: {text.strip()[:60]!r}")


def _blob_type(blob: bytes) -> str | None:
    """The type name encoded at the start of a key blob (an SSH string), if readable."""
    if len(blob) < 4:
        return None
    length = int.from_bytes(blob[:4], "big")
    if length > len(blob) - 4:
        return None
    return blob[4 : 4 + length].decode("ascii", errors="replace")


def host_entry(hostname: str, port: int) -> str:
    """The name OpenSSH files a host under: ``hostname`` on port 22, else ``[hostname]:port``."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _field_matches(field: str, entry: str) -> bool:
    """Whether a known_hosts host field (patterns joined by commas, or a hash) names ``entry``."""
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|")
            expected = hmac.new(base64.b64decode(salt), entry.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(expected, base64.b64decode(digest))
        except (ValueError, binascii.Error):
            return False
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], entry):
                return False
        elif _pattern_matches(pattern, entry):
            matched = True
    return matched


def _pattern_matches(pattern: str, entry: str) -> bool:
    """OpenSSH host patterns: ``*`` and ``?`` are wildcards, everything else (``[``!) is literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, entry, flags=re.IGNORECASE) is not None


class KnownHosts:
    """A known_hosts file: look up the keys pinned for a host, pin a new one."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def lookup(self, hostname: str, port: int) -> list[PinnedKey]:
        """Every key pinned for ``hostname:port``, in file order."""
        if not self.path.exists():
            return []
        entry = host_entry(hostname, port)
        pinned = []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith(("#", "@")):
                continue
            fields = line.split()
            if len(fields) < 3 or not _field_matches(fields[0], entry):
                continue
            try:
                key = PublicKey(fields[1], base64.b64decode(fields[2], validate=True))
            except (binascii.Error, ValueError):
                continue
            pinned.append(PinnedKey(key, number))
        return pinned

    def verify_or_pin(self, hostname: str, port: int, presented: PublicKey) -> bool:
        """Accept ``presented`` if pinned for the host, pin it if the host has no key yet.

        Returns True when the key was newly pinned. Raises :class:`HostKeyMismatch` when other
        keys are pinned for the host; the file is then left as it was.
        """
        if self._check(hostname, port, presented):
            return False
        with _WRITE_LOCK, self._file_lock():
            # Another process or thread may have pinned this host since the check above.
            if self._check(hostname, port, presented):
                return False
            existing = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            if existing and not existing.endswith("\n"):
                existing += "\n"
            line = f"{host_entry(hostname, port)} {presented.line()}\n"
            atomic_write_text(self.path, existing + line, mode=0o600)
        return True

    def _check(self, hostname: str, port: int, presented: PublicKey) -> bool:
        """True when ``presented`` is pinned; False when nothing is pinned; raises on a change."""
        pinned = self.lookup(hostname, port)
        if not pinned:
            return False
        if any(p.key == presented for p in pinned):
            return True
        numbers = [str(p.line_number) for p in pinned]
        where = f"line {numbers[0]}" if len(numbers) == 1 else f"lines {', '.join(numbers)}"
        types = "/".join(dict.fromkeys(p.key.key_type for p in pinned))
        raise HostKeyMismatch(
            f"ssh host key of {host_entry(hostname, port)} has changed: it now presents "
            f"{presented.key_type} {presented.fingerprint}, not the {types} key pinned at "
            f"{where} of {self.path}; connection refused. If the machine was rebuilt, remove "
            f"{'that line' if len(numbers) == 1 else 'those lines'} and retry"
        )

    def _file_lock(self) -> "_FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return _FolderLock(self.path.parent)


class _FolderLock:
    """An exclusive flock on the file's folder, so that processes pinning at once keep all lines.

    The file itself cannot carry the lock: each write replaces it with a new file.
    """

    def __init__(self, folder: Path):
        self._folder = folder
        self._fd: int | None = None

    def __enter__(self) -> "_FolderLock":
        self._fd = os.open(self._folder, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def check_expected(label: str, expected: PublicKey, presented: PublicKey) -> None:
    """Refuse a host that does not present exactly the key the caller was told to expect."""
    if presented != expected:
        raise HostKeyMismatch(
            f"{label}: ssh host key has changed: the host presented {presented.key_type} {presented.fingerprint}, but "
            f"{expected.key_type} {expected.fingerprint} was expected; connection refused"
        )
