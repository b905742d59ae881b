"""``d2c ui`` in a real browser: Debian's Chromium, driven by Selenium, against the real server.

The fixture project was made by the real commands (profile import, recommend, a local
rehearsal) plus a live run journaled through executor.journal. Each page is checked on what a
user sees in the rendered DOM, and screenshotted at 1280 and 390 CSS pixels wide (kept under
pytest's tmp folder and copied to /tmp/d2c-ui-shots).
"""

from __future__ import annotations

import re
import time

import pytest

from planner.plans import load_plans
from profiler.profile_file import load_profile
from tests.fixtures.ui import add_host, append_log, screenshot, serving

pytestmark = pytest.mark.integration

WIDTHS = (1280, 390)


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _wait_for(predicate, timeout: float = 15.0, what: str = "the page to change"):
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except StaleElementReferenceException:
            value = None  # a live page replaced the element between finding and reading it: look again
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _shots(driver, name: str, folder) -> None:
    for width in WIDTHS:
        path = screenshot(driver, name, width, folder)
        assert path.stat().st_size > 10_000, f"{path} looks empty"


def test_plans_page_shows_plan_one_whole_with_budget_and_deadline(browser, ui_server, ui_project, tmp_path):
    planset = load_plans(ui_project.root / "plans.json")
    first = planset.plan(1)
    browser.get(ui_server + "plans")
    table = _css(browser, "table#plans tbody tr")
    assert len(table) == len(planset.plans)
    row = table[0].text
    for allocation in first.roles:
        types = [e.text for e in table[0].find_elements("css selector", ".type")]
        assert allocation.instance_type in types, f"plan 1's type is shown whole: {types}"
    assert first.region in row and "d2c run --plan 1" in row
    longest = max((a.instance_type for p in planset.plans for a in p.roles), key=len)
    assert longest in browser.find_element("css selector", "table#plans").text, "no instance type is cut short"
    assert _css(browser, "#frontier-chart .marker.budget line"), "the budget line is drawn"
    assert _css(browser, "#frontier-chart .marker.deadline line"), "the deadline line is drawn"
    assert "budget $2.00" in browser.find_element("css selector", "#frontier-chart .marker.budget text").text
    assert len(_css(browser, "#frontier-chart circle.point")) == len(planset.plans)
    assert len(_css(browser, "#frontier-chart line.whisker")) >= 2 * len(planset.plans)
    assert not _css(browser, "form.rehearse"), "a read-only dashboard offers no action"
    inputs = browser.find_element("css selector", "#inputs").text
    assert "$2.00" in inputs and "30m" in inputs and "matches profile.json" in inputs
    assert re.search(r"\d+ (hours|days) old", inputs), "the catalog's age is in view"
    _shots(browser, "plans", tmp_path)


def test_profile_page_draws_model_band_and_measured_range(browser, ui_server, ui_project, tmp_path):
    browser.get(ui_server + "profile")
    bands = _css(browser, "#runtime-chart path.band")
    assert {b.get_attribute("data-workers") for b in bands} == {"1", "2", "4"}, "a p50-p90 band per worker count"
    assert all(len(b.get_attribute("d")) > 100 for b in bands), "each band is a drawn area, not an empty path"
    assert len(_css(browser, "#runtime-chart path.line.model")) == 3
    assert len(_css(browser, "#runtime-chart circle.measured")) == 24, "every imported run is a dot"
    assert _css(browser, "#runtime-chart .span.measured-range rect")
    assert "full scale 1" in browser.find_element("css selector", "#runtime-chart .marker.full-scale text").text
    model = load_profile(ui_project.root / "profile.json").model
    chosen = browser.find_element("css selector", "#candidates tr.chosen").text
    assert model.name in chosen and "chosen" in chosen
    assert len(_css(browser, "#candidates tbody tr")) == len(model.candidates)
    assert model.name in browser.find_element("css selector", "#why-model").text
    memory_lines = [e.text for e in _css(browser, "#memory-chart .marker.instance-mem text")]
    assert any("GiB" in t for t in memory_lines), f"instance memories are marked: {memory_lines}"
    _shots(browser, "profile", tmp_path)


