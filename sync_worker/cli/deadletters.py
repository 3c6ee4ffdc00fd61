"""``sync-worker dead-letters``: list, inspect, replay and purge parked contacts.

- ``sync-worker dead-letters list [--limit N] [--offset N] [--json]``: newest failure first;
- ``sync-worker dead-letters show ID [--json]``: one entry, with what a replay would send;
- ``sync-worker dead-letters retry ID``: queue the contact's sync again on
  the realtime queue (the worker re-reads the platform); the entry goes only once the
  replay is stored, so a failed replay leaves it parked;
- ``sync-worker dead-letters retry --all [--wait]``: start a replay run of every parked contact
  (:mod:`sync_worker.replayruns`, carried out by the workers); ``--wait`` waits for its end and
  reports it; ``sync-worker dead-letters replays [RUN_ID] [--json]``: a run's progress;
- ``sync-worker dead-letters purge [--yes]``: forget every entry (asks first).

The same operations as ``/v1/admin/dead-letters`` (:mod:`web.admin`), on the same
:class:`~sync_worker.deadletter.DeadLetterStore`. It talks to the service's Redis
directly (``REDIS_URL``, else the running dev stack's: :mod:`sync_worker.cli.common`) and
needs no Intercom or platform credentials. The list shows contact ids,
not emails (``show`` prints the stored email: it is what a replay uses). Exit
status: 0; 1 when an id is unknown or a replay could not be stored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from kombu.exceptions import OperationalError

from sync_worker import replayruns
from sync_worker.cli.common import celery_app, integration_option, redis_client
from sync_worker.deadletter import DeadLetter, DeadLetterStore
from sync_worker.dispatch import QueueUnavailable, enqueue_replay

WAIT_POLL_SECONDS = 0.5


def _store() -> DeadLetterStore:
    return DeadLetterStore(redis_client())


def _replayer() -> Any:
    """The ``enqueue`` callback for the store: a replay through the worker's Celery app."""
    client, app = redis_client(), celery_app()
    return lambda kwargs: enqueue_replay(kwargs, client, app)


def _row(entry: DeadLetter) -> str:
    failed = entry.last_failed_at.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{entry.id:<40}  {entry.attempts:>3}  {failed}  {entry.trigger:<13}  {entry.error_code}"


@click.group(name="dead-letters")
def dead_letters() -> None:
    """Contacts whose sync failed for good: list, show, retry, purge."""


@dead_letters.command(name="list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@integration_option
def list_entries(limit: int, offset: int, as_json: bool, integration: str | None) -> None:
    """The parked contacts, newest failure first (of one integration with ``--integration``)."""
    store = _store()
    entries = store.list(offset, limit, integration=integration)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_dict()))
        return
    total = store.count(integration=integration)
    if not entries:
        click.echo(f"no dead letters{' on this page' if total else ''} ({total} in all)")
        return
    click.echo(f"{'id':<40}  {'n':>3}  {'last failure':<20}  {'trigger':<13}  error")
    for entry in entries:
        click.echo(_row(entry))
    click.echo(f"{len(entries)} shown of {total}")


@dead_letters.command()
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(entry_id: str, as_json: bool) -> None:
    """One parked contact: its error, attempts, times and what a replay sends."""
    entry = _store().get(entry_id)
    if entry is None:
        raise click.ClickException(f"no dead letter {entry_id}")
    document = entry.to_dict()
    if as_json:
        click.echo(json.dumps(document))
        return
    for name in ("id", "contact_id", "email", "error_code", "error_message", "attempts"):
        click.echo(f"{name:<16} {document[name]}")
    for name in ("first_failed_at", "last_failed_at", "trigger"):
        click.echo(f"{name:<16} {document[name]}")
    click.echo(f"{'replay sends':<16} {json.dumps(document['kwargs'], sort_keys=True)}")


@dead_letters.command()
@click.argument("entry_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every parked contact (a background run).")
@click.option("--wait", is_flag=True, help="With --all: wait for the run to end and report it.")
def retry(entry_id: str | None, replay_all: bool, wait: bool) -> None:
    """Queue ENTRY_ID's sync again (or every one with --all: a replay run the workers carry out,
    see ``replays``); the worker re-reads the platform."""
    if replay_all == bool(entry_id):
        raise click.UsageError("give one ENTRY_ID or --all")
    if replay_all:
        try:
            run = replayruns.start(redis_client(), celery_app(), "cli")
        except OperationalError as unavailable:
            raise click.ClickException(f"not started, nothing replayed: {unavailable}") from None
        click.echo(f"replay run {run.id} queued: {run.total} parked")
        if wait:
            _report(_wait_for(run.id))
        return
    store, enqueue = _store(), _replayer()
    assert entry_id is not None
    try:
        found = store.replay(entry_id, enqueue)
    except QueueUnavailable as unavailable:
        raise click.ClickException(f"not replayed, the entry stays: {unavailable}") from None
    if not found:
        raise click.ClickException(f"no dead letter {entry_id}")
    click.echo(f"replayed {entry_id}")


def _runs() -> replayruns.ReplayRuns:
    return replayruns.ReplayRuns(redis_client())


def _wait_for(run_id: str) -> replayruns.ReplayRun:
    """The run once it has ended (polled every half second; Ctrl-C stops waiting, not the run)."""
    while True:
        run = _runs().load(run_id)
        if run is None:
            raise click.ClickException(f"replay run {run_id} is gone")
        if run.status in (replayruns.FINISHED, replayruns.FAILED):
            return run
        time.sleep(WAIT_POLL_SECONDS)


def _report(run: replayruns.ReplayRun) -> None:
    click.echo(
        f"replay run {run.id} {run.status}: replayed {run.replayed} of {run.total}, {run.failed} failed"
    )
    if run.status == replayruns.FAILED or run.failed:
        raise click.ClickException(
            run.error or f"{run.failed} still parked (their replay could not be stored)"
        )


@dead_letters.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def replays(run_id: str | None, as_json: bool) -> None:
    """The progress of replay run RUN_ID (default: the latest) started by ``retry --all``."""
    run = _runs().load(run_id) if run_id else _runs().latest()
    if run is None:
        raise click.ClickException(f"no replay run {run_id}" if run_id else "no replay run yet")
    if as_json:
        click.echo(json.dumps(run.to_dict()))
        return
    click.echo(
        f"replay run {run.id} {run.status}: replayed {run.replayed} of {run.total}, {run.failed} failed"
    )


@dead_letters.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(yes: bool) -> None:
    """Forget every parked contact (they are not replayed)."""
    store = _store()
    count = store.count()
    if not count:
        click.echo("no dead letters")
        return
    if not yes:
        click.confirm(f"Forget all {count} dead letters?", abort=True)
    click.echo(f"purged {store.purge()}")
