"""What the dashboard reads: the project's d2c.yaml, profile.json, plans.json, journal and reports.

Every file is read through the loader its owner provides (``d2c.descriptor``,
``profiler.profile_file``, ``planner.plans``, ``executor.journal``, ``executor.report``), and
again only when its modification time or size changed, so a page always shows the files as they
are now. A file that is missing or invalid is not an error here: the page shows the loader's
one-line message instead. Nothing is ever written: the journal is opened read-only
(SQLite ``mode=ro``), and not at all when it does not exist yet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from d2c.errors import D2CError
from executor.journal import JOURNAL_NAME, Journal

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A file's content, or the one line saying why there is none."""

    value: T | None
    problem: str | None = None


class Project:
    """The project in ``root`` with its state folder ``state``."""

    def __init__(self, root: Path, state: Path, *, plans_path: Path | None = None, profile_path: Path | None = None):
        self.root = Path(root)
        self.state = Path(state)
        self.plans_path = plans_path or self.root / "plans.json"
        self.profile_path = profile_path or self.root / "profile.json"
        self.descriptor_path = self.root / "d2c.yaml"
        self._cache: dict[tuple[str, Path], tuple[tuple[int, int], Loaded]] = {}
        self._lock = threading.Lock()

    def _cached(self, kind: str, path: Path, load: Callable[[Path], Any]) -> Loaded:
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (-1, -1)
        with self._lock:
            hit = self._cache.get((kind, path))
            if hit is not None and hit[0] == key:
                return hit[1]
        try:
            loaded = Loaded(load(path))
        except D2CError as exc:
            loaded = Loaded(None, exc.message)
        except (ValueError, OSError) as exc:
            loaded = Loaded(None, f"{path}: cannot be read ({exc})")
        with self._lock:
            self._cache[(kind, path)] = (key, loaded)
        return loaded

    def descriptor(self) -> Loaded:
        """d2c.yaml (a ``d2c.descriptor.Descriptor``)."""
        from d2c.descriptor import load_descriptor

        return self._cached("descriptor", self.descriptor_path, load_descriptor)

    def name(self) -> str:
        """The app's name, or the folder's when the descriptor cannot be read."""
        descriptor = self.descriptor().value
        return descriptor.name if descriptor is not None else self.root.name

    def profile(self) -> Loaded:
        """profile.json (a ``profiler.profile_file.Profile``)."""
        from profiler.profile_file import load_profile

        return self._cached("profile", self.profile_path, load_profile)

    def plans(self, path: Path | None = None) -> Loaded:
        """plans.json, or another plans file a run was made from (a ``planner.plans.PlanSet``)."""
        from planner.plans import load_plans

        return self._cached("plans", Path(path) if path else self.plans_path, load_plans)

    def journal(self) -> Journal | None:
        """The run journal, or None before the first run."""
        path = self.state / JOURNAL_NAME
        return Journal(path, read_only=True) if path.is_file() else None

    def report(self, run_dir: Path) -> Loaded:
        """A run's report.json as a dict (problem set while the run has none)."""
        from executor.report import REPORT_NAME, load_report

        def load(path: Path) -> dict[str, Any]:
            return load_report(path.parent)

        return self._cached("report", Path(run_dir) / REPORT_NAME, load)
