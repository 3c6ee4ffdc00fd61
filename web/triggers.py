"""``POST /v1/sync``: a manual or workflow trigger for one contact.

Guarantees:
- only a caller holding ``SYNC_TRIGGER_TOKEN`` is served (403 when it is unset,
  401 when missing or wrong);
- the body is validated by :class:`TriggerBody` (``email`` and/or ``contact_id``,
  optional ``reply_to``, nothing else): anything else is 4xx with the field and
  the problem;
- an excluded or invalid address answers 200 ``skipped`` with the reason and
  queues nothing;
- otherwise the sync is stored before the 202 (``queued``, or ``folded`` into the
  contact's waiting sync) with ``expected_delay_seconds`` from
  :func:`web.delay.expected_delay_seconds`; Redis unreachable is 503.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync_worker.dispatch import SyncRequest
from sync_worker.ratelimit.hooks import INTERCOM
from web.auth import require_bearer
from web.context import web_context
from web.delay import expected_delay_seconds
from web.intake import screen_trigger, skipped, store
from web.jsonbody import json_body
from web.notifications import ID_PATTERN

bp = Blueprint("triggers", __name__)

SOURCE = "manual"
MAX_ADDRESS_LENGTH = 320
#: A trigger body is a few short fields; anything bigger is refused before parsing.
MAX_BODY_BYTES = 16 * 1024


class TriggerBody(BaseModel):
    """What to sync: the contact's email and/or Intercom id."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=MAX_ADDRESS_LENGTH, description="The contact's email address.")
    contact_id: str | None = Field(None, pattern=ID_PATTERN, description="The Intercom contact id.")
    reply_to: str | None = Field(
        None,
        max_length=MAX_ADDRESS_LENGTH,
        description="A reply-to address carried by the trigger (screened).",
    )

    @field_validator("email", "contact_id", "reply_to", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _names_a_contact(self) -> TriggerBody:
        if not self.email and not self.contact_id:
            raise ValueError("give an email or a contact_id")
        return self


@bp.post("/v1/sync")
def trigger_sync() -> Any:
    context = web_context()
    require_bearer(
        request.headers.get("Authorization"),
        context.settings.sync_trigger_token,
        setting="SYNC_TRIGGER_TOKEN",
    )
    body = json_body(TriggerBody, MAX_BODY_BYTES)
    skip = screen_trigger(
        email=body.email,
        contact_id=body.contact_id,
        reply_to=body.reply_to,
        excluded=context.settings.excluded_emails,
    )
    if skip is not None:
        skipped(skip, SOURCE)
        return {"status": "skipped", "reason": skip.reason_code, "message": skip.message}, 200
    result = store(
        SyncRequest(contact_id=body.contact_id, email=body.email, trigger=SOURCE, reply_to=body.reply_to),
        SOURCE,
    )
    return {
        "status": result.status,
        "contact_key": result.contact_key,
        "task_id": result.task_id,
        "expected_delay_seconds": expected_delay_seconds(context.runtime.limiters[INTERCOM]),
    }, 202
