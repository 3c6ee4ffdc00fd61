"""``sync-worker resync``: start a bulk re-sync by hand, follow it, read its report.

- ``sync-worker resync [--integration NAME] [--dry-run] [--all] [--follow] [--json]`` starts a
  run of one integration (default ``clients``; it walks what that integration walks:
  :mod:`sync_worker.resync.walks`), or resumes its unfinished one, or names the one of that
  integration running (one run at a time per integration), and, with ``--follow``, shows a
  progress bar until it ends;
- ``sync-worker resync status [RUN_ID] [--integration NAME] [--follow] [--json]``: one run
  (default: the latest, of that integration when named) as figures, or followed live;
- ``sync-worker resync list``: the recent runs; ``sync-worker resync cancel RUN_ID``.

It talks to the service's Redis directly (``REDIS_URL``, else the running dev stack's:
:mod:`sync_worker.cli.common`) and publishes with the worker's Celery app; it needs no
Intercom or platform credentials. A followed run that no worker has taken after
:data:`NO_WORKER_HINT_SECONDS` gets one line on stderr saying so (and whether any worker
has a fresh heartbeat in that Redis), instead of a bar that silently stays at 0%. Exit status: 0, or 1 when a followed run
ends ``failed``/``cancelled`` or a run id is unknown.
"""

from __future__ import annotations

import json
import sys
import time

import click
import redis as redis_lib

from sync_worker import integrations
from sync_worker.cli.common import celery_app, integration_option, masked, redis_client, use_service_redis
from sync_worker.heartbeat import worker_health
from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.resync.progress import progress_line, summarize
from sync_worker.resync.runs import CANCELLED, FINISHED, RUNNING, RunOptions, RunRecord
from sync_worker.resync.settings import get_resync_settings
from sync_worker.resync.starter import DryRunUnsupported, make_store, start

FOLLOW_INTERVAL_SECONDS = 1.0
NO_WORKER_HINT_SECONDS = 5.0
#: A worker heartbeat older than this is not counted as a running worker.
HEARTBEAT_FRESH_SECONDS = 60.0


def _load(client: redis_lib.Redis, run_id: str | None, integration: str | None = None) -> RunRecord:
    store = make_store(client, get_resync_settings())
    record = store.load(run_id) if run_id else store.latest(integration)
    if record is None:
        raise click.ClickException(f"no re-sync run {run_id}" if run_id else "no re-sync run yet")
    return record


def taken_by_a_worker(record: RunRecord) -> bool:
    """Whether a worker has done anything for the run yet (a page walked, a contact counted)."""
    return record.page > 0 or record.walk_done or any(record.counts.values()) or record.status != RUNNING


def fresh_workers(client: redis_lib.Redis) -> int:
    """How many workers beat within :data:`HEARTBEAT_FRESH_SECONDS`, on Redis's clock."""
    return worker_health(client, HEARTBEAT_FRESH_SECONDS).fresh


def _no_worker_hint(client: redis_lib.Redis, run_id: str) -> str:
    url = masked(use_service_redis().url)
    workers = fresh_workers(client)
    why = (
        f"no worker has a fresh heartbeat in {url}: start one against this Redis (scripts/dev does)"
        if not workers
        else f"{workers} worker(s) beat in {url}, but none has taken it: are they busy, or on other queues?"
    )
    return f"run {run_id}: no worker has taken it after {NO_WORKER_HINT_SECONDS:.0f} s; {why}"


