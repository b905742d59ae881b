"""Folder apps that hold compiled programs are planned only on their architecture."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from d2c.descriptor import load_descriptor
from d2c.elf import elf_architecture, folder_architectures
from planner.recommend import default_arch

REPO = Path(__file__).resolve().parents[1]


def test_python_interpreter_is_recognised_as_this_machines_architecture():
    expected = {"x86_64": "x86_64", "aarch64": "arm64"}.get(__import__("platform").machine())
    assert elf_architecture(Path(sys.executable).resolve()) == expected


def test_an_arm64_header_is_recognised(tmp_path):
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + (2).to_bytes(2, "little") + (0xB7).to_bytes(2, "little")
    (tmp_path / "solver").write_bytes(header + b"\x00" * 64)
    (tmp_path / "solver").chmod(0o755)
    (tmp_path / "notes.txt").write_text("\x7fELF is not at the start of this")
    assert folder_architectures(tmp_path) == {"arm64"}


@pytest.mark.skipif(shutil.which("mpicc") is None, reason="mpicc (libopenmpi-dev) is not installed")
def test_a_built_mpi_app_is_kept_on_x86(tmp_path):
    app = tmp_path / "mpi_pi"
    shutil.copytree(REPO / "examples" / "mpi_pi", app)
    descriptor = load_descriptor(app)
    assert default_arch(descriptor) is None, "a folder with only sources runs anywhere"

    subprocess.run(["make", "-s"], cwd=app, check=True, capture_output=True)

    assert default_arch(descriptor) == elf_architecture(Path(sys.executable).resolve())
