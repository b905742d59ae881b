"""Reading a runs CSV (``d2c profile import``): a user's record of past runs.

Columns (DESIGN.md): required ``scale``, ``workers``, ``wall_s``; optional ``instance_type``,
``count``, ``peak_rss_mb`` (per worker), ``input_mb``, ``repeat``. A row with an
``instance_type`` ran on ``count`` (default 1) EC2 instances of that type; its ``workers`` are
converted to effective desktop-core workers with :func:`profiler.fleet.instance_capacity`: the
workers started (at most one per vCPU of the fleet) times the per-vCPU speed, and it records one
instance's memory (to recognise runs that did not fit, see profiler.runs). The caller passes the
instance facts as a mapping ``type -> (family, arch, vcpus, memory MB)`` so that this module
needs no catalog. A type whose family has no speed basis (profiler.fleet) is refused. Every problem is one UsageError line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping

from d2c.errors import UsageError
from profiler.fleet import instance_capacity
from profiler.runs import RunRecord

REQUIRED = ("scale", "workers", "wall_s")
OPTIONAL = ("instance_type", "count", "peak_rss_mb", "input_mb", "repeat")

LIMITS = {
    "scale": 1e6,
    "workers": 1e6,
    "wall_s": 365 * 24 * 3600.0,
    "count": 1000,
    "peak_rss_mb": 64 * 1024 * 1024.0,
    "input_mb": 1e9,
    "repeat": 1000,
}
"""The largest value each column may hold: far above any real run (a million workers, a year of
wall time, 64 TiB per worker), low enough that a typo such as 10^20 workers is refused, not fitted."""

InstanceFacts = Mapping[str, tuple]
"""Instance type -> (family, arch, vcpus, memory MB); the memory may be left out."""


def read_instance_types(path: Path) -> set[str]:
    """The instance types named in the CSV (for the caller to look up), without validating rows."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row["instance_type"].strip() for row in csv.DictReader(handle) if (row.get("instance_type") or "").strip()}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


def parse_runs_csv(path: Path, instances: InstanceFacts, host_speed: float) -> list[RunRecord]:
    """Validate the CSV at ``path`` into run records (UsageError on the first problem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such runs CSV; give a CSV with columns {', '.join(REQUIRED)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the runs CSV ({exc}); save it as UTF-8 text") from None
    try:
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise UsageError(f"{path}: not a valid CSV ({exc})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}; the header needs {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")
    records = []
    for index, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        records.append(_record(path, index, row, instances, host_speed))
    if not records:
        raise UsageError(f"{path}: no runs; add one row per measured run under the header")
    worker_counts = {round(r.workers, 6) for r in records}
    if len(worker_counts) < 2:
        raise UsageError(f"{path}: every run has {records[0].workers:g} effective workers; add runs with another worker count so the model can tell how the app scales")
    return records


def _number(path: Path, line: int, row: dict[str, str], column: str, *, required: bool, whole: bool = False) -> float | None:
    text = row.get(column, "")
    if not text:
        if required:
            raise UsageError(f"{path}: line {line}: {column} is empty; every run needs {', '.join(REQUIRED)}")
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{path}: line {line}: {column} = {text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise UsageError(f"{path}: line {line}: {column} is {text}; give a finite number")
    if value < 0 or (value == 0 and column in ("scale", "workers", "wall_s", "count")):
        raise UsageError(f"{path}: line {line}: {column} = {text} must be positive")
    if value > LIMITS[column]:
        raise UsageError(f"{path}: line {line}: {column} = {text} is above the largest plausible value {LIMITS[column]:g}; check the row")
    if whole and value != int(value):
        raise UsageError(f"{path}: line {line}: {column} = {text} must be a whole number")
    return value


def _record(path: Path, line: int, row: dict[str, str], instances: InstanceFacts, host_speed: float) -> RunRecord:
    scale = _number(path, line, row, "scale", required=True)
    workers = _number(path, line, row, "workers", required=True)
    wall = _number(path, line, row, "wall_s", required=True)
    count = _number(path, line, row, "count", required=False, whole=True)
    repeat = _number(path, line, row, "repeat", required=False, whole=True)
    instance_type = row.get("instance_type") or None
    effective = workers
    if instance_type is not None:
        if instance_type not in instances:
            raise UsageError(f"{path}: line {line}: instance_type {instance_type!r} is not in the instance catalog; check the name (e.g. c5.xlarge) or run 'd2c catalog refresh'")
        family, arch, vcpus = instances[instance_type][:3]
        memory_mb = instances[instance_type][3] if len(instances[instance_type]) > 3 else None
        fleet = int(count or 1)
        capacity = instance_capacity(instance_type, arch, vcpus, host_speed)
        if not capacity.known:
            raise UsageError(f"{path}: line {line}: instance_type {instance_type!r}: {capacity.basis}; its runs cannot be converted to workers")
        effective = min(workers, fleet * vcpus) * capacity.speed
    elif count is not None and count != 1:
        raise UsageError(f"{path}: line {line}: count = {count:g} without an instance_type; name the instance type of a cloud run")
    else:
        memory_mb = None
    return RunRecord(
        scale=scale,
        workers=round(effective, 6),
        wall_s=wall,
        repeat=int(repeat or 1),
        source="import",
        instance_type=instance_type,
        count=None if instance_type is None else int(count or 1),
        peak_rss_mb=_number(path, line, row, "peak_rss_mb", required=False),
        input_mb=_number(path, line, row, "input_mb", required=False),
        host_memory_mb=memory_mb,
    )
