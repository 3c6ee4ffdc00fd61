"""Who is sent to Intercom: the program's user types and campaigns chosen, and an email.

Guarantees (pure): :func:`skip_reason` answers None for a user that is sent, else one reason code:
``type_not_sent`` (its ``type`` is not one ``REFERRAL_USER_TYPES`` sends), ``campaign_not_sent``
(``REFERRAL_CAMPAIGNS`` names campaigns and not its own), ``email_required`` (no email, or one
that is not an address: Intercom needs one), ``excluded`` (``SYNC_EXCLUDED_EMAILS``), checked in
that order. A skip is final for that user as it is: retrying gives the same answer, so a skip is
an outcome, never an error (no retry, no dead letter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_worker.integrations.referral_leads.options import LeadOptions
from sync_worker.screening import EXCLUDED, is_valid_email, screen

TYPE_NOT_SENT = "type_not_sent"
CAMPAIGN_NOT_SENT = "campaign_not_sent"
EMAIL_REQUIRED = "email_required"


def skip_reason(user: Mapping[str, Any], options: LeadOptions) -> str | None:
    if user.get("type") not in options.user_types:
        return TYPE_NOT_SENT
    if options.campaigns and user.get("campaign_id") not in options.campaigns:
        return CAMPAIGN_NOT_SENT
    email = user.get("email")
    if not isinstance(email, str) or not is_valid_email(email):
        return EMAIL_REQUIRED
    found = screen(email, excluded=options.excluded_emails)
    if found is not None:
        return EXCLUDED if found.reason_code == EXCLUDED else EMAIL_REQUIRED
    return None
