"""What a re-sync walks, chosen per integration, and each integration's schedule (pure parts)."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ValidationError

from sync_worker import integrations
from sync_worker.celery_app import beat_schedule
from sync_worker.config import Settings
from sync_worker.cron import parse_cron
from sync_worker.integrations.clients import ClientsIntegration
from sync_worker.resync.walks import (
    INTERCOM_CONTACTS,
    PLATFORM_USERS,
    IntercomContacts,
    PlatformUsers,
    UnknownWalk,
    plan_users,
    walk_kind,
)


class OddWalks(ClientsIntegration):
    """An integration naming a walk the service does not have."""

    name: ClassVar[str] = "odd"
    resync_walks: ClassVar[str] = "ftp_files"


def test_the_clients_integration_walks_intercoms_contacts():
    assert integrations.get("clients").resync_walks == INTERCOM_CONTACTS
    assert walk_kind(integrations.get("clients")) is IntercomContacts


def test_dealer_users_walk_the_platforms_users():
    assert integrations.get("dealer_users").resync_walks == PLATFORM_USERS
    assert walk_kind(integrations.get("dealer_users")) is PlatformUsers


def test_a_walk_the_service_does_not_have_is_refused_naming_the_known_ones():
    with pytest.raises(
        UnknownWalk, match=r"'odd' walks 'ftp_files' \(known walks: intercom_contacts, platform_users\)"
    ):
        walk_kind(OddWalks())


def test_a_users_page_queues_every_user_as_its_whole_record():
    users = [{"user_id": "u1", "email": "a@example.com", "roles": []}, {"user_id": "u2", "email": None}]
    queued, counts = plan_users(users)
    assert queued == users and queued[0] is not users[0]
    assert counts == {"seen": 2, "queued": 2}
    assert plan_users([]) == ([], {"seen": 0, "queued": 0})


def test_the_clients_nightly_run_keeps_its_beat_entry_exactly():
    schedule = beat_schedule(Settings(SYNC_RESYNC_CRON="15 2 * * *"))
    entry = schedule["nightly-resync"]
    assert entry["task"] == "sync_worker.resync.tasks.start_resync" and "kwargs" not in entry
    assert entry["schedule"] == parse_cron("15 2 * * *") and entry["options"] == {"queue": "sync.bulk"}
    assert [name for name in schedule if name.startswith("nightly-resync")] == ["nightly-resync"]


def test_each_running_integration_has_its_own_nightly_entry_on_its_own_cron():
    schedule = beat_schedule(
        Settings(
            SYNC_INTEGRATIONS="clients,dealer_users",
            SYNC_RESYNC_CRON="0 3 * * *",
            USERS_RESYNC_CRON="30 1 * * *",
        )
    )
    users = schedule["nightly-resync-dealer_users"]
    assert users["task"] == schedule["nightly-resync"]["task"] == "sync_worker.resync.tasks.start_resync"
    assert users["kwargs"] == {"integration": "dealer_users"} and users["schedule"] == parse_cron(
        "30 1 * * *"
    )
    assert schedule["nightly-resync"]["schedule"] == parse_cron("0 3 * * *")
    only_users = beat_schedule(Settings(SYNC_INTEGRATIONS="dealer_users"))
    assert [name for name in only_users if name.startswith("nightly-resync")] == [
        "nightly-resync-dealer_users"
    ]


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("nightly", "give 5 fields"),
        ("0 3 * *", "got 4"),
        ("0 25 * * *", "not a cron expression: Invalid end range: 25 > 23"),
        ("0 3 * * someday", "not a cron expression"),
    ],
)
def test_a_bad_cron_is_refused_at_start_naming_the_setting(cron, says):
    with pytest.raises(ValidationError) as refused:
        Settings(USERS_RESYNC_CRON=cron)
    assert "USERS_RESYNC_CRON" in str(refused.value) and says in str(refused.value)
    with pytest.raises(ValidationError, match="SYNC_RESYNC_CRON"):
        Settings(SYNC_RESYNC_CRON=cron)


def test_the_users_resync_is_nightly_by_default():
    assert parse_cron(Settings().users_resync_cron) == parse_cron("0 4 * * *")
