"""The plot of ``d2c profile show --plot``: runtime against scale, measured and predicted, out to the full scale.

What a researcher asks of a profile is "how long will the real run take, and how sure is that?",
so the plot shows, on log-log axes of input scale and wall seconds:

* the measured runs (their own wall time: time spent waiting for CPUs busy with other work
  removed, which is what the model fits), one colour per worker count; runs on the real fleet
  (imported or calibration runs) as squares;
* the chosen model's p50 as a line per worker count from the smallest measured scale to the
  full scale, with its p50-p90 band (the residual bootstrap of profiler.model);
* the measured range of scales shaded, so the extrapolation beyond it is plain to see, and the
  full scale marked with each line's p50-p90 there (the p90 edge of each band dashed).

:func:`fit_figure` builds the figure (tests read its data); :func:`plot_fit` writes it as a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from d2c.files import atomic_write_bytes
from profiler.profile_file import Profile

CURVE_POINTS = 60
# Colour-blind-safe and dark enough on white (Okabe & Ito, "Color Universal Design"), no yellow.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000")


def workers_label(workers: float) -> str:
    """``1 worker``, ``4 workers``, ``2.5 workers`` (effective workers of a cloud run)."""
    return f"{workers:g} worker" + ("" if workers == 1 else "s")


def _seconds_pair(p50: float, p90: float) -> str:
    """``36 s (p90 41)``, ``15.7 min (p90 16.0)``, ``2.1 h (p90 2.4)``: a band's ends in one unit."""
    if p90 < 600:
        return f"{p50:.0f} s (p90 {p90:.0f})"
    unit, size = ("min", 60) if p90 < 7200 else ("h", 3600)
    return f"{p50 / size:.1f} {unit} (p90 {p90 / size:.1f})"


def fit_figure(profile: Profile):
    """The matplotlib Figure of ``profile``'s fit (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    model = profile.model
    runs = [r for r in profile.runs if r.fitted]
    desktop = [r for r in runs if r.instance_type is None]
    worker_counts = sorted({r.workers for r in desktop})
    scales = [r.scale for r in runs]
    low, high = min(scales), max(scales)
    full = profile.full_scale
    grid = np.geomspace(low, max(full, high), CURVE_POINTS)

    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=100)
    axes.axvspan(low, high, color="0.92", zorder=0, label=f"measured scales {low:g}-{high:g}")
    axes.axvline(full, color="0.35", linestyle=":", linewidth=1.2, zorder=1)
    for i, workers in enumerate(worker_counts):
        colour = COLOURS[i % len(COLOURS)]
        estimates = [model.runtime(float(s), workers) for s in grid]
        p50 = np.array([e.p50 for e in estimates])
        p90 = np.array([e.p90 for e in estimates])
        axes.fill_between(grid, p50, p90, color=colour, alpha=0.15, linewidth=0, gid=f"band-{workers:g}")
        axes.plot(grid, p50, color=colour, linewidth=1.8, label=f"{workers_label(workers)}: model p50, band to p90", gid=f"p50-{workers:g}")
        axes.plot(grid, p90, color=colour, linewidth=0.8, linestyle="--", gid=f"p90-{workers:g}")
        measured = [r for r in desktop if r.workers == workers]
        axes.scatter([r.scale for r in measured], [r.own_wall_s for r in measured], color=colour, edgecolor="white", linewidth=0.6, s=36, zorder=3,
                     gid=f"measured-{workers:g}")
        at_full = model.runtime(full, workers)
        axes.annotate(_seconds_pair(at_full.p50, at_full.p90), (full, at_full.p50), textcoords="offset points",
                      xytext=(5, 0), va="center", fontsize=8, color=colour)
    cloud = [r for r in runs if r.instance_type is not None]
    if cloud:
        axes.scatter([r.scale for r in cloud], [r.own_wall_s for r in cloud], marker="s", facecolor="none", edgecolor="black", s=40, zorder=3,
                     label="runs on EC2 (effective workers)", gid="measured-cloud")
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    axes.set_xticks(sorted({*scales, full}))
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_formatter(plain)
    axes.set_xlim(low / 1.3, max(full, high) * 1.6)
    axes.set_xlabel(f"input scale (full scale = {full:g}, dotted line)")
    axes.set_ylabel("wall time (s), waiting for other work removed")
    axes.set_title(f"{profile.app}: runtime against scale, model {model.name} fitted to {len(runs)} runs")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def plot_fit(profile: Profile, path: Path) -> None:
    """Write :func:`fit_figure` of ``profile`` as a PNG at ``path``, atomically."""
    import matplotlib.pyplot as plt

    figure = fit_figure(profile)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
