"""Shared test set-up: every module in tests/fixtures/ is a pytest plugin of fixtures.

Fixture modules start real servers (sshd, moto, HTTP, network-namespace hosts); each area of the
code keeps its own module there so they can grow independently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, the reference data read in place (never copied into the project)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Keep every test's state and cache out of the user's home."""
    home = tmp_path_factory.mktemp("d2c-home")
    monkeypatch.setenv("D2C_HOME", str(home / "state"))
    monkeypatch.setenv("D2C_CACHE_DIR", str(home / "cache"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