def test_finished_run_shows_predicted_against_actual(browser, ui_server, ui_project, tmp_path):
    browser.get(ui_server + "runs")
    listing = browser.find_element("css selector", "table#runs").text
    assert ui_project.finished_run in listing and ui_project.live_run in listing
    browser.get(ui_server + f"runs/{ui_project.finished_run}")
    rows = browser.find_element("css selector", "#predicted-actual").text
    assert "launch to teardown" in rows and "(simulated)" in rows
    assert _css(browser, "#time-vs-plan .span.predicted rect") and _css(browser, "#time-vs-plan .marker.now")
    assert "succeeded" in browser.find_element("css selector", "h1").text + browser.page_source
    planned = {a.instance_type for a in load_plans(ui_project.root / "plans.json").plans[0].roles}
    hosts = browser.find_element("css selector", "#hosts").text
    assert "master-1" in hosts and all(name in hosts for name in planned), "each host with its instance type"
    assert not _css(browser, "#run-title[data-live-url]"), "a finished run is not polled"
    _shots(browser, "run-finished", tmp_path)
    browser.get(ui_server + "runs")
    _shots(browser, "runs", tmp_path)
    browser.get(ui_server)
    _shots(browser, "overview", tmp_path)


def test_live_run_spend_updates_as_the_journal_grows(browser, ui_server, ui_project, tmp_path):
    browser.get(ui_server + f"runs/{ui_project.live_run}")
    assert _css(browser, "#spend-chart .marker.budget line") and _css(browser, "#spend-chart .marker.stop line")
    assert _css(browser, "#spend-chart .marker.deadline line")
    assert "running" in browser.find_element("css selector", "#hosts").text
    before = float(browser.find_element("id", "spent").text.lstrip("$").replace(",", ""))
    assert before > 0
    _shots(browser, "run-live", tmp_path)

    # A replacement host joins (as after a spot interruption) with five minutes of billing behind it.
    add_host(ui_project, "master", 2, "c7i.48xlarge", 8.568, launched_at=time.time() - 300)
    append_log(ui_project, ["batch 6: replacement host joined"])
    ui_project.journal().event(ui_project.live_run, "replaced", "master-2 joined the run")

    def spent_now():
        value = float(browser.find_element("id", "spent").text.lstrip("$").replace(",", ""))
        return value if value > before + 0.5 else None

    after = _wait_for(spent_now, what="the spend to include the new host")
    assert after > before + 0.5
    _wait_for(lambda: "master-2" in browser.find_element("id", "hosts").text, what="the new host in the hosts table")
    _wait_for(lambda: "replacement host joined" in browser.find_element("id", "live-log").text, what="the log tail")
    assert "master-2 joined the run" in browser.find_element("id", "events").text
    _shots(browser, "run-live-updated", tmp_path)


def test_rehearsal_started_from_the_plans_page_is_followed_to_its_report(browser, rehearsal_project, tmp_path):
    with serving(rehearsal_project.root, rehearsal_project.env(), "--allow-rehearsal") as url:
        browser.get(url + "plans")
        browser.find_element("id", "rehearse-1").click()
        _wait_for(lambda: "/runs/" in browser.current_url, timeout=20, what="the new run's page")
        run_id = browser.current_url.rsplit("/", 1)[1]
        assert run_id.startswith("montecarlo-")
        report = _wait_for(lambda: _css(browser, "#predicted-actual"), timeout=90, what="the finished run's report")
        assert "launch to teardown" in report[0].text
        _shots(browser, "run-rehearsed", tmp_path)
        runs = rehearsal_project.journal().runs()
        assert [(r.run_id, r.state, r.provider) for r in runs] == [(run_id, "finished", "local")]
        assert runs[0].outcome == "succeeded", f"the rehearsal {runs[0].outcome}: {runs[0].message}"
        assert f"{runs[0].outcome}" in browser.find_element("css selector", "section.card").text
