"""Where d2c keeps its state: runs, journals, keys, pinned host keys, and the catalog cache.

The state directory is ``.d2c/`` beside the descriptor, so each project keeps its own runs;
``D2C_HOME`` overrides it (tests and users with a read-only project folder). The cache directory
(prices, which are the same for every project) follows the XDG convention; ``D2C_CACHE_DIR``
overrides it.

Everything d2c keeps in the state directory is private to the user: folders 0700, files 0600
(:func:`private_dir`; files are written with an explicit mode), whatever the umask — the
journal names hosts and addresses, the run folders hold keys, logs and the app's outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

DESCRIPTOR_NAME = "d2c.yaml"


def state_dir(project_dir: Path | None = None, *, create: bool = True) -> Path:
    """Return the state directory for the project in ``project_dir`` (default: the cwd)."""
    override = os.environ.get("D2C_HOME")
    path = Path(override) if override else (project_dir or Path.cwd()) / ".d2c"
    if create:
        private_dir(path)
    return path


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed and make it 0700; returns it."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def cache_dir() -> Path:
    """Return the user-wide cache directory (catalog prices)."""
    override = os.environ.get("D2C_CACHE_DIR")
    if override:
        path = Path(override)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "d2c"
    path.mkdir(parents=True, exist_ok=True)
    return path


def known_hosts_path(project_dir: Path | None = None) -> Path:
    """The file where SSH host keys are pinned on first use (OpenSSH known_hosts format)."""
    return state_dir(project_dir) / "known_hosts"


def runs_dir(project_dir: Path | None = None) -> Path:
    """The folder holding one sub-folder per run (keys, logs, outputs, journal)."""
    return private_dir(state_dir(project_dir) / "runs")
