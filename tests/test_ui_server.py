"""``d2c ui`` over HTTP, without a browser: routes, exposure, read-only behaviour, missing files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from d2c.cli.ui.project import Project
from d2c.cli.ui.run_view import run_view
from d2c.cli.ui.server import Access, DashboardServer
from executor.journal import Journal
from executor.watchdog import DEFAULT_RESERVE_S
from planner.billing import BillingRules

REPO = Path(__file__).resolve().parents[1]


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.read().decode("utf-8"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8"), dict(error.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def in_process(ui_project):
    """A DashboardServer on a loopback port in this process; yields (server, base URL)."""
    servers = []

    def start(access: Access, project: Project | None = None):
        project = project or Project(ui_project.root, ui_project.state)
        server = DashboardServer(("127.0.0.1", 0), project, access)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_page_answers_and_nothing_is_written(ui_server, ui_project):
    before = _digest_tree(ui_project.root)
    pages = ["", "profile", "plans", "runs", f"runs/{ui_project.finished_run}", f"runs/{ui_project.live_run}", "static/dashboard.js"]
    for page in pages:
        status, body, headers = fetch(ui_server + page)
        assert status == 200, f"/{page}: {status} {body[:200]}"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and "script-src 'self'" in headers["Content-Security-Policy"]
        assert "http://" not in body.replace(ui_server, "").replace("http://www.w3.org/2000/svg", ""), f"/{page} refers to another site"
    status, body, _ = fetch(ui_server + f"runs/{ui_project.live_run}/live.json")
    live = json.loads(body)
    assert status == 200 and live["active"] is True and live["spent_usd"] > 0
    assert {"live-spend", "live-chart", "live-hosts", "live-log", "live-events"} <= set(live["fragments"])
    assert fetch(ui_server + "runs/no-such-run")[0] == 404
    assert fetch(ui_server + "nowhere")[0] == 404
    assert _digest_tree(ui_project.root) == before, "the dashboard only reads: no file, journal included, changed"


def test_refuses_other_host_names_and_methods(ui_server):
    status, body, _ = fetch(ui_server + "plans", headers={"Host": "attacker.example:8741"})
    assert status == 421 and "127.0.0.1" in body, "a page elsewhere cannot reach the dashboard through its own DNS name"
    assert fetch(ui_server + "plans", headers={"Host": "localhost:" + ui_server.rsplit(":", 1)[1].strip("/")})[0] == 200
    assert fetch(ui_server + "plans", method="PUT", data=b"x")[0] == 405
    assert fetch(ui_server + "plans", method="DELETE")[0] == 405


def test_actions_need_the_start_token_and_there_are_none(ui_server):
    status, body, _ = fetch(ui_server + "runs", method="POST", data=b"plan=1")
    assert status == 403 and "token" in body
    _, page, _ = fetch(ui_server + "plans")
    token = page.split('name="d2c-action-token" content="', 1)[1].split('"', 1)[0]
    assert len(token) >= 24
    status, body, _ = fetch(ui_server + "runs", method="POST", data=b"plan=1", headers={"X-D2C-Token": token, "Origin": "http://evil.example"})
    assert status == 403, "a POST from another page is refused even with the token"
    status, body, _ = fetch(ui_server + "runs", method="POST", data=b"plan=1", headers={"X-D2C-Token": token})
    assert status == 404 and "read-only" in body


def test_off_loopback_every_request_needs_the_printed_token(in_process):
    access = Access(loopback=False, access_token="s3cret-token-for-this-test")
    _, url = in_process(access)
    status, body, _ = fetch(url + "plans")
    assert status == 403 and "token" in body
    assert fetch(url + "plans?token=wrong")[0] == 403
    status, _, headers = fetch(url + "plans?token=s3cret-token-for-this-test")
    assert status == 303 and headers["Location"] == "/plans", "the token leaves the address bar"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, body, _ = fetch(url + "plans", headers={"Cookie": cookie.split(";", 1)[0]})
    assert status == 200 and "Plans for montecarlo" in body


def test_cli_prints_the_token_once_off_loopback_and_refuses_a_busy_port(ui_project, ui_server):
    port = ui_server.rsplit(":", 1)[1].strip("/")
    busy = subprocess.run([sys.executable, "-m", "d2c", "ui", "--no-browser", "--port", port], cwd=ui_project.root, env=ui_project.env(), capture_output=True, text=True, timeout=30)
    assert busy.returncode == 2 and busy.stderr.startswith(f"error: --port {port}: in use") and "Traceback" not in busy.stderr
    bad = subprocess.run([sys.executable, "-m", "d2c", "ui", "--no-browser", "--host", "203.0.113.9", "--port", "0"], cwd=ui_project.root, env=ui_project.env(), capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --host 203.0.113.9: cannot serve there")


def test_help_stays_fast_and_does_not_import_the_server():
    probe = "import sys, d2c.cli; print('d2c.cli.ui.server' in sys.modules, 'd2c.cli.ui.page_profile' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.stdout.split() == ["False", "False"]
    started = time.monotonic()
    help_text = subprocess.run([sys.executable, "-m", "d2c", "ui", "--help"], capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert help_text.returncode == 0 and "--no-browser" in help_text.stdout and "--host" in help_text.stdout
    assert time.monotonic() - started < 5


def test_an_empty_folder_shows_what_to_run_and_creates_nothing(in_process, tmp_path):
    project = Project(tmp_path, tmp_path / ".d2c")
    _, url = in_process(Access(loopback=True, access_token=None), project)
    expected = {"": "d2c init", "profile": "d2c profile", "plans": "d2c recommend", "runs": "no runs yet"}
    for page, hint in expected.items():
        status, body, _ = fetch(url + page)
        assert status == 200 and hint in body, f"/{page} says what to run"
    assert list(tmp_path.iterdir()) == [], "no state folder or journal is created by looking"


def test_a_broken_plans_file_is_one_line_on_the_page(in_process, ui_project, tmp_path):
    (tmp_path / "plans.json").write_text('{"version": 1, "inputs": {}}')
    project = Project(ui_project.root, ui_project.state, plans_path=tmp_path / "plans.json")
    _, url = in_process(Access(loopback=True, access_token=None), project)
    status, body, _ = fetch(url + "plans")
    assert status == 200 and "plans.json: inputs.deadline_s: missing; run &#x27;d2c recommend&#x27; again" in body and "Traceback" not in body


def test_spend_is_the_watchdogs_and_the_stop_line_keeps_its_reserve(ui_project):
    journal = Journal(ui_project.state / "journal.sqlite")
    record = journal.run(ui_project.live_run)
    now = time.time()
    view = run_view(record, journal, now=now)
    hourly = sum(h.price_usd_h for h in view.hosts if h.state == "running")
    assert view.spent_usd == pytest.approx(sum(h.cost_usd for h in view.hosts)), "no EBS or egress journaled: the hosts' billing alone"
    rules = BillingRules().for_region(record.region)
    public = [r for r in journal.resources(record.run_id, "instance") if r.live and r.details.get("public_address")]
    fleet_hourly = hourly + len(public) * rules.ipv4_usd_h
    assert view.reserve_usd == pytest.approx(fleet_hourly * DEFAULT_RESERVE_S / 3600 + record.details["output_gb"] * rules.egress_rate)
    assert view.stop_line_usd == pytest.approx(record.budget_usd - view.reserve_usd)
    spends = [usd for _, usd in view.series]
    assert spends == sorted(spends), "spend never goes down"
    assert spends[0] == 0.0 and spends[-1] == pytest.approx(view.spent_usd)
    later = run_view(record, journal, now=now + 600)
    assert later.spent_usd == pytest.approx(view.spent_usd + hourly * 600 / 3600, rel=1e-6)
