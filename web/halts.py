"""``GET /v1/admin/halts``: the workspace-wide halts (:mod:`sync_worker.halts`) an operator must fix.

Guarantees: only a caller holding ``SYNC_ADMIN_TOKEN`` is served (:func:`web.auth.require_bearer`),
checked before anything is read; the answer lists every halt set now (upstream, reason, error code
and message, since when, failed probes) and how many halts were raised per upstream; it only reads
Redis (503 when Redis cannot be reached, by the app's error handlers).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from sync_worker.halts import HaltStore
from web.auth import require_admin
from web.context import web_context

bp = Blueprint("halts", __name__, url_prefix="/v1/admin/halts")


bp.before_request(require_admin)


@bp.get("")
def list_halts() -> dict[str, Any]:
    store = HaltStore(web_context().redis, wait_seconds=0)
    return {"halts": [halt.to_dict() for halt in store.all()], "alerts": store.alerts()}
