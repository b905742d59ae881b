"""The measured-against-predicted plot of ``d2c profile show --plot``."""

from __future__ import annotations

import io
from pathlib import Path

from d2c.files import atomic_write_bytes
from profiler.profile_file import Profile


def plot_fit(profile: Profile, path: Path) -> None:
    """Write a PNG: each fitted run's measured wall time (contention removed) against the chosen model's prediction
    (log-log, with the y = x line), coloured by worker count. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = profile.model
    runs = [r for r in profile.runs if r.fitted]
    figure, axes = plt.subplots(figsize=(6, 5), dpi=100)
    worker_counts = sorted({r.workers for r in runs})
    colours = plt.get_cmap("viridis")
    for i, workers in enumerate(worker_counts):
        chosen = [r for r in runs if r.workers == workers]
        axes.scatter(
            [r.own_wall_s for r in chosen],
            [model.point(r.scale, r.workers) for r in chosen],
            color=colours(i / max(len(worker_counts) - 1, 1)),
            label=f"{workers:g} workers",
            s=28,
        )
    values = [r.own_wall_s for r in runs] + [model.point(r.scale, r.workers) for r in runs]
    low, high = min(values) * 0.8, max(values) * 1.25
    axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--", label="y = x")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("measured wall time, waiting for other work removed (s)")
    axes.set_ylabel("predicted wall time (s)")
    axes.set_title(f"{profile.app}: {model.name}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
