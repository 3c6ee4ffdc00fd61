"""The referral-leads options the unit tests start from (``options(**changes)`` overrides some)."""

from __future__ import annotations

from typing import Any

from sync_worker.integrations.referral_leads.fieldmap import parse_field_map
from sync_worker.integrations.referral_leads.options import USER_TYPES, LeadOptions


def options(**changes: Any) -> LeadOptions:
    base: dict[str, Any] = {
        "user_types": USER_TYPES["referred"],
        "campaigns": frozenset(),
        "field_map": parse_field_map(None),
        "qualify_on": "property",
        "qualify_property": "Lead Status",
        "qualify_initial": "New",
        "qualify_values": ("Qualified", "Customer"),
        "display_timezone": "America/Toronto",
        "excluded_emails": ("support@example.com",),
    }
    return LeadOptions(**{**base, **changes})
