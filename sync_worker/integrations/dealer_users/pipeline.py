"""One dealer user's sync: from a platform user to its Intercom contact and location companies.

Guarantees (the order of a run, :meth:`DealerUserSync.run` = :meth:`~DealerUserSync.read` then
:meth:`~DealerUserSync.apply`; the bulk re-sync reads users a page at a time and calls ``apply``):
1. the user is read by its ``user_id`` (``request.source_id``), else, for a contact a webhook
   names without an external id, by its email (``GET /v1/users?email=``), through the shared
   platform circuit; a read that fails is :class:`~sync_worker.platform.PlatformUnavailable`
   (transient: retried, parked when it outlives its retries), and nothing is written: no stale
   values exist for this profile;
2. a user the platform does not have is the outcome ``no_account``: nothing is written, no
   contact is created, the contact (if any) is left as it is; an excluded or invalid email ends
   ``skipped``; a record that breaks the contract is that user's permanent error;
3. every location company whose name or ``Dealer Company`` differs from what this service last
   wrote for it is written (``POST /companies``, by ``company_id``), under that company's lock and
   after a second look at its record, so a company shared by many users is written once per
   change; "Company already exists" (a concurrent create elsewhere) is read back
   (``find_company``) and written over only when it shows something else;
4. the contact: the one this service wrote for the user before; else the contact the webhook
   named; else the contact whose ``external_id`` is the user id; else a ``user`` contact with the
   same email and no external id (adopted, e.g. made by the Messenger); else one is created
   (``role: user``, every value in the create). A create answered 409 continues with the id it
   names (unarchived first when archived; a contact that belongs to another user id is a
   permanent ``contact_conflict``). Finding and creating happen under the user's lock and the
   contact id is recorded at once, so no run creates a second contact for one user id. The write
   is skipped when its fingerprint (values as written and contact id) is the one last accepted,
   unless the request forces it; a changed email is written onto the same contact;
5. memberships: unless the set of locations and the contact are those of the last carried-out
   plan, the contact's companies are listed and :func:`~.membership.plan_membership` says what to
   attach and detach (never a company someone else attached); more than 1,000 locations, or
   Intercom refusing one more association, is the permanent ``company_limit_reached``;
6. a user whose contact values, companies and memberships are unchanged costs no Intercom call
   (Redis only), whatever the trigger, unless it forces the write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import LockError

from sync_worker.circuit import CircuitBreaker
from sync_worker.dispatch import SyncRequest
from sync_worker.errors import PermanentError, TransientError
from sync_worker.integrations.dealer_users.fingerprints import (
    company_fingerprint,
    contact_fingerprint,
    membership_fingerprint,
)
from sync_worker.integrations.dealer_users.membership import (
    MAX_COMPANIES_PER_CONTACT,
    TooManyLocations,
    check_location_count,
    plan_membership,
)
from sync_worker.integrations.dealer_users.profile import (
    LocationCompany,
    UserNames,
    UserValues,
    company_update,
    compute_user,
    contact_update,
)
from sync_worker.integrations.dealer_users.state import CompanyStates, UserRecord, UserStates
from sync_worker.intercom import (
    CompanyExists,
    CompanyLimitReached,
    ContactExists,
    ContactMerged,
    IntercomClient,
    IntercomNotFound,
    InvalidAttribute,
)
from sync_worker.logs import log_event
from sync_worker.platform import PlatformClient, PlatformUnavailable, check_user
from sync_worker.platform_circuit import guarded
from sync_worker.schema import AttributeSchema
from sync_worker.screening import screen
from sync_worker.sync import SyncOutcome

logger = logging.getLogger(__name__)

INTEGRATION = "dealer_users"
#: What a run plans to call Intercom for (the limiter takes them together; unused ones go back):
#: a known user's contact write and one membership or company call; a new user's search, its
#: create, one company and one attach.
KNOWN_USER_CALLS = 2
NEW_USER_CALLS = 4


def _identity_query(computed: UserValues) -> dict[str, Any]:
    """Intercom's search for the contacts that may be the user's: its external id, or its email."""
    by_id = {"field": "external_id", "operator": "=", "value": computed.user_id}
    if not computed.email:
        return by_id
    return {"operator": "OR", "value": [by_id, {"field": "email", "operator": "=", "value": computed.email}]}


class ContactConflict(PermanentError):
    """The contact Intercom names for the user's details belongs to another user id."""

    code = "contact_conflict"


