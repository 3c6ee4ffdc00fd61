"""The referral-leads integration: a referral program's referred people as Intercom leads, and their
qualification in Intercom reported back to the program (``docs/integrations/referral_leads.md``).

Guarantees: what a lead gets is :mod:`.lead` (by ``REFERRAL_FIELD_MAP``, :mod:`.fieldmap`), who is
sent :mod:`.eligibility`, when a lead qualifies :mod:`.qualification` (all pure); a run is
:class:`~.pipeline.ReferralLeadSync` (its docstring lists the steps), its Redis records
:mod:`.state`. It is the first integration that writes to a system other than Intercom: the
qualification is reported once per referral, retried, parked and replayable like any sync.

Interface for the other parts of the integration (the receiver's route, beat's walk and backstop):

- a sync of a referral user is ``SyncRequest(integration="referral_leads", source_id=str(user_id),
  trigger=...)`` (``source_id="code:<code>"``, or ``email=...`` with no ``source_id``, when the
  program's webhook names only those), stored with ``enqueue_sync``; ``sync_contact`` runs it;
- the pipeline is ``runtime.pipeline("referral_leads")`` (a :class:`~.pipeline.ReferralLeadSync`):
  ``run(request) -> list[SyncOutcome]`` and ``intercom_calls(request) -> int`` (``tasks.py``);
  ``apply(user: Mapping, request) -> SyncOutcome``: the lead write for a user already read (a
  page of the walk: no program call for the user itself); ``handled(user_id) -> bool``: a lead
  was written or a skip decided (the walk stops at users already handled);
  ``qualify_contact(contact: Mapping, request) -> SyncOutcome``: the qualification decision and
  report for a contact already read (its errors are the caller's: a backstop that wants the
  task's retries and dead letters stores ``SyncRequest(integration="referral_leads",
  source_id=<its Referral ID>, contact_id=<its id>, trigger="schedule")`` instead);
  :func:`~.pipeline.backstop_query` ``(options)``: Intercom's search for the pending referral
  contacts that qualify now; ``options`` is the pipeline's ``.options``;
- outcomes: ``synced``, ``unchanged``, ``qualified`` (reported by this run), ``skipped`` (reason
  ``type_not_sent``, ``campaign_not_sent``, ``email_required``, ``excluded``), ``gone`` (reason
  ``referral_not_found`` or ``contact_gone``), ``not_referral`` (an Intercom contact that is none).

Intercom webhooks: it subscribes to :data:`TOPICS`; :meth:`ReferralLeadsIntegration.webhook_request`
(pure) asks a sync only for a contact that is, or may be, a pending referral: one with a
``Referral ID`` whose ``Referral Status`` is not ``Qualified`` (or is, while the property method's
value may have moved back: logged), and for ``contact.user.created`` / ``contact.merged`` one
without, by its email (the worker looks the email up in its pairing; an unrelated contact costs
one Redis read, no API call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sync_worker.integrations.base import Integration
from sync_worker.integrations.referral_leads.fieldmap import REFERRAL_ID, REFERRAL_STATUS
from sync_worker.integrations.referral_leads.lead import QUALIFIED

if TYPE_CHECKING:
    from sync_worker.dispatch import SyncRequest
    from sync_worker.referral_intake.pipeline import PagedReferralSync
    from sync_worker.runtime import Runtime

NAME = "referral_leads"
LEAD_UPDATED = "contact.lead.updated"
USER_UPDATED = "contact.user.updated"
SIGNED_UP = "contact.lead.signed_up"
USER_CREATED = "contact.user.created"
MERGED = "contact.merged"
TOPICS = frozenset({LEAD_UPDATED, USER_UPDATED, SIGNED_UP, USER_CREATED, MERGED})
#: topics about a contact that may be a referral's without carrying its Referral ID yet
BY_EMAIL_TOPICS = frozenset({USER_CREATED, MERGED})


def webhook_request(topic: str, contact: Mapping[str, Any]) -> SyncRequest | None:
    """The sync an Intercom notification about ``contact`` asks (pure; see the module's docstring)."""
    from sync_worker.dispatch import SyncRequest

    if topic not in TOPICS or not isinstance(contact, Mapping):
        return None
    contact_id = contact.get("id")
    if not isinstance(contact_id, str) or not contact_id:
        return None
    email = contact.get("email") if isinstance(contact.get("email"), str) else None
    custom = contact.get("custom_attributes")
    custom = custom if isinstance(custom, Mapping) else {}
    referral_id = custom.get(REFERRAL_ID)
    referral_id = str(referral_id).strip() if referral_id is not None else ""
    common = {"integration": NAME, "contact_id": contact_id, "email": email, "trigger": "webhook"}
    if referral_id.isdigit():
        if custom.get(REFERRAL_STATUS) == QUALIFIED and topic not in (LEAD_UPDATED, USER_UPDATED):
            return None
        return SyncRequest(**common, source_id=referral_id, force_write=False)
    if topic in BY_EMAIL_TOPICS and email and email.strip():
        return SyncRequest(**common, force_write=False)
    return None


class ReferralLeadsIntegration(Integration):
    name = NAME
    webhook_topics: ClassVar[frozenset[str]] = TOPICS
    #: the program's webhook (``web/referrals.py``)
    routes: ClassVar[tuple[str, ...]] = ("web.referrals:bp",)
    sandbox_dataset = "sync_worker.devtools.sandbox.referral_dataset"

    def pipeline(self, runtime: Runtime) -> PagedReferralSync:
        """The pipeline, its users read from the program's newest page where a burst allows
        (:mod:`sync_worker.referral_intake.pipeline`)."""
        from sync_worker.integrations.referral_leads.options import lead_options
        from sync_worker.integrations.referral_leads.pipeline import ReferralLeadSync
        from sync_worker.integrations.referral_leads.state import ReferralState
        from sync_worker.referral_intake.pipeline import paged

        options = lead_options(runtime.settings)  # first: a setting that cannot work stops the start here
        inner = ReferralLeadSync(
            intercom=runtime.intercom,
            referral=runtime.referral,
            schema=runtime.schema,
            state=ReferralState(runtime.redis),
            options=options,
        )
        return paged(inner, runtime)

    def webhook_request(self, topic: str, contact: Mapping[str, Any]) -> SyncRequest | None:
        return webhook_request(topic, contact)


__all__ = ["NAME", "TOPICS", "ReferralLeadsIntegration", "webhook_request"]
