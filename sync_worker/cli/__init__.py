"""The ``sync-worker`` command.

Subcommands live one per module (``dev``, ``try``, ``dead-letters`` ...), each a
click command registered on :data:`main` here.
"""

from __future__ import annotations

import click

from sync_worker.cli.dev import dev, try_contact


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """intercom-sync: keep Intercom contacts in step with the platform."""


main.add_command(dev)
main.add_command(try_contact)
