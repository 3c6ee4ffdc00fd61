"""The registry of integrations and the name every request and per-contact key carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from unittest.mock import ANY

import pytest

from sync_worker import integrations, keys
from sync_worker.deadletter import DeadLetterStore
from sync_worker.dispatch import SyncRequest
from sync_worker.integrations import get
from sync_worker.integrations.base import ContactAttributes, Integration
from sync_worker.integrations.clients import ClientsIntegration
from web.notifications import Notification
from web.webhooks import contact_topic_requests


def test_sync_integrations_defaults_to_clients_and_keeps_the_order_without_repeats():
    assert integrations.parse(None) == ("clients",)
    assert integrations.parse(" ") == ("clients",)
    assert integrations.parse("clients, other ,clients") == ("clients", "other")


def test_an_unknown_integration_is_refused_naming_the_known_ones():
    with pytest.raises(integrations.UnknownIntegration, match=r"'dealers'.*known: clients"):
        integrations.enabled("clients,dealers")


def test_the_registry_answers_the_clients_integration_on_the_contact_base():
    [clients] = integrations.enabled(None)
    assert isinstance(clients, ClientsIntegration) and isinstance(clients, ContactAttributes)
    assert integrations.get("clients") is clients
    assert clients.name == "clients" and clients.routes == ("web.connector:bp",)


def test_the_clients_integration_keeps_the_legacy_key_names():
    """What an earlier version left in Redis (pending markers, last known values, fingerprints,
    stale refresh claims) is found under the same names after the upgrade."""
    assert keys.contact_key("c1", None) == keys.contact_key("c1", None, "clients") == "id:c1"
    assert keys.contact_key(None, " A@B.com", "clients") == "email:a@b.com"
    assert keys.pending(SyncRequest(contact_id="c1").contact_key) == "intercom-sync:pending:id:c1"


def test_another_integration_keeps_its_own_keys_for_the_same_contact():
    clients = SyncRequest(contact_id="c1", email="a@b.com")
    other = SyncRequest(contact_id="c1", email="a@b.com", integration="dealer_users")
    assert other.contact_key == "dealer_users:id:c1"
    for key in (keys.pending, keys.pending_payload, keys.last_known, keys.shown, keys.stale_refresh):
        assert key(clients.contact_key) != key(other.contact_key)


def test_a_message_queued_without_an_integration_is_read_as_clients():
    old = {
        "contact_id": "c1",
        "email": "a@b.com",
        "trigger": "webhook",
        "force_write": True,
        "requested_at": 1.0,
    }
    request = SyncRequest.from_kwargs(old)
    assert request.integration == "clients" and request.contact_key == "id:c1"
    assert SyncRequest.from_kwargs({**old, "integration": None}).integration == "clients"


def test_a_request_travels_with_its_integration_and_a_fold_keeps_it():
    request = SyncRequest(contact_id="c1", integration="dealer_users")
    assert SyncRequest.from_kwargs(request.to_kwargs()) == request
    assert "dealer_users" in request.describe() and "@" not in request.describe()
    latest = SyncRequest(contact_id="c1", email="a@b.com", trigger="manual")
    assert request.folded(latest).integration == "dealer_users"


def test_a_dead_letter_id_names_its_integration():
    assert DeadLetterStore.key_for("c1", None) == "id:c1"
    assert DeadLetterStore.key_for("c1", None, "dealer_users") == "dealer_users:id:c1"
    assert (
        DeadLetterStore.integration_of("id:c1")
        == DeadLetterStore.integration_of("email:a@b.com")
        == "clients"
    )
    assert DeadLetterStore.integration_of("dealer_users:id:c1") == "dealer_users"


def test_a_request_by_source_id_is_kept_under_that_id_and_a_fold_keeps_it():
    by_user = SyncRequest(source_id="user123", integration="dealer_users", trigger="manual")
    assert by_user.contact_key == "dealer_users:source:user123"
    later = SyncRequest(contact_id="c1", email="new@x.example", integration="dealer_users", trigger="webhook")
    folded = by_user.folded(later)
    assert (folded.source_id, folded.contact_id, folded.email) == ("user123", "c1", "new@x.example")
    assert folded.contact_key == by_user.contact_key
    assert SyncRequest.from_kwargs(by_user.to_kwargs()) == by_user
    assert "user123" in by_user.describe()


def test_a_request_names_some_identity_and_clients_has_no_source_ids():
    with pytest.raises(ValueError, match="source_id"):
        SyncRequest(integration="dealer_users")
    with pytest.raises(ValueError, match="source id"):
        keys.contact_key(None, None, "clients", source_id="user123")
    assert DeadLetterStore.key_for(None, None, "dealer_users", "user123") == "dealer_users:source:user123"


class _Subscriber(Integration):
    """An integration acting on one contact topic (the receiver's dispatch is what is tested)."""

    name = "subscriber"
    webhook_topics = frozenset({"contact.user.created"})

    def webhook_request(self, topic: str, contact: Mapping[str, Any]) -> SyncRequest | None:
        if not contact.get("external_id"):
            return None
        return SyncRequest(source_id=contact["external_id"], integration=self.name, trigger="webhook")


def _notification(topic: str, item: dict[str, Any]) -> Notification:
    return Notification.model_validate(
        {"type": "notification_event", "id": "notif_1", "topic": topic, "data": {"item": item}}
    )


def test_a_contact_topic_goes_to_the_integrations_that_subscribe_to_it():
    running = [get("clients"), _Subscriber()]
    asked = contact_topic_requests(_notification("contact.user.created", {"external_id": "u1"}), running)
    assert asked == (
        SyncRequest(source_id="u1", integration="subscriber", trigger="webhook", requested_at=ANY),
    )
    assert contact_topic_requests(_notification("contact.user.created", {"id": "c1"}), running) == ()
    assert contact_topic_requests(_notification("contact.lead.updated", {"id": "c1"}), running) is None
