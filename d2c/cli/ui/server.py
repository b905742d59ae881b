"""The dashboard's HTTP server: the standard library's threading server, GET pages, guarded POSTs.

Exposure is kept as small as a local tool's can be:

* it binds to 127.0.0.1 unless ``--host`` says otherwise; on loopback it answers only requests
  whose ``Host`` header names the loopback address (a web page elsewhere cannot reach it through
  a DNS name pointed at 127.0.0.1);
* on any other address every request must carry the access token made at start (``?token=`` once,
  then an HttpOnly, SameSite=Strict cookie);
* pages only read; a POST must carry the action token made at start (``X-D2C-Token`` header or
  ``token`` form field) and come from the dashboard's own origin, and there are no actions unless
  the server is given some (``d2c ui --allow-rehearsal``: :mod:`d2c.cli.ui.actions`);
* responses forbid framing, outside scripts and outside connections (Content-Security-Policy).
"""

from __future__ import annotations

import hmac
import json
import secrets
import socket
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from d2c.cli.ui import page_home, page_plans, page_profile, page_runs
from d2c.cli.ui.actions import ActionResult
from d2c.cli.ui.html import notice, page
from d2c.cli.ui.project import Project

COOKIE = "d2c_ui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

Action = Callable[[Project, dict[str, list[str]]], ActionResult]
"""A POST handler: the project and the form fields in, a status, a line and where to go out."""


@dataclass(frozen=True)
class Access:
    """Who may use the dashboard."""

    loopback: bool
    access_token: str | None
    """Required on every request when not on loopback."""
    action_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Required on every POST."""


def new_access(loopback: bool) -> Access:
    """Fresh tokens for one start of the server."""
    return Access(loopback=loopback, access_token=None if loopback else secrets.token_urlsafe(24))


class DashboardServer(ThreadingHTTPServer):
    """Serves one project's dashboard."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], project: Project, access: Access, actions: dict[str, Action] | None = None):
        self.project = project
        self.access = access
        self.actions = dict(actions or {})
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, DashboardHandler)

    @property
    def port(self) -> int:
        """The port bound (useful with port 0)."""
        return self.server_address[1]


