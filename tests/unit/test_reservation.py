"""A run's reservation session and the reservation a Celery message carries (pure: no Redis)."""

from __future__ import annotations

import redis as redis_lib

from sync_worker.ratelimit import Reservation, reserving
from sync_worker.ratelimit.reservation import current


def test_a_reservation_survives_a_message_and_anything_malformed_reads_as_none():
    held = Reservation("intercom", 179_631_025, 2)
    assert Reservation.from_kwargs(held.to_kwargs()) == held
    for malformed in (None, "x", {}, {"upstream": "intercom", "window": "soon", "tokens": 1}):
        assert Reservation.from_kwargs(malformed) is None
    assert Reservation.from_kwargs({"upstream": "intercom", "window": 5, "tokens": 0}) is None
    assert Reservation.from_kwargs({"upstream": "intercom", "window": -1, "tokens": 2}) is None


def test_a_session_asks_for_the_runs_calls_first_then_one_at_a_time():
    with reserving("intercom", 2) as session:
        assert current("intercom") is session and current("platform") is None
        assert session.wanted() == 2
        session.held = Reservation("intercom", 7, 1)
        assert session.wanted() == 1  # what it holds
        session.held, session.started = None, True
        assert session.wanted() == 1  # a call beyond the planned ones
    assert current("intercom") is None


def test_a_session_gives_back_what_it_holds_unless_a_reschedule_carries_it():
    given: list[Reservation] = []
    with reserving("intercom", 2) as session:
        session.give_back = given.append
        session.held = Reservation("intercom", 7, 1)
    assert given == [Reservation("intercom", 7, 1)]

    given.clear()
    with reserving("intercom", 2, Reservation("intercom", 8, 2)) as session:
        session.give_back = given.append
        assert session.carry() == Reservation("intercom", 8, 2)
    assert given == []


def test_a_reservation_of_another_upstream_is_not_redeemed_and_a_failed_give_back_is_only_logged():
    with reserving("intercom", 2, Reservation("platform", 8, 2)) as session:
        assert session.held is None

    def refuse(_: Reservation) -> None:
        raise redis_lib.ConnectionError("Redis went away")

    with reserving("intercom", 1) as session:
        session.give_back = refuse
        session.held = Reservation("intercom", 9, 1)
    assert current("intercom") is None
