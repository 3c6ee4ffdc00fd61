"""The ``sync-worker`` command.

Subcommands live one per module (``dev``, ``try``, ``dead-letters`` ...), each a
click command registered on :data:`main` here. A missing required setting ends
any of them with one line naming the variable, and an unreachable Redis with one
line saying so, not a traceback.
"""

from __future__ import annotations

from typing import Any

import click
import redis as redis_lib

from sync_worker.cli.deadletters import dead_letters
from sync_worker.cli.dev import dev, try_contact
from sync_worker.cli.halts import halts
from sync_worker.cli.resync import resync
from sync_worker.config import MissingSetting


class _Group(click.Group):
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


main.add_command(dev)
main.add_command(try_contact)
main.add_command(resync)
main.add_command(dead_letters)
main.add_command(halts)
