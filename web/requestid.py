"""The request id: one per request, on the response and on every log line.

Guarantees: :func:`choose_request_id` keeps a caller's ``X-Request-Id`` only when
it is short and made of safe characters (letters, digits, ``._:-``), so a log line
or header can never be forged through it; otherwise it makes a new random id.
"""

from __future__ import annotations

import re
import uuid

HEADER = "X-Request-Id"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def choose_request_id(incoming: str | None) -> str:
    """The caller's id when it is sane, else a fresh one (32 hex characters)."""
    if incoming and _SAFE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex
