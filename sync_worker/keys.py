"""Every Redis key the service writes, named in one place.

Guarantees: all keys start with ``intercom-sync:``, so the service can share a
Redis database with Celery's own keys without collisions, and an operator can
find (or delete) everything it keeps with one pattern.

Every per-contact key (pending marker, fold payload, last known values, fingerprint, last
result, stale refresh claim and request) is built from :func:`contact_key`, which names the
integration: two integrations on one contact never share a key. The legacy integration
(:data:`LEGACY_INTEGRATION`, ``clients``) keeps the names it had before integrations had names
(``id:<contact id>``, ``email:<email>``), so the keys already in Redis at an upgrade are found as
they are, with no migration; every other integration's start with its name
(``dealer_users:id:<contact id>``); a request that names the contact by its id in the integration's
source (``source_id``: a dealer user's ``user_id``) is kept under that id
(``dealer_users:source:<user id>``), the identity its integration syncs by. Keys named by a task id (``delivery_runs``) are one message's
own and cannot fold into another integration's.
"""

from __future__ import annotations

PREFIX = "intercom-sync"
#: The integration whose per-contact keys carry no name segment (they predate the segment).
LEGACY_INTEGRATION = "clients"


def contact_key(
    contact_id: str | None,
    email: str | None,
    integration: str = LEGACY_INTEGRATION,
    source_id: str | None = None,
) -> str:
    """The identity a contact's state is kept under, for one integration: its id in the
    integration's source (``source:<id>``, e.g. a platform user id) when the request has one,
    else its Intercom id, else its normalised email; with the integration's name first unless it
    is the legacy one (which has no source ids)."""
    if source_id:
        if integration == LEGACY_INTEGRATION:
            raise ValueError(
                f"the {LEGACY_INTEGRATION} integration keys contacts by id or email, not source id"
            )
        return f"{integration}:source:{source_id}"
    if contact_id:
        identity = f"id:{contact_id}"
    elif email:
        identity = f"email:{email.strip().lower()}"
    else:
        raise ValueError("a contact needs an id or an email")
    return identity if integration == LEGACY_INTEGRATION else f"{integration}:{identity}"


def pending(contact_key: str) -> str:
    return f"{PREFIX}:pending:{contact_key}"


def pending_payload(contact_key: str) -> str:
    return f"{PREFIX}:pending-payload:{contact_key}"


def last_known(contact_key: str) -> str:
    return f"{PREFIX}:last-known:{contact_key}"


def shown(contact_key: str) -> str:
    """Fingerprint of the values the contact shows now (see cache.py)."""
    return f"{PREFIX}:shown:{contact_key}"


def last_result(contact_key: str) -> str:
    return f"{PREFIX}:last-result:{contact_key}"


def source_record(integration: str, source_id: str) -> str:
    """Hash: what ``integration`` last wrote for one contact of its source (a dealer user's
    contact id, fingerprints, the companies it attached), kept by the source's id (see
    ``integrations/dealer_users/state.py``)."""
    return f"{PREFIX}:source-record:{integration}:{source_id}"


def company_record(integration: str, company_id: str) -> str:
    """Hash: what ``integration`` last wrote for one Intercom company (by its ``company_id``):
    the company's Intercom id and the fingerprint of its write, shared by every contact of it."""
    return f"{PREFIX}:company-record:{integration}:{company_id}"


def data_attributes(workspace: str, model: str = "contact") -> str:
    """The cached data-attribute names of one model (contact's key kept from before companies)."""
    base = f"{PREFIX}:data-attributes:{workspace}"
    return base if model == "contact" else f"{base}:{model}"


def worker_heartbeat() -> str:
    """Unix time (Redis's clock) of the latest heartbeat of any worker (a string key with a short expiry)."""
    return f"{PREFIX}:worker-heartbeat"


def worker_heartbeats() -> str:
    """Hash: worker hostname -> Unix time (Redis's clock) of its latest heartbeat."""
    return f"{PREFIX}:worker-heartbeats"


def stale_refresh(contact_key: str) -> str:
    """Task id of the contact's one pending stale refresh (a string key with an expiry, see tasks.py)."""
    return f"{PREFIX}:stale-refresh:{contact_key}"


def stale_refresh_request(contact_key: str) -> str:
    """Hash: the newest request (``requested_at``, ``request`` json) of the contact's stale runs (or of
    a live run since, which replaces an older one), which a stale refresh runs with when it is newer
    than its own (an expiry past the claim's, see tasks.py)."""
    return f"{PREFIX}:stale-refresh-request:{contact_key}"


def delivery_runs(task_id: str, retries: int) -> str:
    """Set: a token per run of one task message (per retry) that did not hand it back (see tasks.py).

    Not the ``deliveries:`` counter of earlier versions (a string): those keys just expire.
    """
    return f"{PREFIX}:delivery-runs:{task_id}:{retries}"


def halt(upstream: str) -> str:
    """JSON of the workspace-wide halt of one upstream (``intercom``, ``platform``), absent when
    none: ``upstream``, ``reason`` (``auth`` or ``schema``), ``code``, ``message``, ``since`` (Unix
    seconds), ``probes`` and ``last_probe_at`` / ``last_probe_error`` (see halts.py). No expiry:
    only a probe that works, or an operator, clears it. A metrics collector reads it as the halt's
    state (set = halted)."""
    return f"{PREFIX}:halt:{upstream}"


def halt_alerts() -> str:
    """Hash: upstream -> how many halts were raised (one alert each), ever; a counter for metrics."""
    return f"{PREFIX}:halt-alerts"


def metric(name: str) -> str:
    """Hash of one metric counted by the workers (and the connector's upstream calls): field = its
    labels as JSON, value = the count (see ``sync_worker/servicemetrics.py``)."""
    return f"{PREFIX}:metrics:{name}"


def replay_run(run_id: str) -> str:
    """Hash: one replay of the dead-letter store, its counts and status (:mod:`sync_worker.replayruns`)."""
    return f"{PREFIX}:replay-run:{run_id}"


def replay_run_latest() -> str:
    """String: the id of the newest replay run."""
    return f"{PREFIX}:replay-run-latest"


def referral(referral_id: str) -> str:
    """Hash: what the referral-leads integration knows of one referral user (its id in the
    program): ``contact_id`` / ``email`` of its Intercom contact (the pairing), ``seen`` (the
    qualifying value last seen), ``shown`` (fingerprint of the lead's attributes written),
    ``reported_at`` (its qualification was reported, or the program had it), ``skipped`` (a reason
    code). No expiry: it is the record that a qualification is reported once."""
    return f"{PREFIX}:referral:{referral_id}"


def referral_email(email: str) -> str:
    """String: the referral user id whose lead has this (normalised) email."""
    return f"{PREFIX}:referral-email:{email.strip().lower()}"


def referral_qualifying(referral_id: str) -> str:
    """String with an expiry: the token of the one run reporting this referral's qualification."""
    return f"{PREFIX}:referral-qualifying:{referral_id}"


def referral_creating(referral_id: str) -> str:
    """String with an expiry: a run is creating this referral's lead (no second one may)."""
    return f"{PREFIX}:referral-creating:{referral_id}"


def referral_referrer(referral_id: str) -> str:
    """String (JSON ``{first_name, email}``) with an expiry: a referrer as the program last gave it."""
    return f"{PREFIX}:referral-referrer:{referral_id}"
