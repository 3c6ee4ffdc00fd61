"""``/v1/admin/dead-letters``: operators list, inspect, replay and remove parked contacts.

Guarantees:
- only a caller holding ``SYNC_ADMIN_TOKEN`` is served (403 when it is unset,
  401 when missing or wrong), checked before anything is read;
- replays go through :func:`sync_worker.dispatch.enqueue_replay` (realtime queue,
  the worker re-reads the platform); a replay that cannot be stored is 503 and
  the entry stays parked;
- ``POST /retry-all`` answers 202 at once with a replay run (:mod:`sync_worker.replayruns`:
  a background task replays the entries, counting replayed and failed ones), or 503 when its
  first step cannot be queued; ``GET /retry-all/<run id>`` (``GET /retry-all``: the latest run)
  is its progress, 404 ``replay_run_not_found`` for an unknown id;
- entry ids are the store's (``id:<contact id>`` or ``email:<address>``) and may
  hold ``/``: the id is the whole path after ``dead-letters/``;
- purging everything needs ``?confirm=true`` (400 otherwise);
- an unknown entry id is 404 ``dead_letter_not_found``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, g, request
from kombu.exceptions import OperationalError

from sync_worker import integrations, replayruns
from sync_worker.deadletter import DeadLetterStore
from sync_worker.dispatch import EnqueueResult, QueueUnavailable, enqueue_replay
from web.auth import require_admin
from web.context import web_context
from web.errors import ApiError
from web.intake import queue_unavailable

bp = Blueprint("admin", __name__, url_prefix="/v1/admin/dead-letters")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


bp.before_request(require_admin)


def _store() -> DeadLetterStore:
    return DeadLetterStore(web_context().redis)


class _Replayer:
    """The ``enqueue`` callback handed to the store: replays via :func:`enqueue_replay`, keeping the results."""

    def __init__(self) -> None:
        context = web_context()
        self._redis, self._celery = context.redis, context.celery
        self.results: list[EnqueueResult] = []
        self.contact_ids: list[str | None] = []

    def __call__(self, kwargs: Mapping[str, Any]) -> EnqueueResult:
        result = enqueue_replay(kwargs, self._redis, self._celery)
        self.results.append(result)
        self.contact_ids.append(kwargs.get("contact_id"))
        return result


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}.")
    return value


def known_integration(value: Any) -> str:
    """``value`` when it is a registered integration's name, else a 400 naming the known ones."""
    if value not in integrations.REGISTRY:
        known = ", ".join(sorted(integrations.REGISTRY))
        raise ApiError(400, "invalid_parameter", f"integration must be one of: {known}.")
    return value


def integration_arg() -> str | None:
    """``?integration=``: a registered integration's name (None: every integration)."""
    raw = request.args.get("integration")
    return None if raw is None else known_integration(raw)


def _not_found() -> ApiError:
    return ApiError(404, "dead_letter_not_found", "No dead letter with this id.")


@bp.get("")
def list_entries() -> Any:
    offset = _int_arg("offset", 0, 0, 10**9)
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    integration = integration_arg()
    store = _store()
    items = [entry.to_dict() for entry in store.list(offset, limit, integration=integration)]
    return {"count": store.count(integration=integration), "offset": offset, "limit": limit, "items": items}


@bp.delete("")
def purge_entries() -> Any:
    if request.args.get("confirm") != "true":
        raise ApiError(400, "confirmation_required", "Purging every dead letter needs ?confirm=true.")
    removed = _store().purge()
    g.outcome = "purged"
    return {"status": "purged", "removed": removed}


@bp.post("/retry-all")
def retry_all() -> Any:
    context = web_context()
    try:
        run = replayruns.start(context.redis, context.celery, "api")
    except OperationalError:  # the broker refused the run's first step; the run is marked failed
        raise queue_unavailable() from None
    g.outcome = "replay_started"
    return {**run.to_dict(), "links": {"self": f"{bp.url_prefix}/retry-all/{run.id}"}}, 202


@bp.get("/retry-all")
def latest_replay_run() -> Any:
    run = replayruns.ReplayRuns(web_context().redis).latest()
    if run is None:
        raise ApiError(404, "replay_run_not_found", "No replay run yet.")
    return run.to_dict()


@bp.get("/retry-all/<run_id>")
def replay_run(run_id: str) -> Any:
    run = replayruns.ReplayRuns(web_context().redis).load(run_id)
    if run is None:
        raise ApiError(404, "replay_run_not_found", "No replay run with this id.")
    return run.to_dict()


@bp.get("/<path:entry_id>")
def get_entry(entry_id: str) -> Any:
    entry = _store().get(entry_id)
    if entry is None:
        raise _not_found()
    return entry.to_dict()


@bp.delete("/<path:entry_id>")
def remove_entry(entry_id: str) -> Any:
    if not _store().remove(entry_id):
        raise _not_found()
    return {"status": "removed", "removed": 1}


@bp.post("/<path:entry_id>/retry")
def retry_entry(entry_id: str) -> Any:
    replayer = _Replayer()
    try:
        found = _store().replay(entry_id, replayer)
    except QueueUnavailable:
        raise queue_unavailable() from None
    if not found:
        raise _not_found()
    [result] = replayer.results
    g.contact_id = replayer.contact_ids[0]
    g.outcome = f"replay_{result.status}"
    return {"status": result.status, "contact_key": result.contact_key, "task_id": result.task_id}, 202
