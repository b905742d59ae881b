"""The content digest that names an imported image, so an unchanged image is never uploaded twice.

The digest is SHA-256 over the bytes of the files that make up the image, the VM chosen from an
appliance (two VMs of one .ova are two AMIs), the public key baked into it (a different key is a
different AMI), the dead-man bound baked into it, and the version of the edit recipe (a changed
recipe gives a different AMI).

The dead-man bound is content: an AMI whose timer powers off after 2 h must not be reused by a
run whose budget allows 40 min. So an AMI is reused only by an import with the same image, VM,
key and bound — in practice by a resumed run or a second import within one run (the run's key is
already per run); a new run with a new bound imports afresh, and AMIs tagged ``d2c:run`` go away
with ``d2c down``. Since an AMI is only ever registered after its boot rehearsal passed, a reused
AMI has been booted once already and is not rehearsed again. Hashing gigabytes takes seconds, so results are cached in the user
cache folder keyed by each file's path, size, inode and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from d2c.files import atomic_write_json
from d2c.state import cache_dir

RECIPE_VERSION = "2"
_CHUNK = 4 * 2**20


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``'s bytes, cached by (path, size, inode, mtime)."""
    path = Path(path).resolve()
    info = path.stat()
    key = f"{path}|{info.st_size}|{info.st_ino}|{info.st_mtime_ns}"
    cache_file = cache_dir() / "image-digests.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    atomic_write_json(cache_file, cache)
    return cache[key]


def image_digest(files: tuple[Path, ...], public_key: str | None = None, *, vm: str | None = None, deadman_s: int | None = None) -> str:
    """The digest tagged on an AMI (``d2c:digest``) for VM ``vm`` of the image made of ``files``, with ``public_key`` and the dead-man bound baked in."""
    digest = hashlib.sha256(f"d2c-image-recipe-{RECIPE_VERSION}\n".encode())
    for path in files:
        digest.update(f"{os.path.basename(path)}:{file_sha256(path)}\n".encode())
    if vm is not None:
        digest.update(f"vm:{vm}\n".encode())
    digest.update(f"key:{(public_key or '').strip()}\n".encode())
    if deadman_s is not None:
        digest.update(f"deadman:{int(deadman_s)}\n".encode())
    return digest.hexdigest()
