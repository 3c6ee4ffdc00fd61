"""Who is not synced: exclusions from each of the three addresses and invalid emails."""

from __future__ import annotations

import dataclasses

import pytest

from sync_worker.screening import EXCLUDED, INVALID_EMAIL, Skip, is_valid_email, normalise_email, screen

EXCLUDED_LIST = ["support@ruhcare.com", " Billing@RuhCare.com ", "noreply@ruhcare.com"]


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        (" Sami@Example.COM ", "sami@example.com"),
        ("sami@example.com", "sami@example.com"),
        (None, ""),
        ("", ""),
    ],
)
def test_normalise_email(email, expected):
    assert normalise_email(email) == expected


def test_a_client_email_passes():
    assert screen("sami@example.com", excluded=EXCLUDED_LIST) is None
    assert (
        screen("sami@example.com", author_email="sami@example.com", reply_to="x@example.org", excluded=[])
        is None
    )


@pytest.mark.parametrize(
    ("kwargs", "label"),
    [
        ({"email": "support@ruhcare.com"}, "contact email"),
        ({"email": "  SUPPORT@RuhCare.com  "}, "contact email"),
        ({"email": "billing@ruhcare.com"}, "contact email"),  # the list entry itself is trimmed / lower-cased
        ({"email": "sami@example.com", "author_email": "NoReply@ruhcare.com"}, "author email"),
        ({"email": "sami@example.com", "reply_to": " billing@ruhcare.com"}, "reply-to"),
        (
            {"email": "sami@example.com", "author_email": "a@example.com", "reply_to": "support@ruhcare.com"},
            "reply-to",
        ),
    ],
)
def test_excluded_addresses_are_skipped(kwargs, label):
    skip = screen(excluded=EXCLUDED_LIST, **kwargs)
    assert skip == Skip(EXCLUDED, f"Excluded email address ({label})")
    assert skip.reason == EXCLUDED


def test_an_excluded_but_malformed_trigger_is_reported_as_excluded():
    skip = screen("not-an-email", reply_to="support@ruhcare.com", excluded=EXCLUDED_LIST)
    assert skip is not None and skip.reason_code == EXCLUDED


def test_an_empty_excluded_list_excludes_nothing():
    assert screen("support@ruhcare.com", excluded=[]) is None
    assert screen("sami@example.com", author_email="", excluded=["", " "]) is None


@pytest.mark.parametrize(
    ("email", "shown"),
    [
        ("sami", "sami"),
        ("sami@", "sami@"),
        ("@example.com", "@example.com"),
        ("sami@example", "sami@example"),
        ("sami@@example.com", "sami@@example.com"),
        ("sami@example..com", "sami@example..com"),
        ("sami @example.com", "sami @example.com"),
        (".sami@example.com", ".sami@example.com"),
        ("sami.@example.com", "sami.@example.com"),
        ("sa..mi@example.com", "sa..mi@example.com"),
        ("sami@-example.com", "sami@-example.com"),
        ("sami@example.c", "sami@example.c"),
        ("sami@example.com,other@example.com", "sami@example.com,other@example.com"),
        ("<sami@example.com>", "<sami@example.com>"),
        (" sami@exa mple.com ", "sami@exa mple.com"),
        ("", "(empty)"),
        (None, "(empty)"),
        ("a" * 65 + "@example.com", "a" * 65 + "@example.com"),
    ],
)
def test_invalid_emails_are_skipped_with_a_user_facing_reason(email, shown):
    assert screen(email, excluded=EXCLUDED_LIST) == Skip(INVALID_EMAIL, f"Invalid email address: {shown}")


@pytest.mark.parametrize(
    "email",
    [
        "sami@example.com",
        " Sami.Ruhsuf@Example.COM ",
        "sami+intercom@example.co.uk",
        "o'brien@example.ie",
        "user_1@sub.domain-name.example",
        "a" * 64 + "@example.com",
        "sami@bücher.de",
        "sami@example.xn--p1ai",
    ],
)
def test_valid_emails_pass(email):
    assert is_valid_email(email)
    assert screen(email, excluded=EXCLUDED_LIST) is None


def test_skip_is_frozen():
    skip = Skip(EXCLUDED, "Excluded email address (contact email)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        skip.message = "changed"  # type: ignore[misc]
