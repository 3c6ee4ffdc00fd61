"""``sync-worker halts [--json]``: the workspace-wide halts (:mod:`sync_worker.halts`), one line each.

Reads the service's Redis (:mod:`sync_worker.cli.common`), needs no Intercom or platform
credentials. Prints ``no halts`` when none is set. Exit status: 0 without halts, 1 with one or
more (so a check script can alert on it).
"""

from __future__ import annotations

import json

import click

from sync_worker.cli.common import redis_client
from sync_worker.halts import HaltStore


@click.command(name="halts")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per halt, one a line.")
def halts(as_json: bool) -> None:
    """Show what halts the sync for the whole workspace (a revoked token, a schema problem)."""
    found = HaltStore(redis_client(), wait_seconds=0).all()
    for halt in found:
        click.echo(json.dumps(halt.to_dict()) if as_json else halt.describe())
    if not found and not as_json:
        click.echo("no halts")
    raise SystemExit(1 if found else 0)
