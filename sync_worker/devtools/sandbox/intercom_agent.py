"""What Intercom's people and Intercom itself do to contacts besides our API calls, in the sandbox.

Registered on the sandbox app by :func:`register_agent_routes` (called once by
:func:`~sync_worker.devtools.sandbox.intercom.create_app`). Guarantees:
- ``POST /contacts/merge`` ``{from, into}`` (Intercom's API, so authorized, rate limited and
  validated like every API call) merges a lead into a user: the user answers with the lead's
  values where it had none, and the lead then answers as a merged contact does (404 under 2.14);
- the ``/_sandbox/agent/*`` control routes change a contact as an agent in Intercom's UI does
  (never in the contact's write log, which holds API PUTs only), then post Intercom's signed
  notification about the whole contact to ``webhook_url`` and answer with the contact, the
  notification id and the receiver's answer (status and body) once the receiver has answered:
  ``POST /_sandbox/agent/contacts`` creates (``contact.<role>.created``);
  ``POST /_sandbox/agent/contacts/<id>`` changes ``name``, ``email``, ``phone``, ``role``,
  ``external_id``, ``custom_attributes`` (``contact.<role>.updated``, or
  ``contact.lead.signed_up`` when a lead became a user); ``POST /_sandbox/agent/signup/<id>``
  makes a lead a user (``contact.lead.signed_up``); ``POST /_sandbox/agent/merge`` ``{from,
  into}`` (``contact.merged``, about the surviving user); ``POST /_sandbox/agent/notify/<id>``
  ``{topic, notification_id?}`` changes nothing: a remembered notification id is delivered
  again as it was (same id and body, ``delivery_attempts`` + 1), any other is a new one;
  ``GET /_sandbox/agent/notifications`` lists what was posted and what the receiver answered;
- with the config's ``echo_writes``, every API ``PUT /contacts/{id}`` that succeeds is followed
  by ``contact.<role>.updated`` about the contact as that PUT left it, posted from a background
  thread (the API answer does not wait for the receiver) in the order the PUTs were applied.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from sync_worker.devtools.sandbox.intercom import ApiError, IntercomState
from sync_worker.devtools.sandbox.intercom_webhooks import (
    Delivery,
    Outbox,
    Target,
    new_notification_id,
    notification,
)

OUTBOX = "INTERCOM_OUTBOX"  # app.config key of the app's Outbox
AGENT_FIELDS = frozenset({"name", "email", "phone", "role", "external_id", "custom_attributes"})
SIGNED_UP = "contact.lead.signed_up"
MERGED = "contact.merged"


def change_topic(role_before: str, role_after: str) -> str:
    """The topic of an agent's change of a contact (pure)."""
    if role_before == "lead" and role_after == "user":
        return SIGNED_UP
    return f"contact.{role_after}.updated"


def _answer(contact: Mapping[str, Any] | None, delivery: Delivery) -> dict[str, Any]:
    return {
        "contact": contact,
        "notification_id": delivery.notification_id,
        "topic": delivery.topic,
        "delivery_attempts": delivery.delivery_attempts,
        "receiver_status": delivery.status,
        "receiver_answer": delivery.answer,
        "error": delivery.error,
    }


def _body() -> dict[str, Any]:
    payload = request.get_json(silent=True)
    return payload if isinstance(payload, dict) else {}


def _refusal(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def register_agent_routes(app: Flask, state: IntercomState) -> Outbox:
    """Add the merge API route, the agent control routes and the write echo to ``app``."""
    outbox = Outbox()
    app.config[OUTBOX] = outbox

    def target() -> Target:
        config = state.config_dict()
        return Target(config["webhook_url"], config["webhook_secret"])

    def envelope(topic: str, contact: Mapping[str, Any], notification_id: str | None = None) -> dict:
        return notification(
            topic,
            contact,
            app_id=state.workspace_id,
            notification_id=notification_id or new_notification_id(),
            now=state.clock(),
        )

    def notify(topic: str, contact: Mapping[str, Any], notification_id: str | None = None) -> Response:
        return jsonify(_answer(contact, outbox.send(envelope(topic, contact, notification_id), target())))

    def live(contact_id: str) -> dict[str, Any] | None:
        stored = state.stored_contact(contact_id)
        if stored is None or stored.pop("merged_into") is not None:
            return None
        return stored

    def change(contact_id: str, changes: Mapping[str, Any], *, signup: bool = False) -> Any:
        before = live(contact_id)
        if before is None:
            return _refusal(404, f"no live contact {contact_id}")
        unknown = set(changes) - AGENT_FIELDS
        if unknown:
            return _refusal(400, f"an agent cannot change {', '.join(sorted(unknown))}")
        if signup and before["role"] != "lead":
            return _refusal(400, f"contact {contact_id} is not a lead")
        try:
            contact = state.update_contact(contact_id, changes, logged=False)
        except ApiError as exc:
            return _refusal(exc.status, exc.message)
        return notify(change_topic(before["role"], contact["role"]), contact)

    # --- Intercom's API ----------------------------------------------------------------

    @app.post("/contacts/merge")
    def merge_contacts() -> Any:
        payload = _body()
        return jsonify(state.merge_lead(str(payload.get("from")), str(payload.get("into"))))

    # --- the write echo: wraps the PUT route so echoes queue in the order PUTs apply -------

    update_view = app.view_functions["update_contact"]
    applying = threading.Lock()

    @functools.wraps(update_view)
    def update_and_echo(contact_id: str) -> Any:
        with applying:
            response = update_view(contact_id)
            if state.config_dict()["echo_writes"]:
                contact = response.get_json()
                outbox.send_later(envelope(f"contact.{contact['role']}.updated", contact), target())
        return response

    app.view_functions["update_contact"] = update_and_echo

    # --- control routes ----------------------------------------------------------------

    @app.post("/_sandbox/agent/contacts")
    def agent_create() -> Any:
        try:
            contact = state.add_contact(_body())
        except (ValueError, TypeError, AttributeError) as exc:
            return _refusal(400, str(exc))
        return notify(f"contact.{contact['role']}.created", contact), 201

    @app.post("/_sandbox/agent/contacts/<contact_id>")
    def agent_change(contact_id: str) -> Any:
        return change(contact_id, _body())

    @app.post("/_sandbox/agent/signup/<contact_id>")
    def agent_signup(contact_id: str) -> Any:
        return change(contact_id, {**_body(), "role": "user"}, signup=True)

    @app.post("/_sandbox/agent/merge")
    def agent_merge() -> Any:
        payload = _body()
        try:
            survivor = state.merge_lead(str(payload.get("from") or ""), str(payload.get("into") or ""))
        except ApiError as exc:
            return _refusal(exc.status, exc.message)
        return notify(MERGED, survivor)

    @app.post("/_sandbox/agent/notify/<contact_id>")
    def agent_notify(contact_id: str) -> Any:
        payload = _body()
        notification_id = payload.get("notification_id")
        if notification_id:
            again = outbox.redeliver(str(notification_id))
            if again is not None:
                return jsonify(_answer(None, again))
        contact = state.stored_contact(contact_id)
        if contact is None:
            return _refusal(404, f"no contact {contact_id}")
        contact.pop("merged_into")
        topic = payload.get("topic")
        if not isinstance(topic, str) or not topic:
            return _refusal(400, 'send {"topic": "contact.lead.updated", "notification_id"?: "..."}')
        return notify(topic, contact, notification_id)

    @app.get("/_sandbox/agent/notifications")
    def agent_notifications() -> Any:
        return jsonify({"deliveries": outbox.deliveries(), "pending": outbox.pending()})

    return outbox
