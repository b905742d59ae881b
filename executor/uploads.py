"""Copying the app and its inputs to many hosts at once, several SFTP streams per host.

One SFTP channel is limited by its window and round trips, not by the link, so the files bound
for one host are split (largest first, onto the least loaded stream) across ``streams``
connections that copy concurrently; every host is served at the same time.

What of an app folder is uploaded: every file except the controller's own state and caches
(``.d2c``, ``__pycache__``, ``.git``), the outputs' local folders, and what the folder's
``.d2cignore`` and the descriptor's ``exclude:`` list name. Both use gitignore syntax (patterns
relative to the app folder, ``dir/`` for folders, ``!`` to re-include, ``**`` across folders),
matched by pathspec's GitIgnoreSpec, which follows git's own rules
(https://git-scm.com/docs/gitignore#_pattern_format).
"""

from __future__ import annotations

import posixpath
import shlex
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from d2c.errors import HostError, UsageError
from d2c.transport.base import Host

DEFAULT_STREAMS = 4
IGNORE_FILE = ".d2cignore"


@dataclass(frozen=True)
class FileCopy:
    """One file to copy: its local path, its absolute remote path and its size."""

    local: Path
    remote: str
    size: int


def ignore_spec(folder: Path, patterns: Sequence[str] = ()):
    """The files of ``folder`` not to upload: its ``.d2cignore`` lines, then ``patterns`` (later lines win, as in git)."""
    import pathspec

    lines: list[str] = []
    ignore_file = Path(folder) / IGNORE_FILE
    if ignore_file.is_file():
        try:
            lines += ignore_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{ignore_file}: not a text file; write one gitignore pattern per line") from None
    lines += list(patterns)
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{ignore_file if ignore_file.is_file() else 'exclude'}: bad pattern ({exc}); use gitignore syntax, e.g. '*.png' or 'results/'") from None


def plan_copies(pairs: list[tuple[Path, str]], exclude: tuple[Path, ...] = (), patterns: Sequence[str] = ()) -> list[FileCopy]:
    """Expand (local file or folder, remote path) pairs into single-file copies.

    Files under ``exclude`` (e.g. where earlier runs' outputs landed inside the app folder) are left
    out, and so are a folder's files its ``.d2cignore`` or ``patterns`` match.
    """
    copies = []
    for local, remote in pairs:
        local = Path(local)
        if local.is_dir():
            ignored = ignore_spec(local, patterns)
            for path in sorted(local.rglob("*")):
                if not path.is_file():
                    continue
                relative = path.relative_to(local)
                if _skipped(relative) or ignored.match_file(relative.as_posix()) or any(path.is_relative_to(e) for e in exclude):
                    continue
                copies.append(FileCopy(path, posixpath.join(remote, relative.as_posix()), path.stat().st_size))
        elif local.is_file():
            copies.append(FileCopy(local, remote, local.stat().st_size))
        else:
            raise HostError(f"{local} does not exist; it is named in the descriptor's inputs")
    return copies


def _skipped(relative: Path) -> bool:
    """The controller's own state and Python caches are not part of the app."""
    return any(part in (".d2c", "__pycache__", ".git") for part in relative.parts)


def split_streams(copies: list[FileCopy], streams: int) -> list[list[FileCopy]]:
    """Greedy balance by bytes: each file, largest first, goes to the lightest stream."""
    buckets: list[list[FileCopy]] = [[] for _ in range(max(1, streams))]
    loads = [0] * len(buckets)
    for copy in sorted(copies, key=lambda c: c.size, reverse=True):
        lightest = loads.index(min(loads))
        buckets[lightest].append(copy)
        loads[lightest] += copy.size
    return [bucket for bucket in buckets if bucket]


def upload(
    open_hosts: dict[str, Callable[[], Host]],
    pairs: dict[str, list[tuple[Path, str]]],
    *,
    streams: int = DEFAULT_STREAMS,
    on_bytes: Callable[[int], None] | None = None,
    exclude: tuple[Path, ...] = (),
    patterns: Sequence[str] = (),
) -> int:
    """Copy ``pairs[name]`` to each host ``name`` (``open_hosts[name]()`` makes a connection).

    Returns the bytes copied. Remote folders are created first, in one command per host. When
    one stream fails (or ``on_bytes`` raises, e.g. to stop at the budget), the others stop after
    the file they are copying.
    """
    jobs: list[tuple[Callable[[], Host], list[FileCopy]]] = []
    for name, host_pairs in pairs.items():
        copies = plan_copies(host_pairs, exclude, patterns)
        if not copies:
            continue
        folders = sorted({posixpath.dirname(c.remote) for c in copies})
        host = open_hosts[name]()
        try:
            result = host.run("mkdir -p " + " ".join(shlex.quote(f) for f in folders), timeout=60)
            if not result.ok:
                raise HostError(f"{host.name}: cannot create {folders[0]}: {result.stderr_tail}")
        finally:
            host.close()
        jobs.extend((open_hosts[name], bucket) for bucket in split_streams(copies, streams))

    failed = threading.Event()

    def copy_bucket(job: tuple[Callable[[], Host], list[FileCopy]]) -> int:
        make_host, bucket = job
        host = make_host()
        sent = 0
        try:
            for copy in bucket:
                if failed.is_set():
                    break
                host.put(copy.local, copy.remote)
                sent += copy.size
                if on_bytes:
                    on_bytes(copy.size)
        except BaseException:
            failed.set()
            raise
        finally:
            host.close()
        return sent

    if not jobs:
        return 0
    with ThreadPoolExecutor(max_workers=min(len(jobs), 16)) as pool:
        return sum(pool.map(copy_bucket, jobs))


def total_bytes(pairs: dict[str, list[tuple[Path, str]]], exclude: tuple[Path, ...] = (), patterns: Sequence[str] = ()) -> int:
    """The bytes :func:`upload` will copy for ``pairs``."""
    return sum(c.size for host_pairs in pairs.values() for c in plan_copies(host_pairs, exclude, patterns))
