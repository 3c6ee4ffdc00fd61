"""One contact's sync: from a trigger to the attributes written on the contact.

Guarantees (the order of a run):
1. screening first: an excluded or invalid address ends the run as ``skipped``
   before any platform or Intercom call;
2. the contact is resolved to Intercom ids (by id, else by email search); a
   merged contact is followed to the survivor once: by the ``Link`` of a 410
   (Intercom's Preview version), or, on the 404 the pinned 2.14 answers for a
   merged or deleted contact, by searching its email again (:meth:`ContactSync._survivor`);
   a contact that is not found that way either is ``gone``: an outcome (logged,
   counted), not an error, so no dead letter is left for a replay to park again;
3. the source is read as the integration says (:meth:`~sync_worker.integrations.base.Integration.read_one`)
   through a shared circuit breaker: when it cannot be
   read, the contact gets its last known values with the staleness flag (or
   only ``Data Status`` when there are none; :func:`stale_values`, which the
   data connector's stale answers use too) and the outcome is ``stale`` so
   the caller schedules a fresh sync; a failed read never writes
   ``Platform Account Exists = No``; unless the request forces the write, stale
   values the contact already shows are not written again;
4. the records are checked and the profile computes the values (pure) from them and the
   clock (:func:`~sync_worker.compute.compute_values`: any failure is this contact's
   ``platform_data_invalid``), the data attributes are ensured, and one ``PUT`` writes them;
5. only after Intercom accepted them are the values stored as the contact's
   last known values.

Every error is a :class:`~sync_worker.errors.SyncError`; what to retry is the
task's business (:mod:`sync_worker.tasks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sync_worker.attributes import build_update, resolve_names
from sync_worker.cache import LastKnownValues
from sync_worker.circuit import CircuitBreaker
from sync_worker.compute import compute_values
from sync_worker.dispatch import SyncRequest
from sync_worker.errors import PermanentError, TransientError
from sync_worker.fingerprint import shown_fingerprint
from sync_worker.integrations import DEFAULT, Integration
from sync_worker.integrations import get as get_integration
from sync_worker.intercom import ContactMerged, IntercomClient, IntercomNotFound
from sync_worker.logs import log_event
from sync_worker.platform import PlatformClient
from sync_worker.platform_circuit import guarded
from sync_worker.profiles.base import Profile
from sync_worker.schema import AttributeSchema
from sync_worker.screening import normalise_email, screen

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: How many Intercom contacts one email may resolve to before we stop (several = duplicates in Intercom).
MAX_CONTACTS_PER_EMAIL = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


class ContactNotFoundYet(TransientError):
    """No Intercom contact has this email (yet: new contacts take minutes to reach search)."""

    code = "contact_not_found"


class ContactGone(PermanentError):
    """The contact no longer exists in Intercom (merged or deleted) and no survivor was found."""

    code = "contact_gone"


@dataclass(frozen=True)
class StaleValues:
    """What a contact shows while the platform cannot be read, and whether it had last known values."""

    values: dict[str, str | None]
    had_cache: bool


def stale_values(
    profile: Profile,
    circuit: CircuitBreaker,
    cache: LastKnownValues,
    contact_id: str | None,
    *,
    now: datetime,
    email: str | None = None,
) -> StaleValues:
    """The contact's last known values (:meth:`LastKnownValues.find`: by id, else by ``email``
    when given) flagged stale since the current outage's first failure (``now`` when the
    circuit knows of none); only the staleness flag when none are known."""
    since = circuit.state().unavailable_since or now
    cached = cache.find(contact_id, email)
    values = profile.stale(cached.values if cached else None, unavailable_since=since)
    return StaleValues(values, cached is not None)


@dataclass(frozen=True)
class SyncOutcome:
    """What one run did. ``status``: synced, no_account, stale, unchanged, skipped, gone or not_found
    (the task's, once an email-only trigger's wait for Intercom's search ran out)."""

    status: str
    contact_id: str | None
    trigger: str
    reason: str | None = None
    data_status: str | None = None
    written: bool = False
    accounts: int = 0
    #: a machine code for why (a skip's reason, e.g. ``email_required``): counted as the outcome's
    #: ``error_code`` in ``/metrics``, so it must be low-cardinality (never an address)
    code: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ContactSync:
    """Everything a run needs, passed in: clients, profile, shared state and a clock; the
    integration says how the source is read (:class:`~sync_worker.integrations.base.ContactAttributes`
    builds one)."""

    intercom: IntercomClient
    platform: PlatformClient
    profile: Profile
    schema: AttributeSchema
    cache: LastKnownValues
    circuit: CircuitBreaker
    excluded_emails: tuple[str, ...] = ()
    attribute_names: Mapping[str, str] | None = None
    clock: Clock = utc_now
    integration: Integration = field(default_factory=lambda: get_integration(DEFAULT))

    def run(self, request: SyncRequest) -> list[SyncOutcome]:
        """Sync every Intercom contact the request designates (normally one)."""
        skip = self._screen(request.email, request)
        if skip is not None:
            return [skip]
        try:
            contacts = self._resolve(request)
        except ContactGone as gone:
            return [self._gone(request.contact_id, request, gone)]
        outcomes = []
        for contact in contacts:
            skip = self._screen(contact.get("email"), request, contact_id=contact["id"])
            outcomes.append(skip or self._sync_contact(contact["id"], contact["email"], request))
        return outcomes

    def ensure_schema(self) -> None:
        """Every data attribute this pipeline writes exists (the halt probe's check)."""
        targets = resolve_names(self.profile.attributes, self.attribute_names or {})
        self.schema.ensure(name for name, custom in targets.values() if custom)

    @staticmethod
    def intercom_calls(request: SyncRequest) -> int:
        """The Intercom calls a run of ``request`` plans: the lookup (a search by email, a GET of a
        contact known by id alone; none when both are known), then one PUT. The shared limiter
        takes their tokens together, so the PUT never waits after a lookup already made."""
        return 1 if request.contact_id and request.email else 2

    # --- steps ------------------------------------------------------------------------

    def _screen(
        self, email: str | None, request: SyncRequest, contact_id: str | None = None
    ) -> SyncOutcome | None:
        if email is None and request.contact_id:
            return None  # resolved from Intercom next
        found = screen(
            email or "",
            author_email=request.author_email,
            reply_to=request.reply_to,
            excluded=self.excluded_emails,
        )
        if found is None:
            return None
        return SyncOutcome("skipped", contact_id or request.contact_id, request.trigger, reason=found.message)

    def _resolve(self, request: SyncRequest) -> list[dict]:
        if request.contact_id:
            if request.email:
                return [{"id": request.contact_id, "email": request.email}]
            try:
                contact = self.intercom.get_contact(request.contact_id)
            except ContactMerged as merged:
                contact = self.intercom.get_contact(merged.survivor_id)
            except IntercomNotFound as missing:  # no email known to search for a survivor
                raise ContactGone(f"contact not found by id, no email known: {missing.message}") from None
            return [{"id": contact["id"], "email": contact.get("email")}]
        email = normalise_email(request.email or "")
        found = self.intercom.search_contacts_by_email(email)
        if not found:
            raise ContactNotFoundYet("no Intercom contact has this email yet")
        return [{"id": c["id"], "email": c.get("email") or email} for c in found[:MAX_CONTACTS_PER_EMAIL]]

    def _read_platform(self, email: str) -> list[dict] | None:
        """The source's records for ``email``, or None when the source cannot be read."""
        admission = self.circuit.admit()
        if admission is None:
            return None
        try:
            with guarded(self.circuit, admission):  # every end settles the circuit, a probe's too
                return self.integration.read_one(self.platform, normalise_email(email))
        except self.integration.unreadable:
            return None

    def _sync_contact(self, contact_id: str, email: str, request: SyncRequest) -> SyncOutcome:
        return self.apply_records(contact_id, self._read_platform(email), request, email=email)

    def apply_records(
        self, contact_id: str, records: list[dict] | None, request: SyncRequest, *, email: str | None = None
    ) -> SyncOutcome:
        """Steps 3 to 5 for a contact whose platform records were already read (None: unreadable).

        The bulk re-sync reads records for many contacts in one batch call and comes in here.
        """
        try:
            return self._apply(contact_id, records, request, email or request.email)
        except ContactGone as gone:
            return self._gone(contact_id, request, gone)

    def _apply(
        self, contact_id: str, records: list[dict] | None, request: SyncRequest, email: str | None
    ) -> SyncOutcome:
        now = self.clock()
        if records is None:
            return self._write_stale(contact_id, request, email)
        values = compute_values(self.profile, records, now=now)  # PlatformDataError: this contact's alone
        fingerprint = self.fingerprint(values)
        if not request.force_write and self.cache.shown(contact_id) == fingerprint:
            return SyncOutcome("unchanged", contact_id, request.trigger, accounts=len(records))
        contact_id = self._write(contact_id, values, email)
        self.cache.store(contact_id, values, now, email=email)
        self.cache.mark_shown(contact_id, fingerprint)
        status = "synced" if records else "no_account"
        outcome = SyncOutcome(
            status,
            contact_id,
            request.trigger,
            data_status=values.get("data_status"),
            written=True,
            accounts=len(records),
        )
        log_event(
            logger,
            "contact_synced",
            integration=self.integration.name,
            contact_id=contact_id,
            status=status,
            accounts=len(records),
            trigger=request.trigger,
        )
        return outcome

    def _gone(self, contact_id: str | None, request: SyncRequest, gone: ContactGone) -> SyncOutcome:
        log_event(
            logger,
            "contact_gone",
            integration=self.integration.name,
            level=logging.WARNING,
            contact_id=contact_id,
            trigger=request.trigger,
            reason=gone.code,
        )
        return SyncOutcome("gone", contact_id, request.trigger, reason=gone.message)

    def _write_stale(self, contact_id: str, request: SyncRequest, email: str | None) -> SyncOutcome:
        stale = stale_values(self.profile, self.circuit, self.cache, contact_id, now=self.clock())
        values = stale.values
        fingerprint = self.fingerprint(values)
        written = request.force_write or self.cache.shown(contact_id) != fingerprint
        if written:
            contact_id = self._write(contact_id, values, email)
            self.cache.mark_shown(contact_id, fingerprint)
            log_event(
                logger,
                "contact_stale_written",
                integration=self.integration.name,
                level=logging.WARNING,
                contact_id=contact_id,
                had_cache=stale.had_cache,
                trigger=request.trigger,
            )
        return SyncOutcome(
            "stale",
            contact_id,
            request.trigger,
            reason="platform unavailable",
            data_status=values.get("data_status"),
            written=written,
        )

    def fingerprint(self, values: Mapping[str, str | None]) -> str:
        """What writing ``values`` shows on a contact, as compared by "write only what changed"."""
        return shown_fingerprint(self.profile, values, self.attribute_names or {})

    def _write(self, contact_id: str, values: Mapping[str, str | None], email: str | None) -> str:
        """Ensure the attributes exist and PUT the contact; returns the id written (the survivor if
        merged). Raises :class:`ContactGone` when the contact is gone and no survivor is found."""
        custom, standard = build_update(values, self.profile.attributes, self.attribute_names or {})
        self.schema.ensure(custom.keys())
        try:
            self.intercom.update_contact(contact_id, custom_attributes=custom, standard=standard or None)
            return contact_id
        except ContactMerged as merged:  # Preview: a 410 names the survivor
            survivor = merged.survivor_id
        except IntercomNotFound:  # 2.14: merged or deleted look the same
            survivor = self._survivor(contact_id, email)
        self.intercom.update_contact(survivor, custom_attributes=custom, standard=standard or None)
        return survivor

    def _survivor(self, contact_id: str, email: str | None) -> str:
        """The contact that now has ``email`` (another id than the one Intercom no longer finds)."""
        if not email:
            raise ContactGone("contact not found by id, no email known")
        found = [c["id"] for c in self.intercom.search_contacts_by_email(normalise_email(email))]
        others = [found_id for found_id in found if found_id != contact_id]
        if not others:
            raise ContactGone("contact not found by id, and no other contact has its email")
        log_event(
            logger,
            "contact_survivor_found",
            integration=self.integration.name,
            contact_id=contact_id,
            survivor_id=others[0],
            matches=len(others),
        )
        return others[0]
