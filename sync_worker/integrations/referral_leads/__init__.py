"""The referral leads integration (placeholder of the referral-intake branch: the receiver's route
and the beat tasks need its name registered; the referral-leads branch's package replaces this
file at the merge, keeping ``routes``)."""

from __future__ import annotations

from typing import ClassVar

from sync_worker.integrations.base import Integration


class ReferralLeadsIntegration(Integration):
    name = "referral_leads"
    routes: ClassVar[tuple[str, ...]] = ("web.referrals:bp",)
