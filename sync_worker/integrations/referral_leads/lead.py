"""What a referral user writes on its Intercom contact (the lead), computed from the program's records.

Guarantees (pure: records, options and a zone in, values out):
- :func:`referral_values` gives every referral field of :mod:`.fieldmap` as text, or None when the
  program has nothing for it: ``referrer_name`` / ``referrer_email`` are the ``first_name`` and
  ``email`` of the user named by ``referrer_id`` (passed in), ``campaign_name`` the campaign's name
  (passed in), ``signed_up_at`` a date-time in the display zone as ``docs/integrations/clients.md``
  shows one (``Jan 22, 2026 - 11:00 a.m. EST``), ``meta.<label>`` the form field with that label;
- :func:`lead_update` places them by the field map: standard fields (``email``, ``name``) apart
  from custom attributes; a field mapped to None, or without a value, is not in the update at
  all; every value is cut to Intercom's 255 characters; it always has ``Referral ID`` (the
  program's user id) and ``Referral Status`` (``Qualified`` once the program or our record says
  so, else ``Pending``);
- :func:`initial_values`: with the ``property`` method, the qualifying property's initial value,
  unless the contact already has a value for it (a one-time value, never in the fingerprint);
- :func:`fingerprint` hashes the custom attributes of an update (key order does not matter), so
  a run whose values did not change writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_worker.attributes import truncate
from sync_worker.formatting import format_datetime, parse_utc
from sync_worker.integrations.referral_leads.fieldmap import (
    META_PREFIX,
    REFERRAL_ID,
    REFERRAL_STATUS,
    STANDARD_EMAIL,
    STANDARD_NAME,
    FieldMap,
)
from sync_worker.integrations.referral_leads.options import LeadOptions
from sync_worker.screening import normalise_email

PENDING = "Pending"
QUALIFIED = "Qualified"
#: bumped when the rules here change what is written: every lead is written again once
VERSION = "1"


@dataclass(frozen=True)
class LeadUpdate:
    """One contact write: standard fields (``email``, ``name``) and custom attributes."""

    standard: dict[str, str] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        parts = [part for part in (_text(each) for each in value) if part]
        return ", ".join(parts) or None
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _meta(user: Mapping[str, Any]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for item in user.get("meta") or []:
        if isinstance(item, Mapping) and isinstance(item.get("field"), str):
            found.setdefault(f"{META_PREFIX}{item['field'].strip()}", _text(item.get("value")))
    return found


def referral_values(
    user: Mapping[str, Any],
    *,
    referrer: Mapping[str, Any] | None,
    campaign_name: str | None,
    zone: str,
) -> dict[str, str | None]:
    """Every referral field of ``user`` as text (None: the program has nothing for it)."""
    signed_up = user.get("signed_up_at")
    email = user.get("email")
    return {
        "first_name": _text(user.get("first_name")),
        "email": normalise_email(email) if isinstance(email, str) and email.strip() else None,
        "code": _text(user.get("code")),
        "url": _text(user.get("url")),
        "source": _text(user.get("source")),
        "type": _text(user.get("type")),
        "campaign_id": _text(user.get("campaign_id")),
        "campaign_name": _text(campaign_name),
        "referrer_name": _text(referrer.get("first_name")) if referrer else None,
        "referrer_email": _text(referrer.get("email")) if referrer else None,
        "signed_up_at": format_datetime(parse_utc(signed_up), zone) if isinstance(signed_up, str) else None,
        **_meta(user),
    }


def status(*, reported: bool) -> str:
    return QUALIFIED if reported else PENDING


def lead_update(
    values: Mapping[str, str | None], field_map: FieldMap, *, referral_id: int | str, reported: bool
) -> LeadUpdate:
    """The write of ``values`` by ``field_map`` (see the module's guarantees)."""
    standard: dict[str, str] = {}
    custom: dict[str, str] = {}
    for name, target in field_map.sent():
        value = values.get(name)
        if value is None:
            continue
        if target in (STANDARD_NAME, STANDARD_EMAIL):
            standard[target] = truncate(value)
        else:
            custom[target] = truncate(value)
    custom[REFERRAL_ID] = str(referral_id)
    custom[REFERRAL_STATUS] = status(reported=reported)
    return LeadUpdate(standard, custom)


def initial_values(options: LeadOptions, contact_custom: Mapping[str, Any] | None) -> dict[str, str]:
    """The qualifying property's initial value for a contact that has none (``property`` only)."""
    if not options.by_property or not options.qualify_initial:
        return {}
    current = (contact_custom or {}).get(options.qualify_property)
    if current not in (None, ""):
        return {}
    return {options.qualify_property: truncate(options.qualify_initial)}


def fingerprint(update: LeadUpdate) -> str:
    document = {"version": VERSION, "custom_attributes": update.custom}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
