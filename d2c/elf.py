"""Which CPU architecture the compiled programs in an app folder need.

An app that is only a folder may hold programs built on the desktop (``make`` before ``d2c
run``); those only run on instances of the same architecture, so the planner must not offer
Graviton machines for an x86-64 binary or the reverse.
"""

from __future__ import annotations

import os
from pathlib import Path

_ELF_MAGIC = b"\x7fELF"
# e_machine values from the ELF specification (System V ABI).
_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}
_SKIPPED_DIRS = {".git", ".d2c", "__pycache__", "node_modules", ".venv", "venv"}
MAX_FILES = 5000


def elf_architecture(path: Path) -> str | None:
    """The architecture of an ELF file (``x86_64`` or ``arm64``), or None for anything else."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or not header.startswith(_ELF_MAGIC):
        return None
    byteorder = "little" if header[5] == 1 else "big"
    return _MACHINES.get(int.from_bytes(header[18:20], byteorder))


def folder_architectures(folder: Path) -> set[str]:
    """Architectures of the executable ELF files under ``folder`` (the first MAX_FILES files)."""
    found: set[str] = set()
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        for name in files:
            seen += 1
            if seen > MAX_FILES:
                return found
            path = Path(root, name)
            if os.access(path, os.X_OK) or name.endswith((".so", ".o")):
                arch = elf_architecture(path)
                if arch:
                    found.add(arch)
    return found
