"""``--profile-file PATH``: the profile.json a command reads or appends to.

Every AWS tool reads ``--profile`` as an AWS profile, so d2c names its own file ``--profile-file``
(the AWS profile is ``--aws-profile``). The old spelling ``--profile PATH`` still works for one
release: it is hidden from ``--help`` and prints a one-line deprecation note on stderr. Giving both
is refused, since it is not clear which file was meant.
"""

from __future__ import annotations

from pathlib import Path

import click

_LEGACY = "d2c.legacy_profile"


def _remember_legacy(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        click.echo("note: '--profile' is now '--profile-file' (the old spelling goes in the next release)", err=True)
        ctx.meta[_LEGACY] = value


def _resolved(default: Path | None):
    def resolve(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        legacy = ctx.meta.get(_LEGACY)
        if legacy is not None and value is not None:
            raise click.UsageError("give '--profile-file' only ('--profile' is its old spelling)")
        return value if value is not None else legacy if legacy is not None else default

    return resolve


def profile_file_option(default: Path | None, help: str):
    """Decorate a command with ``--profile-file`` (into ``profile_path``) and its hidden old spelling."""
    path_type = click.Path(dir_okay=False, path_type=Path)

    def decorate(function):
        # The default is applied by the callback, so that an explicit value can be told from none.
        function = click.option("--profile-file", "profile_path", type=path_type, default=None,
                                help=f"{help}  [default: {default}]" if default is not None else help,
                                callback=_resolved(default))(function)
        # Eager, so its value is known before ``--profile-file`` resolves, wherever each stands on the line.
        return click.option("--profile", "legacy_profile_path", type=path_type, default=None, hidden=True,
                            expose_value=False, is_eager=True, callback=_remember_legacy)(function)

    return decorate
