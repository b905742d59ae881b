"""Commands of this group; see DESIGN.md "Command line"."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
