"""fit.png and frontier.png answer a researcher's questions: read from the figures' data, not pixels."""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from planner.frontier_plot import frontier_figure, same_spot_groups, time_unit  # noqa: E402
from planner.plans import load_plans  # noqa: E402
from profiler.fit_plot import fit_figure, workers_label  # noqa: E402
from profiler.profile_file import load_profile  # noqa: E402
from tests.fixtures.terminal import run_d2c  # noqa: E402


@pytest.fixture(scope="module")
def profile(fitted_project):
    return load_profile(fitted_project / "profile.json")


def by_gid(axes, prefix):
    return [artist for artist in axes.get_children() if (artist.get_gid() or "").startswith(prefix)]


def test_fit_plot_runs_the_model_out_to_the_full_scale_per_worker_count(profile):
    figure = fit_figure(profile)
    try:
        axes = figure.axes[0]
        low, high = axes.get_xlim()
        assert low < 0.05 and high > profile.full_scale, "the scale axis reaches past the full scale"
        assert axes.get_xscale() == "log" and "scale" in axes.get_xlabel()
        lines = {line.get_gid(): line for line in by_gid(axes, "p50-")}
        assert sorted(lines) == ["p50-1", "p50-2", "p50-4", "p50-8"]
        for workers, line in zip((1, 2, 4, 8), (lines[f"p50-{w}"] for w in (1, 2, 4, 8))):
            xs, ys = line.get_xdata(), line.get_ydata()
            assert xs[0] == pytest.approx(0.05) and xs[-1] == pytest.approx(profile.full_scale)
            assert ys[-1] == pytest.approx(profile.model.runtime(profile.full_scale, workers).p50, rel=1e-6)
        # T = 3 + 40 s + 1800 s / w: at full scale 1 worker takes about 1843 s, 8 workers about 268 s.
        assert lines["p50-1"].get_ydata()[-1] == pytest.approx(1843, rel=0.1)
        assert lines["p50-8"].get_ydata()[-1] == pytest.approx(268, rel=0.1)
        bands = by_gid(axes, "band-")
        assert len(bands) == 4 and all(isinstance(b, PolyCollection) for b in bands)
        vertices = bands[0].get_paths()[0].vertices
        assert vertices[:, 1].max() >= lines["p50-1"].get_ydata().max(), "the band reaches up to p90, above the p50 line"
        measured = by_gid(axes, "measured-")
        assert sum(len(m.get_offsets()) for m in measured) == len(profile.runs) == 24, "every measured run is a dot"
        spans = [p for p in axes.patches if p.get_label().startswith("measured scales")]
        assert len(spans) == 1
        x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
        assert (x0, x1) == (pytest.approx(0.05), pytest.approx(0.2)), "the measured range is shaded"
        labels = [t.get_text() for t in axes.get_legend().get_texts()]
        assert "1 worker: model p50, band to p90" in labels and not any("1 workers" in t for t in labels)
        assert profile.app in axes.get_title()
    finally:
        plt.close(figure)


def test_worker_labels_are_singular_for_one():
    assert [workers_label(w) for w in (1, 2, 2.5)] == ["1 worker", "2 workers", "2.5 workers"]


def test_profile_show_writes_the_png(fitted_project, tmp_path):
    done = run_d2c(fitted_project, "profile", "show", "--plot", str(tmp_path / "fit.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planset(fitted_project, tmp_path_factory):
    out = tmp_path_factory.mktemp("plans")
    done = run_d2c(fitted_project, "recommend", "--budget", "2", "--deadline", "0:30:00", "--catalog", "catalog.csv",
                   "-o", str(out / "plans.json"), "--plot", str(out / "frontier.png"))
    assert done.returncode == 0, done.stderr
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return load_plans(out / "plans.json")


def test_time_unit_suits_the_plans():
    assert [time_unit(s)[0] for s in (45, 300, 3 * 3600 - 1, 5 * 3600, 4 * 86400)] == ["seconds", "minutes", "minutes", "hours", "days"]


def test_frontier_plot_whiskers_run_from_p50_to_p90_under_the_budget_rule(planset):
    figure = frontier_figure(planset, ())
    try:
        axes = figure.axes[0]
        assert "minutes" in axes.get_xlabel(), "minutes-long plans are not put on an hours axis"
        title = axes.get_title(loc="left")
        assert title.startswith(f"{planset.descriptor}: ") and planset.catalog_fetched_at[:10] in title
        budget = [line for line in axes.get_lines() if list(line.get_ydata()) == [planset.budget_usd, planset.budget_usd]]
        assert budget, "the budget line is drawn at the budget"
        deadline = [line for line in axes.get_lines() if list(line.get_xdata()) == [30.0, 30.0]]
        assert deadline, "the 30-minute deadline is drawn at 30 on the minutes axis"
        groups = same_spot_groups(planset.plans)
        drawn = {c.get_label(): c for c in axes.containers if c.get_label().startswith("_plan-")}
        assert len(drawn) == len(groups)
        first = planset.plan(1)
        container = drawn[next(gid for gid in drawn if gid.split("-")[1] == "1")]
        (x,), (y,) = container.lines[0].get_xdata(), container.lines[0].get_ydata()
        assert (x, y) == (pytest.approx(first.time_s.p50 / 60), pytest.approx(first.cost_usd.p50))
        xbar, ybar = container.lines[2]
        horizontal = xbar.get_segments()[0]
        vertical = ybar.get_segments()[0]
        assert horizontal[1][0] == pytest.approx(first.time_s.p90 / 60) and vertical[1][1] == pytest.approx(first.cost_usd.p90)
        assert all(p.cost_usd.p90 <= planset.budget_usd for p in planset.plans), "the tips of the cost whiskers stay under the budget line"
        key = figure.axes[1].texts[0].get_text()
        assert "#1" in key and f"{first.roles[0].instance_type}" in key
    finally:
        plt.close(figure)


def test_plans_on_one_spot_are_labelled_once(planset):
    from dataclasses import replace

    first = planset.plan(1)
    twin = replace(first, rank=len(planset.plans) + 1, region="eu-west-1")
    doubled = replace(planset, plans=(*planset.plans, twin))
    groups = same_spot_groups(doubled.plans)
    assert [p.rank for p in groups[0]] == [1, twin.rank]
    figure = frontier_figure(doubled, ())
    try:
        labels = [t.get_text() for t in figure.axes[0].texts]
        assert f"#1,#{twin.rank}" in labels and "#1" not in labels
    finally:
        plt.close(figure)
