"""Bringing a run's outputs home without ever leaving the output folder.

The app on the host is not trusted: it may leave ``out/home -> ../..``, ``out/keys -> /etc/ssh``,
``out/all -> /``, links that dangle or loop, FIFOs and devices. Fetching therefore never follows a
link. Every entry is looked at with ``lstat`` (SFTP ``LSTAT``/``READDIR``, whose attributes are
the link's own, or ``os.lstat`` for a rehearsal host):

* a folder is walked (links are never walked into, so nothing loops);
* a regular file is copied whole or not at all (written beside its target, then renamed), with
  permission bits only (``0o777``);
* a symbolic link is recreated as a link only when its target, read lexically from where the link
  sits, stays inside the output folder; otherwise it is skipped and named in the result (and so
  in the report). Dangling and looping links that stay inside are copied as the links they are;
* anything else (FIFO, socket, device) is skipped and named.

The path to the output itself is checked the same way from the work folder down: an output that
is, or lies under, a link is skipped rather than followed. On this side, a link left at a target
path (e.g. by an earlier fetch) is replaced, never written through.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from d2c.errors import HostError

COPIED_MODE_BITS = 0o777


@dataclass(frozen=True)
class Entry:
    """One remote directory entry as ``lstat`` sees it."""

    name: str
    mode: int
    size: int
    mtime: float | None


@dataclass
class Fetched:
    """What fetching one output did."""

    files: int = 0
    links: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """``<path relative to the work folder>: <why>`` for every entry not copied."""
    replaced: int = 0
    """Files that were already at their target (from an earlier run) and were replaced."""


class RemoteTree(Protocol):
    """The few file operations fetching needs, on one host."""

    def lstat(self, path: str) -> Entry:
        """The entry at ``path`` itself (a link is not followed); FileNotFoundError if none."""

    def listdir(self, path: str) -> list[Entry]:
        """The entries of folder ``path``, each as ``lstat`` sees it."""

    def readlink(self, path: str) -> str:
        """The target text of link ``path``."""

    def copy_file(self, path: str, local: Path) -> None:
        """Copy the regular file ``path`` to ``local`` (a new file)."""

    def close(self) -> None:
        """Release the connection."""


class LocalTree:
    """A rehearsal host's files (the host's folder on this machine)."""

    def __init__(self, resolve):
        self._resolve = resolve

    def lstat(self, path: str) -> Entry:
        info = os.lstat(self._resolve(path))
        return Entry(posixpath.basename(path), info.st_mode, info.st_size, info.st_mtime)

    def listdir(self, path: str) -> list[Entry]:
        folder = self._resolve(path)
        entries = []
        for name in sorted(os.listdir(folder)):
            info = os.lstat(folder / name)
            entries.append(Entry(name, info.st_mode, info.st_size, info.st_mtime))
        return entries

    def readlink(self, path: str) -> str:
        return os.readlink(self._resolve(path))

    def copy_file(self, path: str, local: Path) -> None:
        # O_NOFOLLOW: the file was a regular file at lstat time; a link swapped in since is refused.
        fd = os.open(self._resolve(path), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as source, open(local, "wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)

    def close(self) -> None:
        """Nothing to release."""


class SftpTree:
    """A host's files over SFTP (one channel on the host's SSH connection)."""

    def __init__(self, sftp, prefetch_requests: int):
        self._sftp = sftp
        self._prefetch = prefetch_requests

    def lstat(self, path: str) -> Entry:
        info = self._sftp.lstat(path)
        return Entry(posixpath.basename(path), info.st_mode or 0, info.st_size or 0, info.st_mtime)

    def listdir(self, path: str) -> list[Entry]:
        from d2c.transport.ssh import check_remote_name

        entries = []
        for item in sorted(self._sftp.listdir_attr(path), key=lambda e: e.filename):
            check_remote_name(item.filename, path)
            entries.append(Entry(item.filename, item.st_mode or 0, item.st_size or 0, item.st_mtime))
        return entries

    def readlink(self, path: str) -> str:
        return self._sftp.readlink(path) or ""

    def copy_file(self, path: str, local: Path) -> None:
        self._sftp.get(path, str(local), max_concurrent_prefetch_requests=self._prefetch)

    def close(self) -> None:
        self._sftp.close()


def open_tree(host) -> RemoteTree:
    """The RemoteTree of a LocalHost or an SSHHost."""
    from d2c.transport.local import LocalHost

    if isinstance(host, LocalHost):
        return LocalTree(host._resolve)
    from d2c.transport.ssh import PREFETCH_REQUESTS

    return SftpTree(host.open_sftp(), PREFETCH_REQUESTS)


def link_stays_inside(link_relative: str, target: str) -> bool:
    """Whether a link at ``link_relative`` (inside the output folder) pointing at ``target`` stays inside it.

    Read lexically, as a path: absolute targets leave; ``..`` may climb only as far as the
    output folder's top. The check does not depend on what exists, so a dangling or looping
    link inside passes and a link out is refused whether or not its target exists.
    """
    if not target or target.startswith("/") or "\0" in target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link_relative), target))
    return joined != ".." and not joined.startswith("../") and not posixpath.isabs(joined)


def per_run_target(local: Path, run_id: str, is_folder: bool) -> Path:
    """Where an output goes when runs share a project (``--allow-concurrent``): a folder output
    ``results`` lands in ``results/<run>/``, a file ``answer.txt`` in ``<run>/answer.txt`` beside it."""
    local = Path(local)
    return local / run_id if is_folder else local.parent / run_id / local.name


def fetch_output(tree: RemoteTree, workdir: str, remote: str, local: Path, *, per_run: str | None = None) -> tuple[Fetched, Path]:
    """Copy ``<workdir>/<remote>`` (a file or a folder) to ``local``, links and all, never leaving it.

    With ``per_run`` (a run id) the output goes to :func:`per_run_target` instead. Returns what
    was done and where it went.
    """
    result = Fetched()
    local = Path(local)
    # The work folder is d2c's; every component below it must be a real folder, not a link.
    parts = [p for p in remote.split("/") if p not in ("", ".")]
    path = workdir
    for depth, part in enumerate(parts):
        path = posixpath.join(path, part)
        try:
            entry = tree.lstat(path)
        except FileNotFoundError:
            raise HostError(f"{remote} does not exist") from None
        if stat.S_ISLNK(entry.mode):
            result.skipped.append(f"{posixpath.join(*parts[: depth + 1])}: a link ({_target(tree, path)}); outputs are never fetched through links")
            return result, local
    if per_run:
        local = per_run_target(local, per_run, stat.S_ISDIR(entry.mode))
    if stat.S_ISDIR(entry.mode):
        _make_dir(local)
        for relative, item in _walk(tree, path, ""):
            _copy_entry(tree, posixpath.join(path, relative), relative, item, local, result, remote)
    else:
        _copy_entry(tree, path, "", entry, local, result, remote)
    return result, local


def _walk(tree: RemoteTree, root: str, relative: str) -> Iterator[tuple[str, Entry]]:
    """Every entry under ``root``, parents first; links are listed, never entered."""
    folder = posixpath.join(root, relative) if relative else root
    for entry in tree.listdir(folder):
        child = posixpath.join(relative, entry.name) if relative else entry.name
        yield child, entry
        if stat.S_ISDIR(entry.mode):
            yield from _walk(tree, root, child)


def _copy_entry(tree: RemoteTree, path: str, relative: str, entry: Entry, local_root: Path, result: Fetched, remote: str) -> None:
    target = local_root.joinpath(*relative.split("/")) if relative else local_root
    shown = posixpath.join(remote, relative) if relative else remote
    if stat.S_ISDIR(entry.mode):
        _make_dir(target)
        target.chmod((entry.mode & COPIED_MODE_BITS) | 0o700)
    elif stat.S_ISREG(entry.mode):
        replaced = _clear(target)
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            tree.copy_file(path, Path(partial))
            os.chmod(partial, entry.mode & COPIED_MODE_BITS)
            if entry.mtime is not None:
                os.utime(partial, (entry.mtime, entry.mtime))
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        result.files += 1
        result.bytes += os.lstat(target).st_size
        result.replaced += replaced
    elif stat.S_ISLNK(entry.mode):
        link = tree.readlink(path)
        if not relative or not link_stays_inside(relative, link):
            result.skipped.append(f"{shown}: a link to {link!r}, outside the output folder; not copied")
            return
        result.replaced += _clear(target)
        os.symlink(link, target)
        result.links += 1
    else:
        result.skipped.append(f"{shown}: {_kind(entry.mode)}, not a file, folder or link; not copied")


def _make_dir(path: Path) -> None:
    """``mkdir`` that replaces a link or file in the way instead of following it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def _clear(target: Path) -> int:
    """Make room for a new entry at ``target``; 1 when a file or link was there (it is replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        if target.is_symlink():
            target.unlink()
        return 1
    if target.is_dir():
        raise HostError(f"{target} is a folder on this machine, where the output has a file; move it away and fetch again")
    return 0


def _target(tree: RemoteTree, path: str) -> str:
    try:
        return f"to {tree.readlink(path)!r}"
    except OSError:
        return "unreadable"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "an unknown kind of entry"
