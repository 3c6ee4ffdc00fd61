"""The referral client's pure parts: the error table, the limiter's slices, links, halts."""

from __future__ import annotations

import pytest

from sync_worker.config import MissingSetting, Settings, secret
from sync_worker.errors import PermanentError, TransientError
from sync_worker.halts import CONTACT_SYNC_UPSTREAMS, REFERRAL, UPSTREAMS, halt_reason
from sync_worker.ratelimit.slices import sliced_budget, worst_span
from sync_worker.referral import (
    ReferralAuthError,
    ReferralClient,
    ReferralContractError,
    ReferralRateLimited,
    ReferralRequestError,
    ReferralUnavailable,
    error_for_response,
    same_origin,
)
from sync_worker.runtime import Runtime

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (401, ReferralAuthError, False),
        (403, ReferralAuthError, False),
        (404, ReferralRequestError, False),
        (422, ReferralRequestError, False),
        (429, ReferralRateLimited, True),
        (500, ReferralUnavailable, True),
        (503, ReferralUnavailable, True),
    ],
)
def test_one_error_table(status, kind, transient):
    error = error_for_response(status, {}, {"message": "Nope."}, operation="user", now=NOW)
    assert type(error) is kind and error.status == status and error.transient is transient
    assert isinstance(error, TransientError if transient else PermanentError)
    assert str(error).endswith(f"referral user answered {status}: Nope.")


def test_retry_after_seconds_or_date_and_a_default():
    assert error_for_response(429, {"retry-after": "7"}, None, operation="users", now=NOW).retry_after == 7
    dated = error_for_response(
        429, {"Retry-After": "Tue, 14 Nov 2023 22:13:30 GMT"}, None, operation="users", now=NOW
    )
    assert dated.retry_after == pytest.approx(10.0)
    assert error_for_response(429, {}, None, operation="users", now=NOW).retry_after == 1.0


@pytest.mark.parametrize(
    ("per_minute", "limit", "window"),
    [(540, 54, 6.0), (600, 60, 6.0), (25, 2, 6.0), (5, 1, 12.0), (1, 1, 60.0)],
)
def test_the_budget_is_taken_in_slices_of_the_minute(per_minute, limit, window):
    assert sliced_budget(per_minute, 60.0) == (limit, window)
    slices = 60.0 / window
    # Any 60-second span of the program's overlaps at most slices + 1 of our windows.
    assert worst_span(per_minute, 60.0) == (slices + 1) * limit <= per_minute * (1 + 1 / slices)


def test_the_default_budget_never_reaches_the_programs_600_in_any_minute():
    assert worst_span(540, 60.0) == 594 < 600
    assert sliced_budget(90, 2.0) == (9, 0.2) and worst_span(90, 2.0) == 99
    for bad in ((0, 60.0), (10, 0.0)):
        with pytest.raises(ValueError):
            sliced_budget(*bad)


def test_same_origin():
    base = "http://127.0.0.1:8083/api/v2"
    assert same_origin("http://127.0.0.1:8083/api/v2/users?page=2", base)
    assert same_origin("HTTP://127.0.0.1:8083/users", base)
    assert not same_origin("http://127.0.0.1:8084/users?page=2", base)
    assert not same_origin("https://127.0.0.1:8083/users", base)
    assert not same_origin("http://evil.example/users", base)


def test_a_revoked_token_halts_the_referral_upstream_alone():
    assert halt_reason(ReferralAuthError("revoked", status=401)) == (REFERRAL, "auth")
    assert halt_reason(ReferralRequestError("bad", status=422)) is None
    assert halt_reason(ReferralContractError("odd")) is None
    assert REFERRAL in UPSTREAMS and REFERRAL not in CONTACT_SYNC_UPSTREAMS


def test_the_token_is_never_in_the_repr():
    client = ReferralClient("http://127.0.0.1:1", "s3cret-token")
    assert "s3cret" not in repr(client) and "s3cret" not in str(vars(client).get("base_url"))


def test_settings_default_budget_and_secret_token(monkeypatch):
    monkeypatch.setenv("REFERRAL_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("REFERRAL_API_TOKEN", "s3cret-token")
    settings = Settings()
    assert settings.referral_calls_per_minute == 540 and settings.referral_timeout_seconds == 10.0
    assert "s3cret" not in repr(settings) and secret(settings.referral_api_token) == "s3cret-token"
    limiter = Runtime(settings).limiters[REFERRAL]
    assert (limiter.name, limiter.limit, limiter.window_seconds) == (REFERRAL, 54, 6.0)
    monkeypatch.setenv("REFERRAL_API_TOKEN", "  ")
    with pytest.raises(MissingSetting, match=r"^REFERRAL_API_TOKEN is not set$"):
        Runtime(Settings()).referral  # noqa: B018
