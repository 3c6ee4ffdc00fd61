"""One referral's run: the program's user read through its API, its lead written, its qualification reported.

Guarantees (the order of :meth:`ReferralLeadSync.run`):
1. the referral user is named by the request's ``source_id`` (the program's user id, or
   ``code:<code>``), else by its ``email`` (the program's webhook named only that), else, for an
   Intercom contact without ``Referral ID`` (``contact.user.created`` / ``contact.merged``), by
   the contact's email in our pairing (none: ``not_referral``, no call made); the webhook body is
   never trusted: the user is read through the program's API before anything is written from it;
2. a request about an Intercom contact (``contact_id``: an Intercom webhook, the backstop) reads
   the contact as it is now and decides its qualification (:mod:`.qualification`) against the
   value last seen for the referral; a qualification is reported once per referral
   (``PUT /users/qualification``): nothing is sent when the program has ``qualified_at`` or our
   record says reported; a Redis claim keeps two runs from both reporting; a failed report lets
   the claim go and raises (transient: the task retries with backoff, then parks; a replay sends
   it once); the value last seen is remembered only after the report;
3. the user is skipped per :mod:`.eligibility` (an outcome, never retried, no dead letter);
4. its lead is written by :class:`~.leadwriter.LeadWriter` (the pairing kept in Redis, else one
   Intercom search on ``Referral ID`` or email: a user or a lead with it is updated, no
   duplicate; else a lead is created), with the field map's values (:mod:`.lead`) and only what
   changed, so our own write echoing back as a webhook writes nothing and reports nothing;
5. a request about an Intercom contact whose lead is paired and written reads the program only
   when it reports: an echo of our own write costs one Intercom read and nothing else.

Every error is a :class:`~sync_worker.errors.SyncError`; retries are the task's business.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_worker.dispatch import SyncRequest
from sync_worker.errors import PermanentError, TransientError
from sync_worker.integrations.referral_leads import eligibility, qualification
from sync_worker.integrations.referral_leads.fieldmap import REFERRAL_ID, REFERRAL_STATUS
from sync_worker.integrations.referral_leads.lead import (
    QUALIFIED,
    lead_update,
    referral_values,
)
from sync_worker.integrations.referral_leads.leadwriter import LeadWriter, referral_search
from sync_worker.integrations.referral_leads.options import LeadOptions
from sync_worker.integrations.referral_leads.state import ReferralRecord, ReferralState
from sync_worker.intercom import ContactMerged, IntercomClient, IntercomNotFound
from sync_worker.logs import log_event
from sync_worker.referral import ReferralClient
from sync_worker.schema import AttributeSchema
from sync_worker.screening import normalise_email
from sync_worker.sync import SyncOutcome

logger = logging.getLogger(__name__)

NAME = "referral_leads"
CODE_PREFIX = "code:"
EMAIL_PREFIX = "email:"
NOT_REFERRAL = "not_referral"
REFERRAL_NOT_FOUND = "referral_not_found"
#: how long a qualification claim outlives a run that died holding it
QUALIFY_CLAIM_SECONDS = 300


def backstop_query(options: LeadOptions) -> dict[str, Any]:
    """Intercom's search query for pending referral contacts that qualify now (the backstop's)."""
    pending = {"field": f"custom_attributes.{REFERRAL_STATUS}", "operator": "=", "value": "Pending"}
    if options.by_property:
        qualifying: dict[str, Any] = {
            "field": f"custom_attributes.{options.qualify_property}",
            "operator": "IN",
            "value": list(options.qualify_values),
        }
    else:
        qualifying = {"field": "role", "operator": "=", "value": qualification.USER}
    return {"operator": "AND", "value": [pending, qualifying]}


def _outcome(status: str, contact_id: str | None, request: SyncRequest, **more: Any) -> SyncOutcome:
    return SyncOutcome(status, contact_id, request.trigger, **more)


@dataclass
class ReferralLeadSync:
    """Everything a run needs, passed in (``runtime`` wires it: :meth:`ReferralLeadsIntegration.pipeline`)."""

    intercom: IntercomClient
    referral: ReferralClient
    schema: AttributeSchema
    state: ReferralState
    options: LeadOptions
    new_token: Callable[[], str] = lambda: uuid.uuid4().hex
    writer: LeadWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = LeadWriter(self.intercom, self.schema, self.state, self.options, self.new_token)

    # --- the pipeline's interface (tasks.py) ---------------------------------------------

    def intercom_calls(self, request: SyncRequest) -> int:
        """The Intercom calls a run plans (taken together): about a contact, its read and a write;
        a paired lead, its write; else the search and the create or write."""
        if request.contact_id:
            return 2
        if (
            request.source_id
            and request.source_id.isdigit()
            and self.state.load(request.source_id).contact_id
        ):
            return 1
        return 2

    def run(self, request: SyncRequest) -> list[SyncOutcome]:
        return [self._run(request)]

    # --- entry points for the reconciliation walk and the backstop -----------------------

    def handled(self, referral_id: int | str) -> bool:
        """Was a lead written (or a skip decided) for this referral user? (the walk stops there)"""
        return self.state.load(referral_id).handled

    def apply(self, user: Mapping[str, Any], request: SyncRequest) -> SyncOutcome:
        """Steps 3 and 4 for a user already read (a page of the reconciliation walk)."""
        return self._write_lead(user, request, self.state.load(user["id"]), contact=None)

    def qualify_contact(self, contact: Mapping[str, Any], request: SyncRequest) -> SyncOutcome:
        """Step 2 for a contact already read (the backstop's search result), then its status written."""
        referral_id = (contact.get("custom_attributes") or {}).get(REFERRAL_ID)
        if not referral_id:
            return _outcome(NOT_REFERRAL, contact.get("id"), request)
        return self._about_contact(str(referral_id), dict(contact), request, user=None)

    # --- steps -------------------------------------------------------------------------

    def _run(self, request: SyncRequest) -> SyncOutcome:
        user: dict[str, Any] | None = None
        source = request.source_id
        if source and source.isdigit():
            referral_id: str | None = source
        elif source:
            identifier = source.removeprefix(CODE_PREFIX).removeprefix(EMAIL_PREFIX)
            user = self._read_user(identifier)
            if user is None:
                return self._not_found(request, source_kind=source.split(":", 1)[0])
            referral_id = str(user["id"])
        elif request.contact_id:
            referral_id = self.state.referral_for_email(normalise_email(request.email))
            if referral_id is None:
                return _outcome(NOT_REFERRAL, request.contact_id, request)
        else:
            user = self._read_user(normalise_email(request.email))
            if user is None:
                return self._not_found(request, source_kind="email")
            referral_id = str(user["id"])
        if request.contact_id:
            contact = self._current_contact(request.contact_id)
            if contact is None:
                if user is None and not self.state.load(referral_id).contact_id:
                    return _outcome(
                        "gone", request.contact_id, request, reason="contact_gone", code="contact_gone"
                    )
            else:
                return self._about_contact(referral_id, contact, request, user=user)
        if user is None:
            user = self._read_user(referral_id)
            if user is None:
                return self._not_found(request, source_kind="id")
        return self._write_lead(user, request, self.state.load(referral_id), contact=None)

    def _about_contact(
        self, referral_id: str, contact: dict[str, Any], request: SyncRequest, *, user: dict[str, Any] | None
    ) -> SyncOutcome:
        record = self.state.load(referral_id)
        custom = contact.get("custom_attributes") or {}
        shows_qualified = custom.get(REFERRAL_STATUS) == QUALIFIED
        current = qualification.watched_value(contact, self.options)
        last_seen = record.seen if record.seen_known else None
        if not record.seen_known and record.contact_id is None and custom.get(REFERRAL_ID) is None:
            last_seen = current  # a first sight of a contact we never paired: its baseline, no report
        decision = qualification.decide(
            current, last_seen, reported=record.reported or shows_qualified, options=self.options
        )
        reported_now = False
        if decision.action == qualification.QUALIFY:
            user = user or self._read_user(referral_id)
            if user is None:
                raise PermanentError(
                    f"referral user {referral_id} is not in the program: cannot report it",
                    code=REFERRAL_NOT_FOUND,
                )
            reported_now = self._report(referral_id, user, contact_id=contact["id"], request=request)
        elif decision.action == qualification.MOVED_BACK:
            log_event(
                logger,
                "referral_qualification_moved_back",
                level=logging.WARNING,
                integration=NAME,
                referral_id=referral_id,
                contact_id=contact["id"],
                trigger=request.trigger,
            )
        if decision.seen != record.seen or not record.seen_known:
            self.state.remember_seen(referral_id, decision.seen)
        record = self.state.load(referral_id)
        paired_here = record.contact_id == contact["id"] and record.shown
        if user is None and not paired_here:
            user = self._read_user(referral_id)
            if user is None:
                return self._not_found(request, source_kind="id")
        if user is not None:
            outcome = self._write_lead(user, request, record, contact=contact)
        else:
            outcome = self._status_only(referral_id, contact, record, request)
        if reported_now:
            return _outcome("qualified", outcome.contact_id, request, written=outcome.written)
        return outcome

    def _report(
        self, referral_id: str, user: Mapping[str, Any], *, contact_id: str, request: SyncRequest
    ) -> bool:
        """Report the qualification once; True when this run sent it."""
        if user.get("qualified_at"):
            self.state.mark_reported(referral_id, by="program")
            return False
        token = self.new_token()
        claim = self.state.claim_qualification(referral_id, token, ttl=QUALIFY_CLAIM_SECONDS)
        if claim == "reported":
            return False
        if claim != "claimed":  # another run is reporting it: look again once it is done
            raise TransientError(
                "another run is reporting this referral's qualification", code="qualification_in_progress"
            )
        try:
            self.referral.qualify(int(referral_id))
        except BaseException:
            self.state.release_qualification(referral_id, token)
            raise
        self.state.mark_reported(referral_id, by="us")
        log_event(
            logger,
            "referral_qualified",
            integration=NAME,
            referral_id=referral_id,
            contact_id=contact_id,
            method=self.options.qualify_on,
            trigger=request.trigger,
        )
        return True

    def _status_only(
        self, referral_id: str, contact: Mapping[str, Any], record: ReferralRecord, request: SyncRequest
    ) -> SyncOutcome:
        """A paired, written lead: only ``Referral Status`` may need writing (reported since)."""
        custom = contact.get("custom_attributes") or {}
        if not record.reported or custom.get(REFERRAL_STATUS) == QUALIFIED:
            return _outcome("unchanged", contact["id"], request)
        written = {REFERRAL_STATUS: QUALIFIED}
        self.schema.ensure(written)
        self.intercom.update_contact(contact["id"], custom_attributes=written)
        return _outcome("synced", contact["id"], request, written=True)

    def _write_lead(
        self,
        user: Mapping[str, Any],
        request: SyncRequest,
        record: ReferralRecord,
        *,
        contact: dict[str, Any] | None,
    ) -> SyncOutcome:
        referral_id = str(user["id"])
        reason = eligibility.skip_reason(user, self.options)
        if reason is not None:
            if record.skipped != reason and not record.contact_id:
                self.state.mark_skipped(referral_id, reason)
            log_event(
                logger,
                "referral_skipped",
                integration=NAME,
                referral_id=referral_id,
                reason=reason,
                trigger=request.trigger,
            )
            return _outcome("skipped", record.contact_id, request, reason=reason, code=reason)
        reported = record.reported or bool(user.get("qualified_at"))
        if user.get("qualified_at") and not record.reported:
            self.state.mark_reported(referral_id, by="program")
        update = lead_update(
            self._values(user), self.options.field_map, referral_id=referral_id, reported=reported
        )
        email = update.standard.get("email") or normalise_email(user.get("email"))
        return self.writer.write(referral_id, update, email, request, record, contact=contact)

    # --- reads and writes --------------------------------------------------------------

    def _values(self, user: Mapping[str, Any]) -> dict[str, str | None]:
        sent = {name for name, _ in self.options.field_map.sent()}
        referrer = self._referrer(user) if {"referrer_name", "referrer_email"} & sent else None
        campaign_name = None
        if "campaign_name" in sent and user.get("campaign_id") is not None:
            campaign = self.referral.campaign(int(user["campaign_id"]))
            campaign_name = campaign.get("name") if campaign else None
        return referral_values(
            user, referrer=referrer, campaign_name=campaign_name, zone=self.options.display_timezone
        )

    def _referrer(self, user: Mapping[str, Any]) -> Mapping[str, Any] | None:
        referrer_id = user.get("referrer_id")
        if referrer_id is None:
            return None
        kept = self.state.referrer(referrer_id)
        if kept is not None:
            return kept
        found = self.referral.user(str(referrer_id))
        if found is None:
            return None
        self.state.keep_referrer(referrer_id, found)
        return found

    def _read_user(self, identifier: str) -> dict[str, Any] | None:
        return self.referral.user(identifier) if identifier else None

    def _current_contact(self, contact_id: str) -> dict[str, Any] | None:
        """The contact as it is now (the survivor of a merge under Preview); None when gone."""
        try:
            return self.intercom.get_contact(contact_id)
        except ContactMerged as merged:
            return self.intercom.get_contact(merged.survivor_id)
        except IntercomNotFound:
            return None

    def _not_found(self, request: SyncRequest, *, source_kind: str) -> SyncOutcome:
        log_event(
            logger,
            "referral_user_not_found",
            level=logging.WARNING,
            integration=NAME,
            source=source_kind,
            source_id=request.source_id if source_kind in ("id", "code") else None,
            trigger=request.trigger,
        )
        return _outcome(
            "gone", request.contact_id, request, reason=REFERRAL_NOT_FOUND, code=REFERRAL_NOT_FOUND
        )


__all__ = ["ReferralLeadSync", "backstop_query", "referral_search"]
