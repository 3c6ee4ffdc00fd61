"""The Intercom sandbox's contact listing (in memory): every live contact once, in creation order.

The listing reads only the page it answers (a benchmark walks 100,000 contacts), so these
check it against the plain definition: the live contacts in creation order, cut in pages.
"""

from __future__ import annotations

import math
import random

import pytest

from sync_worker.devtools.sandbox.intercom import ApiError, IntercomState


def walk(state: IntercomState, per_page: int) -> list[dict]:
    pages, cursor = [], None
    while True:
        page = state.list_contacts(per_page, cursor)
        pages.append(page)
        following = page["pages"].get("next")
        if not following:
            return pages
        cursor = following["starting_after"]


@pytest.mark.parametrize("seed", range(8))
def test_walking_the_pages_lists_every_live_contact_once_in_order(seed):
    rng = random.Random(seed)
    state = IntercomState()
    ids = [state.add_contact({"email": f"c{i}@example.com"})["id"] for i in range(rng.randint(0, 40))]
    merged = set(rng.sample(ids, k=len(ids) // 3))  # anywhere, the last ones included
    survivors = [i for i in ids if i not in merged]
    for contact_id in merged:
        state.merge(contact_id, rng.choice(survivors))
    live = [c["id"] for c in state.all_contacts()]
    per_page = rng.randint(1, 7)

    pages = walk(state, per_page)

    assert [c["id"] for page in pages for c in page["data"]] == live
    expected_pages = max(1, math.ceil(len(live) / per_page))
    assert len(pages) == expected_pages
    for number, page in enumerate(pages, start=1):
        assert page["total_count"] == len(live)
        assert page["pages"]["page"] == number and page["pages"]["total_pages"] == expected_pages
        assert ("next" in page["pages"]) == (number < expected_pages)


def test_a_bad_cursor_or_page_size_is_refused():
    state = IntercomState()
    state.add_contact({"email": "a@example.com"})
    for per_page, cursor in ((0, None), (151, None), (10, "bm90LWEtY3Vyc29y")):
        with pytest.raises(ApiError) as raised:
            state.list_contacts(per_page, cursor)
        assert raised.value.status == 400
