"""``/v1/admin/resync``: operators start a bulk re-sync and read its progress and report.

Guarantees:
- only a caller holding ``SYNC_ADMIN_TOKEN`` is served (:func:`web.auth.require_bearer`:
  403 when it is unset, 401 when missing or wrong, constant-time compare), checked before
  anything is read;
- ``POST /v1/admin/resync`` ``{"integration"?: name, "dry_run"?: bool, "only_changed"?: bool}``
  starts a run of that integration (default ``clients``; the walk is the integration's:
  :mod:`sync_worker.resync.walks`) (202 ``started``), resumes its unfinished one (202
  ``resumed``), or answers 409 ``resync_running`` naming the run of that integration in
  progress (runs of two integrations go side by side); an integration that has no dry run
  refuses one (400); it only touches Redis (the walk runs on the workers), so it answers at
  once; Redis unreachable is 503 (nothing started);
- ``GET /v1/admin/resync/<id>`` is the run's summary (its integration, counts, rate, ETA),
  during the run and for ``SYNC_RESYNC_KEEP_SECONDS`` after it; ``latest`` names the latest run
  (``?integration=``: that integration's); an unknown id is 404 ``resync_not_found``;
  ``GET /v1/admin/resync`` lists recent runs (``?integration=``: that integration's).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request
from kombu.exceptions import OperationalError

from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.resync.progress import summarize
from sync_worker.resync.runs import RunOptions
from sync_worker.resync.settings import get_resync_settings
from sync_worker.resync.starter import DryRunUnsupported, make_store, start
from web.admin import integration_arg, known_integration
from web.auth import require_admin
from web.context import web_context
from web.errors import ApiError
from web.intake import queue_unavailable

bp = Blueprint("resync", __name__, url_prefix="/v1/admin/resync")


bp.before_request(require_admin)


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_parameter", f"{name} must be true or false.")
    return value


@bp.post("")
def start_run() -> Any:
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    unknown = set(body) - {"dry_run", "only_changed", "integration"}
    if unknown:
        raise ApiError(400, "invalid_parameter", f"Unknown fields: {', '.join(sorted(unknown))}.")
    settings = get_resync_settings()
    options = RunOptions(
        dry_run=_flag(body, "dry_run", False),
        only_changed=_flag(body, "only_changed", settings.only_changed),
        trigger="api",
        integration=known_integration(body.get("integration", LEGACY_INTEGRATION)),
    )
    context = web_context()
    try:
        result = start(context.redis, context.celery, options, settings)
    except DryRunUnsupported as refused:
        raise ApiError(400, "invalid_parameter", f"{refused}.") from None
    except OperationalError:  # the broker refused the first walk message; the lock was released
        raise queue_unavailable() from None
    if result.status == "already_running":
        raise ApiError(
            409,
            "resync_running",
            f"A re-sync of {options.integration} is running.",
            extra={"run_id": result.run_id, "integration": options.integration},
        )
    answer: dict[str, Any] = result.to_dict()
    if result.run_id:
        answer["links"] = {"self": f"/v1/admin/resync/{result.run_id}"}
    return answer, 202 if result.status in ("started", "resumed") else 200


@bp.get("")
def list_runs() -> Any:
    store = make_store(web_context().redis, get_resync_settings())
    now = time.time()
    records = store.recent(20, integration=integration_arg())
    return {"items": [summarize(record, now) for record in records]}


@bp.get("/<run_id>")
def get_run(run_id: str) -> Any:
    store = make_store(web_context().redis, get_resync_settings())
    record = store.latest(integration_arg()) if run_id == "latest" else store.load(run_id)
    if record is None:
        raise ApiError(404, "resync_not_found", "No re-sync run with this id.")
    return summarize(record, time.time())
