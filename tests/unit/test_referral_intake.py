"""The referral intake's pure parts: places in the program's order, crons, beat's entries, what
the receiver stores for a webhook's body and what the walk stores for a page's user."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sync_worker.celery_app import BULK_QUEUE, beat_schedule
from sync_worker.config import Settings
from sync_worker.cron import BadCron, crontab_of
from sync_worker.referral_intake.marks import Mark, epoch_of, mark_of
from sync_worker.referral_intake.schedule import BACKSTOP_TASK, WALK_START_TASK, beat_entries
from sync_worker.referral_intake.walk import WalkState, request_for
from web.referrals import ReferralWebhook, idempotency_key, screened, source_id_of, sync_request

USER = {"id": 5001, "signed_up_at": "2026-03-28T08:05:00Z", "code": "AB12CD", "email": "ann@example.com"}


def test_marks_follow_the_programs_order_newest_time_then_higher_id() -> None:
    older = mark_of({**USER, "signed_up_at": "2026-03-28T08:04:59Z", "id": 9999})
    same_time_lower_id = mark_of({**USER, "id": 5000})
    assert older < same_time_lower_id < mark_of(USER)
    assert mark_of(USER) == Mark(1774685100.0, 5001)
    assert Mark.from_text(mark_of(USER).to_text()) == mark_of(USER)
    assert Mark.from_text(None) is None


def test_times_with_an_offset_or_none_are_read_as_utc() -> None:
    assert epoch_of("2026-03-28T08:05:00Z") == epoch_of("2026-03-28T10:05:00+02:00")
    assert epoch_of("2026-03-28T08:05:00") == epoch_of("2026-03-28T08:05:00Z")
    with pytest.raises(ValueError):
        epoch_of("yesterday")


@pytest.mark.parametrize("expression", ["*/5 * * *", "61 * * * *", "*/0 * * * *", "x * * * *", ""])
def test_a_bad_cron_names_the_setting_and_the_value(expression: str) -> None:
    with pytest.raises(BadCron) as refused:
        crontab_of(expression, "REFERRAL_POLL_CRON")
    assert str(refused.value).startswith(f"REFERRAL_POLL_CRON={expression!r} is not a cron expression")


@pytest.mark.parametrize("setting", ["REFERRAL_POLL_CRON", "REFERRAL_QUALIFY_POLL_CRON"])
def test_the_settings_refuse_a_bad_cron_at_start(setting: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**{setting: "every five minutes"})
    assert f"{setting}='every five minutes' is not a cron expression" in str(refused.value)


def test_beat_walks_every_5_minutes_and_backstops_every_15_when_the_integration_runs() -> None:
    entries = beat_entries(Settings(SYNC_INTEGRATIONS="clients,referral_leads"), queue=BULK_QUEUE)
    assert entries["referral-walk"]["task"] == WALK_START_TASK
    assert entries["referral-qualify-backstop"]["task"] == BACKSTOP_TASK
    assert entries["referral-walk"]["schedule"] == crontab_of("*/5 * * * *", "x")
    assert entries["referral-qualify-backstop"]["schedule"] == crontab_of("*/15 * * * *", "x")
    assert {entry["options"]["queue"] for entry in entries.values()} == {BULK_QUEUE}
    custom = Settings(
        SYNC_INTEGRATIONS="referral_leads",
        REFERRAL_POLL_CRON="*/2 * * * *",
        REFERRAL_QUALIFY_POLL_CRON="0 * * * *",
    )
    schedule = beat_schedule(custom)
    assert schedule["referral-walk"]["schedule"] == crontab_of("*/2 * * * *", "x")
    assert schedule["referral-qualify-backstop"]["schedule"] == crontab_of("0 * * * *", "x")


def test_beat_runs_neither_without_the_integration() -> None:
    schedule = beat_schedule(Settings(SYNC_INTEGRATIONS="clients"))
    assert not {"referral-walk", "referral-qualify-backstop"} & set(schedule)


def body(**fields: object) -> ReferralWebhook:
    return ReferralWebhook.model_validate(fields)


def test_the_body_names_the_user_by_id_else_code_else_email() -> None:
    assert source_id_of(body(id=5001, code="AB12CD", email="a@example.com")) == "5001"
    assert source_id_of(body(code="AB12CD", email="a@example.com")) == "code:AB12CD"
    assert source_id_of(body(email="a@example.com")) is None
    stored = sync_request(body(email="a@example.com", campaign_id=12))
    assert (stored.integration, stored.source_id, stored.email, stored.trigger) == (
        "referral_leads",
        None,
        "a@example.com",
        "webhook",
    )


def test_one_idempotency_key_per_event_and_user() -> None:
    join = body(event="user.join", id=5001, email="a@example.com")
    again = body(event="user.join", id=5001, email="other@example.com")
    unnamed_event = body(id=5001)
    other_event = body(event="lead.created", id=5001)
    keys = [idempotency_key(each, sync_request(each)) for each in (join, again, unnamed_event, other_event)]
    assert keys[0] == keys[1] == keys[2]  # the program's join, with or without its event name
    assert keys[3] != keys[0]
    by_email = body(email="A@Example.com")
    assert idempotency_key(by_email, sync_request(by_email)).endswith(":email:a@example.com")


def test_an_invalid_address_is_dropped_when_an_id_names_the_user() -> None:
    kept, skip = screened(sync_request(body(id=5001, email="not-an-address")), [])
    assert skip is None and kept.email is None and kept.source_id == "5001"
    _, skip = screened(sync_request(body(email="not-an-address")), [])
    assert skip is not None and skip.reason_code == "invalid_email"
    _, skip = screened(sync_request(body(id=5001, email="Staff@Example.com")), ["staff@example.com"])
    assert skip is not None and skip.reason_code == "excluded"


def test_the_walk_stores_a_schedule_sync_requested_at_the_pages_read() -> None:
    request = request_for(USER, 1774700000.5)
    assert request.integration == "referral_leads"
    assert (request.source_id, request.email, request.trigger) == ("5001", "ann@example.com", "schedule")
    assert request.requested_at == 1774700000.5
    assert request_for({**USER, "email": None}, 1.0).email is None


def test_a_walks_state_travels_as_kwargs() -> None:
    state = WalkState(run_id="r1", stop_at="1.0:2", newest="3.0:4", next_url="http://x/users?page=2", pages=1)
    assert WalkState.from_kwargs({**state.to_kwargs(), "attempt": 2}) == state
