"""A required setting that is set but empty or blank is refused like an unset one."""

from __future__ import annotations

import pytest

from sync_worker.config import MissingSetting, Settings, require


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize(
    ("variable", "field"),
    [("INTERCOM_ACCESS_TOKEN", "intercom_access_token"), ("PLATFORM_API_TOKEN", "platform_api_token")],
)
def test_an_empty_token_is_not_set(monkeypatch, variable, field, blank):
    monkeypatch.setenv(variable, blank)
    with pytest.raises(MissingSetting, match=f"{variable} is not set"):
        require(Settings(), field)


def test_a_token_with_a_value_passes(monkeypatch):
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", "a-token")
    require(Settings(), "intercom_access_token")
