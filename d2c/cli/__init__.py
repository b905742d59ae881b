"""The face of d2c: the ``d2c`` command and its sub-commands.

Each command group lives in a module of its own here; only this package imports the profiler,
planner and executor, and it does so inside the commands so that ``d2c --help`` stays instant.
"""

from __future__ import annotations

import os
import sys

import click

from d2c import __version__
from d2c.cli import catalog_cmds, check_cmd, image_cmds, init_cmd, predict_cmd, profile_cmds, recommend_cmd, run_cmds, status_cmd
from d2c.cli.ui import command as ui_command
from d2c.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, D2CError

_MODULES = (init_cmd, check_cmd, profile_cmds, predict_cmd, catalog_cmds, recommend_cmd, run_cmds, status_cmd, image_cmds, ui_command)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="d2c")
def cli() -> None:
    """d2c — Desktop to Cloud.

    Profile your parallel app where it runs now, choose EC2 capacity that meets your budget and
    deadline, and run it there with a watchdog that stops before the money runs out.

    \b
    Typical session:
      d2c init                         scaffold d2c.yaml for your app
      d2c profile                      measure it at small scales (a few minutes)
      d2c recommend --budget 50 --deadline 3h
      d2c run --plan 1                 provision, run, fetch outputs, tear down
    """


for _module in _MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command line, turning every known error into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="d2c", standalone_mode=False)
        sys.stdout.flush()
    except D2CError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        context = getattr(exc, "ctx", None)
        where = f"{context.command_path}: " if context is not None else ""
        click.echo(f"error: {where}{exc.format_message()} (see --help)", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not a failure of d2c. Point stdout at devnull so
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("D2C_DEBUG"):
            raise
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (set D2C_DEBUG=1 for a traceback)", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(EXIT_OK)
