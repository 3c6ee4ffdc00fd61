"""The wait of an email-only trigger for Intercom's search (pure)."""

from __future__ import annotations

from sync_worker.searchwait import SearchWait, carried, next_search


def test_the_countdown_grows_with_the_tries_and_never_passes_the_end_of_the_wait() -> None:
    wait = SearchWait(since=1000.0, tries=0)
    countdown, after = next_search(wait, 1000.0, wait_seconds=600, backoff=lambda tries: 2.0**tries)
    assert (countdown, after) == (1.0, SearchWait(1000.0, 1))
    countdown, _ = next_search(SearchWait(1000.0, 9), 1590.0, wait_seconds=600, backoff=lambda t: 2.0**t)
    assert countdown == 10.0  # 512 s of backoff, cut to the 10 s left: the last search is at the end


def test_the_wait_is_over_at_its_end() -> None:
    assert next_search(SearchWait(1000.0, 4), 1600.0, wait_seconds=600, backoff=lambda t: 1.0) is None
    assert next_search(SearchWait(1000.0, 0), 1000.0, wait_seconds=0, backoff=lambda t: 1.0) is None


def test_a_message_without_a_wait_starts_one_and_a_wait_travels_through_other_retries() -> None:
    assert SearchWait.from_kwargs({"email": "x"}, 5.0) == SearchWait(5.0, 0)
    travelling = SearchWait(5.0, 3).to_kwargs()
    assert SearchWait.from_kwargs(travelling, 99.0) == SearchWait(5.0, 3)
    assert carried({"email": "x", **travelling}) == travelling
    assert carried({"email": "x"}) == {}
