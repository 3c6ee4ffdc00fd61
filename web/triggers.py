"""``POST /v1/sync``: a manual or workflow trigger for one contact.

Guarantees:
- only a caller holding ``SYNC_TRIGGER_TOKEN`` is served (403 when it is unset,
  401 when missing or wrong);
- the body is validated by :class:`TriggerBody`: an ``integration`` (``clients`` unless named)
  and the fields that integration takes (its ``trigger_fields``: ``email`` and/or ``contact_id``
  with an optional ``reply_to`` for ``clients``, ``user_id`` for ``dealer_users``), nothing else:
  anything else is 400 with the field and the problem, an unknown integration too; an
  integration this service does not run (``SYNC_INTEGRATIONS``) is 400 ``integration_not_running``;
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

from sync_worker import integrations
from sync_worker.dispatch import SOURCE_ID_PATTERN
from sync_worker.ratelimit.hooks import INTERCOM
from web.auth import require_bearer
from web.context import web_context
from web.delay import expected_delay_seconds
from web.errors import ApiError
from web.intake import screen_trigger, skipped, store
from web.jsonbody import json_body
from web.notifications import ID_PATTERN

bp = Blueprint("triggers", __name__)

SOURCE = "manual"
MAX_ADDRESS_LENGTH = 320
#: A trigger body is a few short fields; anything bigger is refused before parsing.
MAX_BODY_BYTES = 16 * 1024
#: A registry name (``clients``, ``dealer_users``).
INTEGRATION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
#: The body fields that name a contact, as some integration takes them.
CONTACT_FIELDS = ("email", "contact_id", "reply_to", "user_id")


class TriggerBody(BaseModel):
    """What to sync: the integration (``clients`` unless named) and the contact as it names one:
    its email and/or Intercom id for ``clients``, its ``user_id`` for ``dealer_users``."""

    model_config = ConfigDict(extra="forbid")

    integration: str = Field(
        integrations.DEFAULT, pattern=INTEGRATION_PATTERN, description="The integration to sync with."
    )
    email: str | None = Field(None, max_length=MAX_ADDRESS_LENGTH, description="The contact's email address.")
    contact_id: str | None = Field(None, pattern=ID_PATTERN, description="The Intercom contact id.")
    reply_to: str | None = Field(
        None,
        max_length=MAX_ADDRESS_LENGTH,
        description="A reply-to address carried by the trigger (screened).",
    )
    user_id: str | None = Field(None, pattern=SOURCE_ID_PATTERN, description="A dealer user's platform id.")

    @field_validator("email", "contact_id", "reply_to", "user_id", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _fits_its_integration(self) -> TriggerBody:
        try:
            chosen = integrations.get(self.integration)
        except integrations.UnknownIntegration as unknown:
            raise ValueError(str(unknown)) from None
        given = [name for name in CONTACT_FIELDS if getattr(self, name) is not None]
        foreign = [name for name in given if name not in chosen.trigger_fields]
        if foreign:
            raise ValueError(
                f"{', '.join(foreign)}: not a field of a {chosen.name} trigger "
                f"(it takes {', '.join(chosen.trigger_fields)})"
            )
        if not any(name in given for name in chosen.trigger_identity):
            raise ValueError("give " + " or ".join(_with_article(name) for name in chosen.trigger_identity))
        return self

    def fields(self) -> dict[str, Any]:
        """The contact's fields given (what the integration's ``trigger_request`` reads)."""
        return {name: getattr(self, name) for name in CONTACT_FIELDS if getattr(self, name) is not None}


def _with_article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


@bp.post("/v1/sync")
def trigger_sync() -> Any:
    context = web_context()
    require_bearer(
        request.headers.get("Authorization"),
        context.settings.sync_trigger_token,
        setting="SYNC_TRIGGER_TOKEN",
    )
    body = json_body(TriggerBody, MAX_BODY_BYTES)
    running = [each.name for each in integrations.enabled(context.settings.integrations)]
    if body.integration not in running:
        raise ApiError(
            400,
            "integration_not_running",
            f"integration {body.integration!r} does not run here (SYNC_INTEGRATIONS: {', '.join(running)})",
        )
    skip = screen_trigger(
        email=body.email,
        contact_id=body.contact_id or body.user_id,
        reply_to=body.reply_to,
        excluded=context.settings.excluded_emails,
    )
    if skip is not None:
        skipped(skip, SOURCE)
        return {"status": "skipped", "reason": skip.reason_code, "message": skip.message}, 200
    result = store(integrations.get(body.integration).trigger_request(body.fields(), trigger=SOURCE), SOURCE)
    return {
        "status": result.status,
        "contact_key": result.contact_key,
        "task_id": result.task_id,
        "expected_delay_seconds": expected_delay_seconds(context.runtime.limiters[INTERCOM]),
    }, 202
