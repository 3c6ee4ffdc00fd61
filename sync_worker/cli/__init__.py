"""The ``sync-worker`` command.

Subcommands live one per module (``dead-letters``, ``resync``, ``halts``), each a
click command registered on :data:`main` here; ``dev`` and ``try`` are dev tooling
(:mod:`sync_worker.devtools.cli`), imported only when one of them is named (or the command
list is shown), so an operator command never loads the sandboxes. A missing required setting ends
any of them with one line naming the variable, and an unreachable Redis with one
line saying so, not a traceback.
"""

from __future__ import annotations

from typing import Any

import click
import redis as redis_lib
from kombu.utils.imports import symbol_by_name

from sync_worker.cli.deadletters import dead_letters
from sync_worker.cli.halts import halts
from sync_worker.cli.resync import resync
from sync_worker.config import MissingSetting

#: name -> ``module:attribute`` of the commands loaded when named (dev tooling)
LAZY_COMMANDS = {"dev": "sync_worker.devtools.cli:dev", "try": "sync_worker.devtools.cli:try_contact"}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            return symbol_by_name(LAZY_COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MissingSetting as missing:
            raise click.ClickException(str(missing)) from None
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as unreachable:
            raise click.ClickException(f"Redis (REDIS_URL) cannot be reached: {unreachable}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """intercom-sync: keep Intercom contacts in step with the platform."""


main.add_command(resync)
main.add_command(dead_letters)
main.add_command(halts)