class DashboardHandler(BaseHTTPRequestHandler):
    """One request: check access, route, answer."""

    server: DashboardServer
    server_version = "d2c-ui"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the standard library's name
        """Keep the terminal quiet; errors are shown in the page."""

    # -- answering ------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, status: int, title: str, body: str, here: str) -> None:
        document = page(title, body, here=here, project=self.server.project.name(), scripts=("/static/dashboard.js",), action_token=self.server.access.action_token)
        self._send(status, document.encode("utf-8"), "text/html; charset=utf-8")

    def _plain(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    # -- access ---------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if not self.server.access.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        return host in {f"{name}:{self.server.port}" for name in LOOPBACK_NAMES} or host in LOOPBACK_NAMES

    def _token_ok(self, query: dict[str, list[str]]) -> bool | str:
        """True when allowed; the token itself when it came in the query (to be moved to a cookie)."""
        expected = self.server.access.access_token
        if expected is None:
            return True
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given, expected):
            return given
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        morsel = cookie.get(COOKIE)
        return bool(morsel and hmac.compare_digest(morsel.value, expected))

    def _admit(self) -> tuple[str, dict[str, list[str]]] | None:
        """The path and query of an admitted request; None when refused (already answered)."""
        if not self._host_ok():
            self._plain(HTTPStatus.MISDIRECTED_REQUEST, "d2c ui answers only at http://127.0.0.1:PORT/ (the Host header named another site)")
            return None
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        allowed = self._token_ok(query)
        if not allowed:
            self._plain(HTTPStatus.FORBIDDEN, "this dashboard needs the link with the token that 'd2c ui' printed when it started")
            return None
        if isinstance(allowed, str) and self.command in ("GET", "HEAD"):
            self._send(
                HTTPStatus.SEE_OTHER,
                b"",
                "text/plain",
                {"Location": parts.path or "/", "Set-Cookie": f"{COOKIE}={allowed}; HttpOnly; SameSite=Strict; Path=/"},
            )
            return None
        return unquote(parts.path) or "/", query

    # -- methods --------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        admitted = self._admit()
        if admitted is None:
            return
        path, _ = admitted
        try:
            self._route(path.rstrip("/") or "/")
        except Exception as exc:  # noqa: BLE001 - a page must never take the server down
            self._html(HTTPStatus.INTERNAL_SERVER_ERROR, "Error", "<h1>Something went wrong</h1>" + notice(f"internal error: {type(exc).__name__}: {exc}"), "")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        admitted = self._admit()
        if admitted is None:
            return
        path, _ = admitted
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(min(length, 64 * 1024)).decode("utf-8", errors="replace")) if length else {}
        given = self.headers.get("X-D2C-Token") or (form.get("token") or [""])[0]
        origin = self.headers.get("Origin")
        host = self.headers.get("Host") or ""
        if not given or not hmac.compare_digest(given, self.server.access.action_token):
            self._plain(HTTPStatus.FORBIDDEN, "an action needs the token of this start of 'd2c ui' (reload the page)")
            return
        if origin is not None and urlsplit(origin).netloc != host:
            self._plain(HTTPStatus.FORBIDDEN, "an action must come from the dashboard's own page")
            return
        action = self.server.actions.get(path)
        if action is None:
            self._plain(HTTPStatus.NOT_FOUND, "no such action: this dashboard is read-only")
            return
        result = action(self.server.project, form)
        if result.location:
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": result.location})
            return
        self._html(result.status, "Not done", "<h1>Not done</h1>" + notice(result.message), "")

    def _refuse_method(self) -> None:
        self._plain(HTTPStatus.METHOD_NOT_ALLOWED, "d2c ui only shows pages (GET) and takes actions by POST")

    do_PUT = do_DELETE = do_PATCH = _refuse_method

    # -- routes ---------------------------------------------------------------------------------

    def _route(self, path: str) -> None:
        project = self.server.project
        token = self.server.access.action_token if "/actions/rehearse" in self.server.actions else None
        pages = {
            "/": page_home.render,
            "/profile": page_profile.render,
            "/plans": lambda p: page_plans.render(p, rehearse_token=token),
            "/runs": page_runs.render_list,
        }
        if path in pages:
            title, body = pages[path](project)
            self._html(HTTPStatus.OK, title, body, path)
            return
        if path == "/static/dashboard.js":
            script = resources.files("d2c.cli.ui").joinpath("static/dashboard.js").read_bytes()
            self._send(HTTPStatus.OK, script, "text/javascript; charset=utf-8")
            return
        if path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return
        segments = path.split("/")
        if len(segments) in (3, 4) and segments[1] == "runs":
            run_id = segments[2]
            if len(segments) == 4 and segments[3] == "live.json":
                self._live(run_id)
                return
            if len(segments) == 3:
                rendered = page_runs.render_run(project, run_id)
                if rendered is not None:
                    self._html(HTTPStatus.OK, rendered[0], rendered[1], "/runs")
                    return
                self._html(HTTPStatus.NOT_FOUND, "No such run", "<h1>No such run</h1>" + notice(f"no run {run_id!r} in this project's journal; see the list of runs"), "/runs")
                return
        self._html(HTTPStatus.NOT_FOUND, "Not found", "<h1>Not found</h1>" + notice(f"nothing at {path}"), "")

    def _live(self, run_id: str) -> None:
        project = self.server.project
        journal = project.journal()
        record = next((r for r in journal.runs() if r.run_id == run_id), None) if journal is not None else None
        if record is None:
            self._send(HTTPStatus.NOT_FOUND, json.dumps({"error": f"no run {run_id!r}"}).encode(), "application/json")
            return
        payload = page_runs.live_fragments(project, journal, record)
        self._send(HTTPStatus.OK, json.dumps(payload).encode("utf-8"), "application/json")


def serve(server: DashboardServer) -> None:
    """Serve until interrupted (Ctrl-C), then close the socket."""
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("d2c ui: stopped", file=sys.stderr)
    finally:
        server.server_close()