class CircuitOpen(PlatformUnavailable):
    """The shared platform circuit is open: no read is made."""

    code = "platform_unavailable"


@dataclass
class DealerUserSync:
    """Everything a dealer user's run needs, passed in (:meth:`DealerUsersIntegration.pipeline`)."""

    intercom: IntercomClient
    platform: PlatformClient
    circuit: CircuitBreaker
    contact_schema: AttributeSchema
    company_schema: AttributeSchema
    users: UserStates
    companies: CompanyStates
    names: UserNames
    source_label: str
    excluded_emails: tuple[str, ...] = ()
    integration: str = field(default=INTEGRATION)

    # --- the task's interface ----------------------------------------------------------

    def intercom_calls(self, request: SyncRequest) -> int:
        """The Intercom calls a run of ``request`` reserves together (an estimate: a known user's
        unchanged run makes none, and tokens it does not use are given back)."""
        if request.source_id and self.users.load(request.source_id).contact_id:
            return KNOWN_USER_CALLS
        return NEW_USER_CALLS

    def ensure_schema(self) -> None:
        """Every data attribute this pipeline writes exists, the company ones listed again (the
        halt probe's check; the contact ones' cache is the caller's to forget)."""
        self.contact_schema.ensure(self.names.contact_custom)
        self.company_schema.forget()
        self.company_schema.ensure(self.names.company_custom)

    def run(self, request: SyncRequest) -> list[SyncOutcome]:
        """Read the user, then :meth:`apply` (one outcome)."""
        return [self.apply(self.read(request), request)]

    def read(self, request: SyncRequest) -> Mapping[str, Any] | None:
        """The platform's record of the user ``request`` names (None: the platform has none)."""
        user_id, email = request.source_id, request.email
        if not user_id and not email and request.contact_id:  # a contact known by id alone
            contact = self._contact_by_id(request.contact_id)
            user_id, email = contact.get("external_id") or None, contact.get("email") or None
            if not user_id and not email:
                return None
        admission = self.circuit.admit()
        if admission is None:
            raise CircuitOpen("the platform circuit is open: the user is not read now")
        with guarded(self.circuit, admission):
            if user_id:
                return self.platform.user(user_id)
            found = self.platform.users_by_email(email or "")
        if len(found) > 1:
            log_event(logger, "dealer_user_email_ambiguous", integration=self.integration, users=len(found))
        return found[0] if found else None

    def apply(self, user: Mapping[str, Any] | None, request: SyncRequest) -> SyncOutcome:
        """Steps 2 to 6 for a user already read (None: the platform does not have this user)."""
        checked = self._checked(user, request)
        if isinstance(checked, SyncOutcome):
            return checked
        computed, record = checked
        company_ids, company_writes = self._write_companies(computed.locations)
        contact_id, created, contact_written = self._write_contact(computed, record, request)
        memberships = self._write_memberships(computed, record, contact_id, created, company_ids, request)
        written = contact_written or company_writes > 0 or memberships > 0
        status = "synced" if written else "unchanged"
        log_event(
            logger,
            "dealer_user_synced",
            integration=self.integration,
            user_id=computed.user_id,
            contact_id=contact_id,
            status=status,
            contact_created=created,
            contact_written=contact_written,
            company_writes=company_writes,
            membership_changes=memberships,
            trigger=request.trigger,
        )
        return SyncOutcome(status, contact_id, request.trigger, written=written, accounts=1)

    def preview(self, user: Mapping[str, Any] | None, request: SyncRequest) -> SyncOutcome:
        """What :meth:`apply` would do, with no Intercom call and nothing stored (a dry run):
        ``unchanged`` when every fingerprint is the one last written, else ``synced`` with
        ``written`` (a user never written before counts as a write: its lookups are not made)."""
        checked = self._checked(user, request, quiet=True)
        if isinstance(checked, SyncOutcome):
            return checked
        computed, record = checked
        known = self.companies.load_many(location.company_id for location in computed.locations)
        companies_same = all(
            known[location.company_id] is not None
            and known[location.company_id].fingerprint
            == company_fingerprint(location.name, company_update(location, self.names))
            for location in computed.locations
        )
        custom, standard = contact_update(computed, self.names)
        contact_id = record.contact_id
        same = (
            contact_id is not None
            and not request.force_write
            and companies_same
            and contact_fingerprint(custom, standard, contact_id) == record.contact_fingerprint
            and membership_fingerprint(computed.location_ids, contact_id) == record.membership_fingerprint
        )
        status = "unchanged" if same else "synced"
        return SyncOutcome(status, contact_id, request.trigger, written=not same, accounts=1)

    def _checked(
        self, user: Mapping[str, Any] | None, request: SyncRequest, *, quiet: bool = False
    ) -> SyncOutcome | tuple[UserValues, UserRecord]:
        """Step 2: the outcome that ends the run here (``no_account``, ``skipped``), or the user's
        values and what was last written for it (:class:`TooManyLocations` past the cap)."""
        if user is None:
            if not quiet:
                log_event(
                    logger,
                    "dealer_user_no_account",
                    integration=self.integration,
                    user_id=request.source_id,
                    contact_id=request.contact_id,
                    trigger=request.trigger,
                )
            return SyncOutcome(
                "no_account", request.contact_id, request.trigger, reason="the platform has no such user"
            )
        computed = compute_user(check_user(user), source_label=self.source_label)
        skip = screen(computed.email, excluded=self.excluded_emails)
        if skip is not None:
            return SyncOutcome("skipped", request.contact_id, request.trigger, reason=skip.message)
        check_location_count(len(computed.locations))
        return computed, self.users.load(computed.user_id)

    @property
    def schema(self) -> AttributeSchema:
        """The contact data attributes' cache (what a caller forgets when a write names a stale one)."""
        return self.contact_schema

    # --- step 3: companies -------------------------------------------------------------

    def _write_companies(self, locations: tuple[LocationCompany, ...]) -> tuple[dict[str, str], int]:
        """Each location's Intercom company id, every changed company written; and how many were."""
        records = self.companies.load_many(location.company_id for location in locations)
        intercom_ids: dict[str, str] = {}
        writes = 0
        for location in locations:
            custom = company_update(location, self.names)
            fingerprint = company_fingerprint(location.name, custom)
            record = records[location.company_id]
            if record is not None and record.fingerprint == fingerprint:
                intercom_ids[location.company_id] = record.intercom_id
                continue
            intercom_id, wrote = self._write_company(location, custom, fingerprint)
            intercom_ids[location.company_id] = intercom_id
            writes += wrote
        return intercom_ids, writes

    def _write_company(
        self, location: LocationCompany, custom: dict[str, str], fingerprint: str
    ) -> tuple[str, bool]:
        try:
            with self.companies.lock(location.company_id):
                record = self.companies.load(location.company_id)  # written meanwhile by another run?
                if record is not None and record.fingerprint == fingerprint:
                    return record.intercom_id, False
                if custom:
                    self.company_schema.ensure(custom.keys())
                try:
                    company = self._upsert_company(location, custom)
                except InvalidAttribute as refused:  # archived since cached: the next try lists again
                    if refused.attribute is not None:
                        self.company_schema.forget()
                    raise
                self.companies.written(location.company_id, company["id"], fingerprint)
                return company["id"], True
        except LockError:
            raise TransientError(
                f"company {location.company_id} is being written by another run", code="company_busy"
            ) from None

    def _upsert_company(self, location: LocationCompany, custom: dict[str, str]) -> dict[str, Any]:
        try:
            return self.intercom.upsert_company(
                company_id=location.company_id, name=location.name, custom_attributes=custom
            )
        except CompanyExists:  # a concurrent create won: it exists now
            found = self.intercom.find_company(location.company_id)
            if found is None:
                raise TransientError(
                    f"company {location.company_id} was created concurrently but cannot be read back yet",
                    code="company_exists",
                ) from None
            shown = found.get("custom_attributes") or {}
            if found.get("name") == location.name and all(shown.get(k) == v for k, v in custom.items()):
                return found
            return self.intercom.upsert_company(
                company_id=location.company_id, name=location.name, custom_attributes=custom
            )

    # --- step 4: the contact -----------------------------------------------------------

    def _write_contact(
        self, computed: UserValues, record: UserRecord, request: SyncRequest
    ) -> tuple[str, bool, bool]:
        """``(contact id, created now, written)``."""
        custom, standard = contact_update(computed, self.names)
        known = record.contact_id
        unchanged = known and contact_fingerprint(custom, standard, known) == record.contact_fingerprint
        if known and unchanged and not request.force_write:
            return known, False, False
        self.contact_schema.ensure(custom.keys())
        if known and self._update(known, custom, standard):
            contact_id, created = known, False
        else:
            if known:
                self.users.forget_contact(computed.user_id)
            contact_id, created = self._find_or_create(computed, request, custom, standard, gone=known)
        self.users.contact_written(
            computed.user_id, contact_id, contact_fingerprint(custom, standard, contact_id)
        )
        return contact_id, created, True

    def _find_or_create(
        self,
        computed: UserValues,
        request: SyncRequest,
        custom: dict[str, str],
        standard: dict[str, str],
        *,
        gone: str | None,
    ) -> tuple[str, bool]:
        """The user's contact written (found, adopted or created), under the user's lock."""
        user_id = computed.user_id
        try:
            with self.users.lock(user_id):
                bound = self.users.load(user_id).contact_id  # another run may have bound one meanwhile
                for candidate in self._candidates(computed, request, bound=bound, gone=gone):
                    self.users.bind(user_id, candidate)
                    if self._update(candidate, custom, standard):
                        return candidate, False
                    self.users.forget_contact(user_id)
                try:
                    created = self.intercom.create_contact(role="user", custom_attributes=custom, **standard)
                except ContactExists as exists:
                    contact_id = self._claim_existing(exists.existing_id, user_id)
                    self.users.bind(user_id, contact_id)
                    if not self._update(contact_id, custom, standard):
                        raise TransientError(
                            f"contact {contact_id} named by Intercom's 409 cannot be written yet",
                            code="contact_not_found",
                        ) from None
                    return contact_id, False
                self.users.bind(user_id, created["id"])
                log_event(logger, "dealer_user_contact_created", integration=self.integration,
                          user_id=user_id, contact_id=created["id"])  # fmt: skip
                return created["id"], True
        except LockError:
            raise TransientError(f"user {user_id} is being synced by another run", code="user_busy") from None

    def _candidates(
        self, computed: UserValues, request: SyncRequest, *, bound: str | None, gone: str | None
    ) -> Iterator[str]:
        """The contacts that may be the user's, best first (each looked up only when the one before
        did not do), never ``gone`` (the one Intercom no longer has)."""
        seen = {gone} if gone else set()
        if bound and bound not in seen:
            seen.add(bound)
            yield bound
        if request.contact_id and request.contact_id not in seen:
            seen.add(request.contact_id)
            yield request.contact_id
        # One search for both: the contact with the user's external id, else a user with its email
        # and no external id (the Messenger's), which is adopted.
        found = list(self.intercom.iter_search(_identity_query(computed)))
        ours = [c for c in found if c.get("external_id") == computed.user_id]
        adoptable = [
            c
            for c in found
            if c.get("role") == "user"
            and not c.get("external_id")
            and (c.get("email") or "").strip().lower() == computed.email
        ]
        for contact in ours + adoptable:
            if contact["id"] in seen:
                continue
            seen.add(contact["id"])
            if contact in adoptable:
                log_event(logger, "dealer_user_contact_adopted", integration=self.integration,
                          user_id=computed.user_id, contact_id=contact["id"])  # fmt: skip
            yield contact["id"]

    def _claim_existing(self, contact_id: str, user_id: str) -> str:
        """The contact a 409 names, unarchived when archived; :class:`ContactConflict` when it is
        another user's."""
        try:
            contact = self.intercom.get_contact(contact_id)
        except IntercomNotFound:  # archived contacts answer 404 until unarchived
            self.intercom.unarchive_contact(contact_id)
            log_event(logger, "dealer_user_contact_unarchived", integration=self.integration,
                      user_id=user_id, contact_id=contact_id)  # fmt: skip
            contact = self.intercom.get_contact(contact_id)
        other = contact.get("external_id")
        if other and other != user_id:
            raise ContactConflict(
                f"Intercom contact {contact_id} has this user's details but belongs to another user id"
            )
        return contact_id

    def _update(self, contact_id: str, custom: dict[str, str], standard: dict[str, str]) -> bool:
        """PUT the contact; False when Intercom no longer has it (merged, deleted or archived)."""
        try:
            self.intercom.update_contact(contact_id, custom_attributes=custom, standard=standard or None)
        except (IntercomNotFound, ContactMerged):
            return False
        return True

    def _contact_by_id(self, contact_id: str) -> dict[str, Any]:
        try:
            return self.intercom.get_contact(contact_id)
        except (IntercomNotFound, ContactMerged):
            return {}

    # --- step 5: memberships -----------------------------------------------------------

    def _write_memberships(
        self,
        computed: UserValues,
        record: UserRecord,
        contact_id: str,
        created: bool,
        company_ids: Mapping[str, str],
        request: SyncRequest,
    ) -> int:
        """Attach and detach as planned; returns how many changes were made."""
        fingerprint = membership_fingerprint(computed.location_ids, contact_id)
        same_contact = contact_id == record.contact_id
        if not request.force_write and same_contact and fingerprint == record.membership_fingerprint:
            return 0
        current: dict[str, str] = {}
        if not created:  # a contact created now has no company yet
            for company in self.intercom.list_contact_companies(contact_id):
                if company.get("company_id"):
                    current[company["company_id"]] = company["id"]
        plan = plan_membership([location.company_id for location in computed.locations], record.ours, current)
        for company_id in plan.attach:
            self._attach(contact_id, company_id, company_ids[company_id])
        for company_id in plan.detach:
            self.intercom.detach_company(contact_id, current[company_id])
        self.users.memberships_written(computed.user_id, fingerprint, plan.ours)
        return len(plan.attach) + len(plan.detach)

    def _attach(self, contact_id: str, company_id: str, intercom_id: str) -> None:
        try:
            self.intercom.attach_company(contact_id, intercom_id)
        except CompanyLimitReached:
            raise TooManyLocations(
                f"Intercom refused to attach contact {contact_id} to one more company: a contact has at "
                f"most {MAX_COMPANIES_PER_CONTACT:,} company associations"
            ) from None
        except IntercomNotFound:  # the company was deleted in Intercom: write it again next time
            self.companies.forget(company_id)
            raise TransientError(
                f"company {company_id} is not in Intercom any more: it is written again on the retry",
                code="company_not_found",
            ) from None
