"""Workspace-wide halts: an error that cannot be about one contact stops the work on its upstream.

A revoked token (401/403) or a schema problem (an attribute of another type, an archived name,
Intercom's cap on data attributes) fails every contact the same way: parking each one would fill
the dead-letter store with thousands of copies of one problem and say nothing clear. Instead:

- :func:`halt_reason` (pure) says whether an error is workspace-wide, and for which upstream:
  ``auth`` (Intercom's, the platform's or the referral program's 401/403: a revoked token),
  ``schema`` (Intercom's data attributes), or
  ``contract`` (a bulk chunk's batched platform read refused as sent, or answered in a shape we
  do not read: a batch of a hundred contacts cannot fail so for one of them, the platform's API
  changed);
- the first run that meets such an error sets the upstream's halt in Redis (``SET NX``, so
  however many workers meet it at once, one halt is raised), writes **one** structured alert
  line (``upstream_halted``, level ERROR) and counts it (``keys.halt_alerts``);
- work that finds a halt set does not call the upstream: :meth:`HaltStore.check` raises
  :class:`UpstreamHalted`, and the caller waits (a sync task reschedules itself, a re-sync chunk
  or walk step holds) for :attr:`HaltStore.wait_seconds`, never parking a contact for it;
- the probe (:mod:`sync_worker.haltprobe`, on beat every ``SYNC_HALT_PROBE_SECONDS``) tries
  cheap authenticated calls per halted upstream and clears the halt when they work
  (``upstream_halt_cleared``); ``GET /v1/admin/halts`` and ``sync-worker halts`` show the halts.

Why our own and not Celery's: Celery can cancel a queue's consumption per worker, by a
control command, but nothing shared across workers that a task can set and a probe clear;
the halt must also hold for work that is already queued or scheduled (retries, chunks).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import redis as redis_lib

from sync_worker import keys
from sync_worker.errors import SyncError, TransientError
from sync_worker.intercom import IntercomAuthError
from sync_worker.logs import log_event
from sync_worker.platform import PlatformAuthError, PlatformContractError, PlatformRequestError
from sync_worker.referral import ReferralAuthError
from sync_worker.schema import SCHEMA_ERRORS

logger = logging.getLogger(__name__)

INTERCOM = "intercom"
PLATFORM = "platform"
REFERRAL = "referral"
#: Every upstream a halt can stop (listed, probed, shown in ``/metrics``).
UPSTREAMS = (INTERCOM, PLATFORM, REFERRAL)
#: What :meth:`HaltStore.check` looks at unless told: the contact syncs' upstreams. A referral
#: halt stops only the work that calls the program (it passes ``REFERRAL`` itself), never the
#: contact syncs of the other integrations.
CONTACT_SYNC_UPSTREAMS = (INTERCOM, PLATFORM)
AUTH = "auth"
SCHEMA = "schema"
CONTRACT = "contract"


def halt_reason(error: BaseException, *, batch: bool = False) -> tuple[str, str] | None:
    """``(upstream, reason)`` when ``error`` concerns the whole workspace, else None (pure).

    ``batch``: the error answered a batched platform read (a bulk chunk's lookup), where a
    refused request or an unreadable answer is the platform's contract, not one contact's data."""
    if batch and isinstance(error, PlatformContractError | PlatformRequestError):
        return PLATFORM, CONTRACT
    if isinstance(error, IntercomAuthError):
        return INTERCOM, AUTH
    if isinstance(error, PlatformAuthError):
        return PLATFORM, AUTH
    if isinstance(error, ReferralAuthError):
        return REFERRAL, AUTH
    if isinstance(error, SCHEMA_ERRORS):
        return INTERCOM, SCHEMA
    return None


@dataclass(frozen=True)
class Halt:
    """One upstream's halt, as stored under ``keys.halt(upstream)``."""

    upstream: str
    reason: str
    code: str
    message: str
    since: float
    probes: int = 0
    last_probe_at: float | None = None
    last_probe_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for an operator."""
        probed = f", {self.probes} probe(s) failed, last: {self.last_probe_error}" if self.probes else ""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return f"{self.upstream} halted since {since} ({self.reason}): {self.code}: {self.message}{probed}"


class UpstreamHalted(TransientError):
    """The upstream is halted: wait ``retry_after`` seconds and look again (never park for it)."""

    code = "upstream_halted"

    def __init__(self, halt: Halt, *, retry_after: float):
        super().__init__(f"{halt.upstream} is halted: {halt.code}", retry_after=retry_after)
        self.halt = halt


class HaltStore:
    """The halts in Redis; ``wait_seconds``: how long work that finds a halt waits before looking again."""

    def __init__(self, client: redis_lib.Redis, *, wait_seconds: float):
        self._redis = client
        self.wait_seconds = wait_seconds

    def current(self, upstream: str) -> Halt | None:
        raw = self._redis.get(keys.halt(upstream))
        return _parse(raw)

    def all(self) -> list[Halt]:
        """Every halt set now (one ``MGET``)."""
        found = self._redis.mget([keys.halt(upstream) for upstream in UPSTREAMS])
        return [halt for halt in map(_parse, found) if halt is not None]

    def check(self, upstreams: Iterable[str] = CONTACT_SYNC_UPSTREAMS) -> None:
        """Raise :class:`UpstreamHalted` when one of ``upstreams`` is halted (one ``MGET``)."""
        names = list(upstreams)
        for raw in self._redis.mget([keys.halt(upstream) for upstream in names]):
            halt = _parse(raw)
            if halt is not None:
                raise UpstreamHalted(halt, retry_after=self.wait_seconds)

    def escalate(self, error: BaseException, *, batch: bool = False, **ids: object) -> UpstreamHalted | None:
        """When ``error`` is workspace-wide (:func:`halt_reason`, ``batch`` passed on): the halt (set
        now unless it was already), to raise instead of the error; else None. The run that sets it
        writes the alert (``ids``: the contact or run it met the error on, never client data)."""
        reason = halt_reason(error, batch=batch)
        if reason is None:
            return None
        upstream, kind = reason
        halt = Halt(
            upstream=upstream,
            reason=kind,
            code=getattr(error, "code", type(error).__name__),
            message=getattr(error, "message", str(error)),
            since=time.time(),
        )
        if self._redis.set(keys.halt(upstream), json.dumps(halt.to_dict()), nx=True):
            self._redis.hincrby(keys.halt_alerts(), upstream, 1)
            log_event(
                logger,
                "upstream_halted",
                level=logging.ERROR,
                upstream=upstream,
                reason=kind,
                error_code=halt.code,
                error=halt.message,
                **ids,
            )
        else:
            halt = self.current(upstream) or halt
        return UpstreamHalted(halt, retry_after=self.wait_seconds)

    def probe_failed(self, upstream: str, error: BaseException) -> None:
        """Note a probe that did not work on the halt (kept: the halt stays)."""
        halt = self.current(upstream)
        if halt is None:
            return
        text = str(error) if isinstance(error, SyncError) else type(error).__name__
        noted = replace(halt, probes=halt.probes + 1, last_probe_at=time.time(), last_probe_error=text)
        self._redis.set(keys.halt(upstream), json.dumps(noted.to_dict()), xx=True)
        log_event(logger, "upstream_halt_probe_failed", level=logging.WARNING, upstream=upstream, error=text)

    def clear(self, upstream: str) -> Halt | None:
        """Clear the halt (beat's probe found the upstream working): the work waiting on it goes on."""
        halt = self.current(upstream)
        if self._redis.delete(keys.halt(upstream)) and halt is not None:
            log_event(
                logger,
                "upstream_halt_cleared",
                level=logging.WARNING,
                upstream=upstream,
                error_code=halt.code,
                halted_seconds=round(time.time() - halt.since, 1),
            )
        return halt

    def alerts(self) -> dict[str, int]:
        """Upstream -> halts raised so far."""
        raw = self._redis.hgetall(keys.halt_alerts())
        return {_text(k): int(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: bytes | str | None) -> Halt | None:
    if raw is None:
        return None
    return Halt(**json.loads(raw))