def _follow(client: redis_lib.Redis, run_id: str, as_json: bool) -> RunRecord:
    """Print progress until the run ends; a bar on a terminal, a line every few seconds otherwise."""
    store = make_store(client, get_resync_settings())
    tty = sys.stdout.isatty() and not as_json
    last_print = 0.0
    hint_at: float | None = time.monotonic() + NO_WORKER_HINT_SECONDS
    while True:
        record = store.load(run_id)
        if record is None:
            raise click.ClickException(f"re-sync run {run_id} disappeared")
        if hint_at is not None and taken_by_a_worker(record):
            hint_at = None
        elif hint_at is not None and time.monotonic() >= hint_at:
            click.echo(("\n" if tty else "") + _no_worker_hint(client, run_id), err=True)
            hint_at = None
        summary = summarize(record, time.time())
        now = time.monotonic()
        ended = record.status != RUNNING
        if as_json:
            if ended or now - last_print >= 5:
                click.echo(json.dumps(summary))
                last_print = now
        elif tty:
            click.echo("\r" + progress_line(summary), nl=ended)
        elif ended or now - last_print >= 5:
            click.echo(progress_line(summary))
            last_print = now
        if ended:
            return record
        time.sleep(FOLLOW_INTERVAL_SECONDS)


def _exit_for(record: RunRecord) -> None:
    if record.status not in (FINISHED, RUNNING):
        raise SystemExit(1)


@click.group(invoke_without_command=True)
@click.option("--dry-run", is_flag=True, help="Compute and count what would change; write nothing.")
@click.option("--all", "write_all", is_flag=True, help="Write every contact, changed or not.")
@click.option("--follow", "-f", is_flag=True, help="Show progress until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--integration",
    type=click.Choice(sorted(integrations.REGISTRY)),
    default=None,
    help=f"The integration to re-sync (default: {LEGACY_INTEGRATION}); it walks what that integration walks.",
)
@click.pass_context
def resync(
    ctx: click.Context, dry_run: bool, write_all: bool, follow: bool, as_json: bool, integration: str | None
) -> None:
    """Start a bulk re-sync of one integration (``--integration``, default ``clients``), or resume
    the unfinished run."""
    if ctx.invoked_subcommand is not None:
        return
    settings = get_resync_settings()
    client, app = redis_client(), celery_app()
    only_changed = settings.only_changed and not write_all
    options = RunOptions(
        dry_run=dry_run,
        only_changed=only_changed,
        trigger="manual",
        integration=integration or LEGACY_INTEGRATION,
    )
    try:
        result = start(client, app, options, settings)
    except DryRunUnsupported as refused:
        raise click.UsageError(str(refused)) from None
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        reason = f" ({result.reason})" if result.reason else ""
        click.echo(f"{result.status}: {result.run_id or '-'}{reason}")
    if follow and result.run_id and result.status != "skipped":
        _exit_for(_follow(client, result.run_id, as_json))


@resync.command()
@click.argument("run_id", required=False)
@click.option("--follow", "-f", is_flag=True, help="Show progress until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@integration_option
def status(run_id: str | None, follow: bool, as_json: bool, integration: str | None) -> None:
    """Show a run (default: the latest, of one integration with ``--integration``): counts, rate, ETA."""
    client = redis_client()
    record = _load(client, run_id, integration)
    if follow:
        _exit_for(_follow(client, record.id, as_json))
        return
    summary = summarize(record, time.time())
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"run {record.id}  {record.status}  integration={record.integration}  trigger={record.trigger}"
        f"{'  dry-run' if record.dry_run else ''}{'  only-changed' if record.only_changed else '  all'}"
    )
    click.echo(progress_line(summary))
    if record.error:
        click.echo(f"error: {record.error}")


@resync.command(name="list")
@click.option("--limit", default=10, show_default=True)
@integration_option
def list_runs(limit: int, integration: str | None) -> None:
    """The recent runs, newest first (of one integration with ``--integration``)."""
    store = make_store(redis_client(), get_resync_settings())
    for record in store.recent(limit, integration=integration):
        summary = summarize(record, time.time())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.started_at))
        click.echo(
            f"{record.id}  {started}Z  {record.integration:<12}  {record.status:<9}  "
            f"{progress_line(summary, width=10)}"
        )


@resync.command()
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Stop a running run: its pending chunks are dropped, the lock is released."""
    store = make_store(redis_client(), get_resync_settings())
    if not store.end(run_id, CANCELLED, "cancelled by an operator"):
        raise click.ClickException(f"run {run_id} is not running")
    click.echo(f"cancelled: {run_id}")
