"""``--aws-profile NAME``: the AWS profile (``~/.aws/config``) a command uses, as every AWS tool spells it.

It sets ``AWS_PROFILE`` for the command, which boto3 reads (``d2c.aws``); without it boto3's own
``AWS_PROFILE`` / default profile apply. (``--profile-file`` names a profile.json, d2c's own file.)
"""

from __future__ import annotations

import os

import click


def _set_profile(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["AWS_PROFILE"] = value


aws_profile_option = click.option(
    "--aws-profile", metavar="NAME", default=None, expose_value=False, is_eager=True, callback=_set_profile,
    help="AWS profile from ~/.aws/config (default: AWS_PROFILE, else the default profile)",
)
