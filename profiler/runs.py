"""One measured run of the app, as profile.json stores it and the model consumes it.

Memory-bound runs are recognised from the host's memory and the run's working set
(profiler.model). A desktop run's host is the profiling host; a cloud run's is one instance of
its type, whose memory the importer or the calibration passes in (``host_memory_mb``, read from
the catalog by the command line layer). The working set comes from the per-worker peak RSS when
it was recorded; otherwise from ``input_mb``, assuming the input is held in memory once, split
evenly over the run's hosts (a documented guess: apps that stream their input need far less,
apps that copy it per worker more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from profiler.model import Observation

SOURCES = ("profile", "import", "calibration")
STATUSES = ("ok", "partial")
CLOUD_WEIGHT = 5.0
"""A run on the real fleet (imported or calibration) counts as much as this many desktop runs:
it measures the target itself, with no mapping of cores in between."""
MAX_CONTENTION = 0.9
"""Beyond this the run says too little about the app: at most a tenfold correction."""


@dataclass(frozen=True)
class RunRecord:
    """A run at ``scale`` with ``workers`` effective desktop-core workers.

    ``wall_s`` is the wall time measured; the model fits ``own_wall_s``, which removes the time
    the run waited for CPUs taken by other work (``contention``, see profiler.sampling), since
    the cloud hosts are the app's alone. ``status`` is ``partial`` for a run killed at the time box: its wall time is a lower bound,
    kept for the record but not fitted. ``summary`` holds the sampled process-tree figures
    (:class:`profiler.sampling.SampleSummary` as a dict) for profiled runs.
    """

    scale: float
    workers: float
    wall_s: float
    repeat: int = 1
    source: str = "profile"
    status: str = "ok"
    exit_status: int | None = 0
    instance_type: str | None = None
    count: int | None = None
    peak_rss_mb: float | None = None
    """Peak RSS per worker, MB."""
    master_rss_mb: float | None = None
    input_mb: float | None = None
    contention: float | None = None
    """Share of runnable time spent waiting for CPUs busy with other work (profiled runs)."""
    host_memory_mb: float | None = None
    """Memory of one instance of ``instance_type`` (cloud runs), MB."""
    summary: dict[str, Any] | None = None

    @property
    def fitted(self) -> bool:
        """True when the run enters the model fit."""
        return self.status == "ok"

    @property
    def own_wall_s(self) -> float:
        """The wall time with waiting for other work's CPU use taken out."""
        return self.wall_s * (1.0 - min(self.contention or 0.0, MAX_CONTENTION))

    def observation(self, host_memory_mb: float | None) -> Observation:
        """The run as the model sees it; ``host_memory_mb`` applies to runs on the profiling host."""
        return Observation(
            scale=self.scale,
            workers=self.workers,
            wall_s=self.own_wall_s,
            worker_rss_mb=self.peak_rss_mb,
            master_rss_mb=self.master_rss_mb,
            host_memory_mb=host_memory_mb if self.instance_type is None else self.host_memory_mb,
            weight=1.0 if self.instance_type is None else CLOUD_WEIGHT,
            hosts=self.count or 1,
            working_set_mb=None if self.input_mb is None else self.input_mb / (self.count or 1),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (None fields dropped)."""
        data = {
            "scale": self.scale,
            "workers": self.workers,
            "wall_s": round(self.wall_s, 4),
            "repeat": self.repeat,
            "source": self.source,
            "status": self.status,
            "exit_status": self.exit_status,
            "instance_type": self.instance_type,
            "count": self.count,
            "peak_rss_mb": self.peak_rss_mb,
            "master_rss_mb": self.master_rss_mb,
            "input_mb": self.input_mb,
            "contention": self.contention,
            "host_memory_mb": self.host_memory_mb,
            "summary": self.summary,
        }
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        """Rebuild from ``to_dict`` (KeyError/TypeError/ValueError if malformed)."""
        record = cls(
            scale=float(data["scale"]),
            workers=float(data["workers"]),
            wall_s=float(data["wall_s"]),
            repeat=int(data.get("repeat", 1)),
            source=str(data.get("source", "profile")),
            status=str(data.get("status", "ok")),
            exit_status=data.get("exit_status"),
            instance_type=data.get("instance_type"),
            count=None if data.get("count") is None else int(data["count"]),
            peak_rss_mb=None if data.get("peak_rss_mb") is None else float(data["peak_rss_mb"]),
            master_rss_mb=None if data.get("master_rss_mb") is None else float(data["master_rss_mb"]),
            input_mb=None if data.get("input_mb") is None else float(data["input_mb"]),
            contention=None if data.get("contention") is None else float(data["contention"]),
            host_memory_mb=None if data.get("host_memory_mb") is None else float(data["host_memory_mb"]),
            summary=data.get("summary"),
        )
        if record.source not in SOURCES or record.status not in STATUSES:
            raise ValueError(f"run has unknown source {record.source!r} or status {record.status!r}")
        for name in ("scale", "workers", "wall_s", "peak_rss_mb", "master_rss_mb", "input_mb", "contention", "host_memory_mb"):
            value = getattr(record, name)
            if value is not None and not (math.isfinite(value) and value >= 0 and (value > 0 or name not in ("scale", "workers"))):
                raise ValueError(f"runs: {name} = {value!r} must be a finite number{' > 0' if name in ('scale', 'workers') else ' >= 0'}")
        if record.count is not None and record.count < 1 or record.repeat < 1:
            raise ValueError(f"runs: count = {record.count!r} and repeat = {record.repeat!r} must be at least 1")
        return record
