"""The dealer users integration's declaration: its name, its trigger and its webhook (pure)."""

from __future__ import annotations

from unittest.mock import ANY

from sync_worker import integrations
from sync_worker.dispatch import SyncRequest

DEALER = integrations.get("dealer_users")


def test_it_is_registered_and_subscribes_to_new_users():
    assert DEALER.name == "dealer_users"
    assert DEALER.webhook_topics == frozenset({"contact.user.created"})
    assert [each.name for each in integrations.enabled("clients,dealer_users")] == ["clients", "dealer_users"]


def test_a_trigger_names_the_user_by_its_id_and_is_not_forced():
    request = DEALER.trigger_request({"user_id": "user123"}, trigger="manual")
    assert request == SyncRequest(
        source_id="user123", integration="dealer_users", trigger="manual", force_write=False, requested_at=ANY
    )
    assert request.contact_key == "dealer_users:source:user123"


def test_a_new_messenger_user_is_synced_by_its_external_id_else_its_email():
    by_external_id = DEALER.webhook_request(
        "contact.user.created", {"id": "c1", "role": "user", "external_id": "user124", "email": "o@x.example"}
    )
    assert (by_external_id.source_id, by_external_id.contact_id, by_external_id.email) == (
        "user124",
        "c1",
        "o@x.example",
    )
    assert by_external_id.trigger == "webhook" and not by_external_id.force_write
    by_email = DEALER.webhook_request(
        "contact.user.created", {"id": "c2", "role": "user", "email": "o@x.example"}
    )
    assert by_email.source_id is None and by_email.contact_key == "dealer_users:id:c2"


def test_leads_other_topics_and_contacts_without_identity_ask_nothing():
    assert (
        DEALER.webhook_request("contact.user.created", {"id": "c1", "role": "lead", "email": "a@b.c"}) is None
    )
    assert DEALER.webhook_request("contact.lead.created", {"id": "c1", "email": "a@b.c"}) is None
    assert DEALER.webhook_request("contact.user.created", {"id": "c1", "role": "user"}) is None
    odd = DEALER.webhook_request(
        "contact.user.created",
        {"id": "c 1; drop", "role": "user", "external_id": "x" * 300, "email": "a@b.c"},
    )
    assert odd.contact_id is None and odd.source_id is None and odd.email == "a@b.c"
