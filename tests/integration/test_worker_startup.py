"""A worker started without its credentials, or with a setting it cannot use, stops at once with one
line naming the setting."""

from __future__ import annotations

import os
import subprocess

from sync_worker.devtools.processes import worker_argv


def test_worker_without_intercom_token_names_the_missing_setting(service_env):
    env = {k: v for k, v in service_env.items() if k != "INTERCOM_ACCESS_TOKEN"}
    clean = {k: v for k, v in os.environ.items() if k != "INTERCOM_ACCESS_TOKEN"}
    finished = subprocess.run(worker_argv(), env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if "INTERCOM_ACCESS_TOKEN" in line]
    assert lines == ["intercom-sync worker: INTERCOM_ACCESS_TOKEN is not set"], finished.stderr
    assert "Traceback" not in finished.stderr


def _refusal(service_env: dict[str, str], setting: str, value: str) -> list[str]:
    """The lines naming ``setting`` a worker started with ``setting=value`` prints as it refuses to start."""
    env = {**os.environ, **service_env, setting: value}
    finished = subprocess.run(worker_argv(), env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    assert "Traceback" not in finished.stderr
    return [line for line in finished.stderr.splitlines() if setting in line]


def test_worker_with_an_unknown_display_zone_does_not_start(service_env):
    """Every contact would fail the same way: the worker refuses to start, naming the setting."""
    assert _refusal(service_env, "SYNC_DISPLAY_TIMEZONE", "Mars/Olympus_Mons") == [
        "intercom-sync worker: SYNC_DISPLAY_TIMEZONE: unknown time zone 'Mars/Olympus_Mons': "
        "expected an IANA name like 'America/Toronto'"
    ]


def test_worker_with_an_unknown_integration_does_not_start(service_env):
    """``SYNC_INTEGRATIONS`` naming an integration that is not registered: one line, the known ones."""
    assert _refusal(service_env, "SYNC_INTEGRATIONS", "clients,dealers") == [
        "intercom-sync worker: SYNC_INTEGRATIONS: unknown integration 'dealers' (known: clients, dealer_users, referral_leads)"
    ]


def test_worker_with_a_referral_field_map_that_cannot_work_does_not_start(service_env):
    """An unknown referral field: one line naming the setting and the field, no traceback."""
    env = {**service_env, "SYNC_INTEGRATIONS": "clients,referral_leads"}
    assert _refusal(env, "REFERRAL_FIELD_MAP", '{"nickname": "Nick"}') == [
        "intercom-sync worker: REFERRAL_FIELD_MAP: unknown referral field 'nickname' (known: first_name, "
        "email, code, url, source, type, campaign_id, campaign_name, referrer_name, referrer_email, "
        "signed_up_at, meta.<label>)"
    ]


def test_worker_qualifying_by_property_without_values_does_not_start(service_env):
    env = {**service_env, "SYNC_INTEGRATIONS": "referral_leads", "REFERRAL_QUALIFY_ON": "property"}
    assert _refusal(env, "REFERRAL_QUALIFY_VALUES", "") == [
        "intercom-sync worker: REFERRAL_QUALIFY_VALUES is empty: REFERRAL_QUALIFY_ON=property needs the "
        "values that qualify"
    ]


def test_worker_with_a_dealer_users_name_intercom_refuses_does_not_start(service_env):
    """``USERS_ATTRIBUTE_NAMES`` is checked at start like ``SYNC_ATTRIBUTE_NAMES``, and named."""
    env = {**service_env, "SYNC_INTEGRATIONS": "clients,dealer_users"}
    assert _refusal(env, "USERS_ATTRIBUTE_NAMES", '{"roles": "Roles.v2"}') == [
        "intercom-sync worker: USERS_ATTRIBUTE_NAMES: invalid_attribute_name: invalid Intercom attribute name 'Roles.v2' "
        "(attribute 'roles'): Intercom does not allow . in attribute names"
    ]
