"""Where a referral's lead is written, and the write itself.

Guarantees of :meth:`LeadWriter.write` (one referral's computed update in, one outcome out):
- the contact is, the first that answers: the one the caller read (an Intercom webhook's), the
  pairing kept in Redis, one Intercom search for its ``Referral ID`` or its email (a contact with
  the ``Referral ID``, else a user before a lead, the oldest first), the contact paired with
  another referral of the same email (our index: Intercom's search lags behind our own creates),
  else a new lead (``POST /contacts``,
  ``role: lead``; one run at a time per referral, :meth:`ReferralState.lock_creation`; Intercom's
  409 for an existing contact: that contact is updated instead);
- only what changed is written: a paired lead whose attributes' fingerprint is the one written
  last is not written at all; a found contact gets only the attributes it does not show yet, its
  standard name only where it has none; the qualifying property's initial value only where it has
  no value;
- a paired contact Intercom no longer has (merged, deleted) is forgotten and found again; an
  archived one is unarchived and written;
- the pairing (and, on a first sight, the contact's qualifying value as the one last seen) is
  recorded only after the write succeeded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_worker.dispatch import SyncRequest
from sync_worker.errors import TransientError
from sync_worker.integrations.referral_leads import qualification
from sync_worker.integrations.referral_leads.fieldmap import REFERRAL_ID
from sync_worker.integrations.referral_leads.lead import LeadUpdate, fingerprint, initial_values
from sync_worker.integrations.referral_leads.options import LeadOptions
from sync_worker.integrations.referral_leads.state import ReferralRecord, ReferralState
from sync_worker.intercom import ContactExists, ContactMerged, IntercomClient, IntercomNotFound
from sync_worker.logs import log_event
from sync_worker.schema import AttributeSchema
from sync_worker.sync import SyncOutcome

logger = logging.getLogger(__name__)

NAME = "referral_leads"


def referral_search(referral_id: int | str) -> dict[str, Any]:
    """Intercom's search query for the contacts whose ``Referral ID`` is ``referral_id``."""
    return {"field": f"custom_attributes.{REFERRAL_ID}", "operator": "=", "value": str(referral_id)}


