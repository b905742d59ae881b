"""``d2c ui``: serve the dashboard of the project in the current folder."""

from __future__ import annotations

import errno
import ipaddress
import os
import sys
import threading
from pathlib import Path

import click
from d2c.cli.profile_file_option import profile_file_option

from d2c.errors import UsageError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def has_display() -> bool:
    """True where a browser window can open (a desktop session, macOS, Windows); without one,
    Python's webbrowser would start a text browser inside this terminal instead."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=8741, show_default=True, help="port to serve on (0: any free port)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind; any but loopback is served only with a token printed once at start")
@click.option("--no-browser", is_flag=True, help="do not open a browser window")
@click.option("--plans", "plans_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("plans.json"), show_default=True)
@profile_file_option(Path("profile.json"), help="the profile to show")
@click.option("--allow-rehearsal", is_flag=True, help="offer a button per plan that rehearses it here ('d2c run --provider local')")
def ui_cmd(port: int, host: str, no_browser: bool, plans_path: Path, profile_path: Path, allow_rehearsal: bool) -> None:
    """Open the local dashboard: profile, plans and runs of the project here (read-only)."""
    from d2c.cli.ui.actions import ACTIONS
    from d2c.cli.ui.project import Project
    from d2c.cli.ui.server import DashboardServer, new_access, serve
    from d2c.state import state_dir

    root = Path.cwd()
    loopback = is_loopback(host)
    access = new_access(loopback)
    project = Project(root, state_dir(root, create=False), plans_path=root / plans_path, profile_path=root / profile_path)
    try:
        server = DashboardServer((host, port), project, access, ACTIONS if allow_rehearsal else None)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: in use (another 'd2c ui'?); try --port 0 for any free port") from None
        raise UsageError(f"--host {host}: cannot serve there ({exc.strerror or exc}); the default is 127.0.0.1") from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.port}/"
    if access.access_token:
        url += f"?token={access.access_token}"
        click.echo(f"d2c ui: {project.name()} at {url}")
        click.echo("d2c ui: whoever has this link can read the dashboard; it is shown only now")
    else:
        mode = "rehearsals allowed" if allow_rehearsal else "read-only"
        click.echo(f"d2c ui: {project.name()} at {url} ({mode}; Ctrl-C stops)")
    if not no_browser:
        if has_display():
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        else:
            click.echo(f"d2c ui: no display here; open it in a browser (ssh -L {server.port}:127.0.0.1:{server.port})")
    serve(server)


COMMANDS = (ui_cmd,)
