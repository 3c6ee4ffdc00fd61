"""The referral sandbox's sample: campaigns and users covering every rule of the referral-leads profile.

Guarantees:
- :func:`sample_users` and :func:`sample_campaigns` return fresh copies (a sandbox may change
  them); every user is a contract ``User`` under ``strict=True``
  (:func:`sync_worker.referral_records.user_problems`), every id and every code unique, every
  ``campaign_id`` a sample campaign, every ``referrer_id`` a sample user of the same campaign;
- :func:`validate_users` raises :class:`InvalidUser` listing every problem (fields and ids,
  never values), for the sample and for any users a test puts in a sandbox.

The sample (22 users, three campaigns, fictional people; times in 2025, UTC) and the rule each
user exercises; the integration tests rely on these ids:

=========  =============================================================================
user id    rule exercised
=========  =============================================================================
5001       direct (``person_referring``, ``Direct``) in campaign 12; the top of a referrer chain;
           ``meta`` Company
5002       referred by 5001 (``person_invited``, ``Referred``), ``meta`` Company and Phone
5003       referred by 5002: a chain 5003 -> 5002 -> 5001 (``referrer_name`` is 5002's)
5004       referred, no email (``null``): skipped ``email_required``
5005       referred, ``Maya.Chen@Example.com``: the Intercom sandbox's sample already has
           ``maya.chen@example.com`` as a user (the dev stack seeds it): that contact is updated
5006       referred, already qualified on the program's side (``qualified_at`` set)
5007       direct in campaign 14 (``Partner Program``)
5008       referred by 5007 in campaign 14, ``meta`` with a number and a boolean value
5009       referred in campaign 17 by 5011, source ``Widget``, ``meta`` label with spaces (``Team Size``)
5010       referred, unsubscribed (``unsubscribed_at`` set): still a lead
5011       direct in campaign 17, ``Embed``
5012       referred, empty email (``""``): skipped ``email_required``
5013       referred, an invalid email (``not-an-email``): skipped ``email_required``
5014       referred, ``url`` null and an empty ``first_name``
5015, 5016 one address (``sam.taylor@example.com``) referred in campaigns 12 and 17
5017       referred, optional fields (``referrer_id``, ``url``, ``unsubscribed_at``, ``meta``) absent
5018       direct, ``Api``, no referrals of its own
5019       referred by 5018, an email with capitals and spaces around it
5020       referred by 5001, ``meta`` empty
5021       referred, source ``Popup``, newest of campaign 14
5022       referred by 5001, the newest user of all
=========  =============================================================================

No user has ``no.account@example.com`` nor any platform sample address but 5005's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from sync_worker.referral_records import DIRECT, REFERRED, user_problems

#: An address the Intercom sandbox's sample has as a user (the dev stack seeds it).
INTERCOM_USER_EMAIL = "Maya.Chen@Example.com"

CAMPAIGNS: list[dict[str, Any]] = [
    {"id": 12, "name": "Friends of Northwind"},
    {"id": 14, "name": "Partner Program"},
    {"id": 17, "name": "Spring Referral Week"},
]


def _user(
    user_id: int,
    campaign_id: int,
    first_name: str,
    email: str | None,
    *,
    referred_by: int | None,
    signed_up_at: str,
    source: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    code = f"RF{user_id:05d}"
    record: dict[str, Any] = {
        "id": user_id,
        "campaign_id": campaign_id,
        "referrer_id": referred_by,
        "code": code,
        "url": f"https://sandbox.referral.invalid/r/{code}",
        "first_name": first_name,
        "email": email,
        "source": source or ("Referred" if referred_by is not None else "Direct"),
        "type": REFERRED if referred_by is not None else DIRECT,
        "signed_up_at": signed_up_at,
        "qualified_at": None,
        "unsubscribed_at": None,
        "meta": [],
    }
    record.update(extra)
    return record


USERS: list[dict[str, Any]] = [
    _user(
        5001,
        12,
        "Priya",
        "priya.raman@example.com",
        referred_by=None,
        signed_up_at="2025-01-10T15:00:00Z",
        meta=[{"field": "Company", "value": "Raman Consulting"}],
    ),
    _user(
        5002,
        12,
        "Lucas",
        "lucas.moreau@example.com",
        referred_by=5001,
        signed_up_at="2025-01-14T09:30:00Z",
        meta=[{"field": "Company", "value": "Moreau & Fils"}, {"field": "Phone", "value": "+1 514 555 0102"}],
    ),
    _user(5003, 12, "Amara", "amara.obi@example.com", referred_by=5002, signed_up_at="2025-01-20T18:45:00Z"),
    _user(5004, 12, "Kenji", None, referred_by=5001, signed_up_at="2025-02-02T11:00:00Z"),
    _user(5005, 12, "Maya", INTERCOM_USER_EMAIL, referred_by=5001, signed_up_at="2025-02-05T14:20:00Z"),
    _user(
        5006,
        12,
        "Rosa",
        "rosa.delgado@example.com",
        referred_by=5002,
        signed_up_at="2025-02-07T08:00:00Z",
        qualified_at="2025-02-21T16:00:00Z",
    ),
    _user(
        5007, 14, "Henrik", "henrik.lund@example.com", referred_by=None, signed_up_at="2025-02-10T10:00:00Z"
    ),
    _user(
        5008,
        14,
        "Chloe",
        "chloe.martin@example.com",
        referred_by=5007,
        signed_up_at="2025-02-12T13:15:00Z",
        meta=[{"field": "Seats", "value": 25}, {"field": "Newsletter", "value": True}],
    ),
    _user(
        5009,
        17,
        "Diego",
        "diego.santos@example.com",
        referred_by=5011,
        signed_up_at="2025-03-03T19:05:00Z",
        source="Widget",
        meta=[{"field": "Team Size", "value": "11-50"}],
    ),
    _user(
        5010,
        12,
        "Ingrid",
        "ingrid.berg@example.com",
        referred_by=5003,
        signed_up_at="2025-03-04T07:40:00Z",
        unsubscribed_at="2025-03-20T12:00:00Z",
    ),
    _user(
        5011,
        17,
        "Tariq",
        "tariq.haddad@example.com",
        referred_by=None,
        signed_up_at="2025-03-01T12:00:00Z",
        source="Embed",
    ),
    _user(5012, 12, "Mila", "", referred_by=5001, signed_up_at="2025-03-08T17:30:00Z"),
    _user(5013, 14, "Oskar", "not-an-email", referred_by=5007, signed_up_at="2025-03-10T09:00:00Z"),
    _user(
        5014, 12, "", "anon.lead@example.com", referred_by=5002, signed_up_at="2025-03-12T20:10:00Z", url=None
    ),
    _user(5015, 12, "Sam", "sam.taylor@example.com", referred_by=5001, signed_up_at="2025-03-15T10:00:00Z"),
    _user(5016, 17, "Sam", "sam.taylor@example.com", referred_by=5011, signed_up_at="2025-03-16T10:00:00Z"),
    {
        "id": 5017,
        "campaign_id": 14,
        "code": "RF05017",
        "first_name": "Wen",
        "email": "wen.li@example.com",
        "source": "Referred",
        "type": REFERRED,
        "signed_up_at": "2025-03-18T06:30:00Z",
        "qualified_at": None,
    },
    _user(
        5018,
        12,
        "Abebe",
        "abebe.tesfaye@example.com",
        referred_by=None,
        signed_up_at="2025-03-19T15:00:00Z",
        source="Api",
    ),
    _user(
        5019, 12, "Noor", "  Noor.Rahman@Example.com ", referred_by=5018, signed_up_at="2025-03-21T11:11:00Z"
    ),
    _user(
        5020, 12, "Jonas", "jonas.weber@example.com", referred_by=5001, signed_up_at="2025-03-24T09:45:00Z"
    ),
    _user(
        5021,
        14,
        "Lea",
        "lea.fischer@example.com",
        referred_by=5007,
        signed_up_at="2025-03-26T16:20:00Z",
        source="Popup",
    ),
    _user(
        5022, 12, "Aisha", "aisha.bello@example.com", referred_by=5001, signed_up_at="2025-03-28T08:05:00Z"
    ),
]


class InvalidUser(ValueError):
    """Users that break the contract or the sample's own rules; the message lists every problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def validate_users(
    users: Iterable[Any], campaigns: Iterable[Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``users`` as a list when every one is a strict contract ``User``, ids and codes unique,
    and (given ``campaigns``) every campaign known and every referrer a user of the same campaign."""
    users = list(users)
    problems: list[str] = []
    for index, user in enumerate(users):
        problems += [f"user #{index}: {problem}" for problem in user_problems(user, strict=True)]
    if problems:
        raise InvalidUser(problems)
    ids = [user["id"] for user in users]
    codes = [user["code"] for user in users]
    if len(set(ids)) != len(ids):
        problems.append("user ids are not unique")
    if len(set(codes)) != len(codes):
        problems.append("user codes are not unique")
    if campaigns is not None:
        known = {campaign["id"] for campaign in campaigns}
        by_id = {user["id"]: user for user in users}
        for user in users:
            if user["campaign_id"] not in known:
                problems.append(f"user {user['id']}: campaign_id is not a campaign")
            referrer = by_id.get(user.get("referrer_id")) if user.get("referrer_id") is not None else None
            if user.get("referrer_id") is not None and (
                referrer is None or referrer["campaign_id"] != user["campaign_id"]
            ):
                problems.append(f"user {user['id']}: referrer_id is not a user of its campaign")
    if problems:
        raise InvalidUser(problems)
    return [dict(user) for user in users]


def sample_users() -> list[dict[str, Any]]:
    """The sample users (fresh copies, checked)."""
    return validate_users(copy.deepcopy(USERS), CAMPAIGNS)


def sample_campaigns() -> list[dict[str, Any]]:
    """The sample campaigns (fresh copies)."""
    return copy.deepcopy(CAMPAIGNS)