@dataclass
class LeadWriter:
    intercom: IntercomClient
    schema: AttributeSchema
    state: ReferralState
    options: LeadOptions
    new_token: Callable[[], str] = lambda: uuid.uuid4().hex

    def write(
        self,
        referral_id: str,
        update: LeadUpdate,
        email: str,
        request: SyncRequest,
        record: ReferralRecord,
        *,
        contact: Mapping[str, Any] | None = None,
    ) -> SyncOutcome:
        shown = fingerprint(update)
        if contact is None and record.contact_id:
            written = self._write_paired(referral_id, record, update, shown, email, request)
            if written is not None:
                return written
        if contact is None:
            contact = self._find(referral_id, email)
        if contact is not None:
            return self._write_found(referral_id, contact, update, shown, email, request, record)
        return self._create(referral_id, update, shown, email, request)

    # --- the three ways -------------------------------------------------------------------

    def _write_paired(
        self,
        referral_id: str,
        record: ReferralRecord,
        update: LeadUpdate,
        shown: str,
        email: str,
        request: SyncRequest,
    ) -> SyncOutcome | None:
        """The paired lead written when its fingerprint changed; None when Intercom no longer has it."""
        contact_id = record.contact_id or ""
        if record.shown == shown:
            return SyncOutcome("unchanged", contact_id, request.trigger)
        try:
            self._put(contact_id, update.custom)
        except (IntercomNotFound, ContactMerged):  # merged or deleted: found again
            self.state.forget_contact(referral_id)
            return None
        self.state.pair(referral_id, contact_id, email, shown=shown)
        return self._written(referral_id, contact_id, request, created=False)

    def _write_found(
        self,
        referral_id: str,
        contact: Mapping[str, Any],
        update: LeadUpdate,
        shown: str,
        email: str,
        request: SyncRequest,
        record: ReferralRecord,
    ) -> SyncOutcome:
        contact_id = str(contact["id"])
        custom_now = contact.get("custom_attributes") or {}
        wanted = {**update.custom, **initial_values(self.options, custom_now)}
        changed = {name: value for name, value in wanted.items() if custom_now.get(name) != value}
        name = update.standard.get("name")
        standard = {"name": name} if name and not contact.get("name") else {}
        if changed or standard:
            self._put(contact_id, changed, standard)
        seen = qualification.watched_value(
            {**contact, "custom_attributes": {**custom_now, **wanted}}, self.options
        )
        first_sight = record.contact_id != contact_id and not record.seen_known
        self.state.pair(referral_id, contact_id, email, shown=shown, seen=seen, set_seen=first_sight)
        if not (changed or standard):
            return SyncOutcome("unchanged", contact_id, request.trigger)
        return self._written(referral_id, contact_id, request, created=False)

    def _create(
        self, referral_id: str, update: LeadUpdate, shown: str, email: str, request: SyncRequest
    ) -> SyncOutcome:
        token = self.new_token()
        if not self.state.lock_creation(referral_id, token):
            raise TransientError("another run is creating this referral's lead", code="lead_being_created")
        try:
            again = self.state.load(referral_id)
            if again.contact_id:  # the other run finished meanwhile
                written = self._write_paired(referral_id, again, update, shown, email, request)
                if written is not None:
                    return written
            custom = {**update.custom, **initial_values(self.options, None)}
            self.schema.ensure(custom)
            try:
                created = self.intercom.create_contact(
                    role="lead", email=email, name=update.standard.get("name"), custom_attributes=custom
                )
                contact_id = str(created["id"])
            except ContactExists as exists:  # a contact Intercom would not duplicate: update it
                contact_id = str(exists.existing_id)
                self._put(contact_id, custom)
            seen = qualification.watched_value({"role": "lead", "custom_attributes": custom}, self.options)
            self.state.pair(referral_id, contact_id, email, shown=shown, seen=seen, set_seen=True)
        finally:
            self.state.unlock_creation(referral_id, token)
        return self._written(referral_id, contact_id, request, created=True)

    # --- reads and writes -----------------------------------------------------------------

    def _find(self, referral_id: str, email: str) -> Mapping[str, Any] | None:
        """One search for the contacts with this ``Referral ID`` or this email; then the contact of
        another referral of the email (our index), for one Intercom's search does not show yet."""
        query = referral_search(referral_id)
        if email:
            query = {"operator": "OR", "value": [query, {"field": "email", "operator": "=", "value": email}]}
        found = self.intercom.search_contacts(query).contacts
        by_id = [c for c in found if (c.get("custom_attributes") or {}).get(REFERRAL_ID) == referral_id]
        if by_id:
            return by_id[0]
        if found:
            return sorted(
                found, key=lambda c: (c.get("role") != qualification.USER, c.get("created_at") or 0)
            )[0]
        other = self.state.referral_for_email(email) if email else None
        paired = self.state.load(other).contact_id if other and other != referral_id else None
        if not paired:
            return None
        try:
            return self.intercom.get_contact(paired)
        except IntercomNotFound:
            return None

    def _put(
        self, contact_id: str, custom: Mapping[str, str], standard: Mapping[str, str] | None = None
    ) -> None:
        self.schema.ensure(custom)
        try:
            self.intercom.update_contact(contact_id, custom_attributes=custom, standard=standard or None)
        except IntercomNotFound:
            try:
                self.intercom.unarchive_contact(contact_id)  # archived: answers 404 until unarchived
            except IntercomNotFound:
                raise IntercomNotFound(f"contact {contact_id} is gone") from None
            self.intercom.update_contact(contact_id, custom_attributes=custom, standard=standard or None)

    def _written(
        self, referral_id: str, contact_id: str, request: SyncRequest, *, created: bool
    ) -> SyncOutcome:
        log_event(
            logger,
            "referral_lead_written",
            integration=NAME,
            referral_id=referral_id,
            contact_id=contact_id,
            lead_created=created,  # "created" is a LogRecord attribute: logging refuses it
            trigger=request.trigger,
        )
        return SyncOutcome("synced", contact_id, request.trigger, written=True)
