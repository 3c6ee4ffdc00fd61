"""One deadline-bound platform read from the web process, through the worker's shared guards.

Guarantees (:meth:`PlatformReader.read_clients`):
- one :class:`~sync_worker.platform.PlatformClient` per process (one ``requests``
  session, so its connections are kept for the next read), built on first use and
  built again in a process forked from one that had it; none while the platform is
  not configured;
- at most one platform request, one attempt, within ``timeout`` seconds (the caller
  passes what is left of its deadline), never more than the workers'
  ``PLATFORM_TIMEOUT_SECONDS``, for connecting, sending and waiting for the answer
  together (the client's ``total_timeout``);
- at most ``SYNC_CONNECTOR_MAX_READS`` reads of this process wait on the platform at once:
  one beyond them answers at once (``busy``) without a request, so the server's other
  threads (``SYNC_WEB_THREADS``, more than that cap) are always free for webhooks;
- it goes out only when the shared platform rate limiter has a token within
  :data:`MAX_TOKEN_WAIT_SECONDS` (it takes one, and follows a 429's ``Retry-After``
  for every worker) and the shared platform circuit breaker allows it;
- the outcome tells the circuit what a worker's read would (:func:`sync_worker.platform_circuit.guarded`):
  records close it; a refused connection, a 5xx, or no answer within the workers'
  own timeout count as a failure; no answer within a shorter timeout (the deadline's)
  does not, since a worker could still have been answered: a platform slower than
  the deadline but within ``PLATFORM_TIMEOUT_SECONDS`` never opens the circuit for
  the workers; a 429, a 401/403 or other 4xx, or an answer that breaks the contract
  do not either (the platform is up);
- a read that was the circuit's half-open probe always settles it: records or any
  answer close it, a failure reopens it, and a read that learnt nothing (no request
  went out, or the shorter timeout ran out, or anything raised) releases the probe
  so the next call probes at once, not after the probe timeout;
- it never raises for a platform problem: the answer is the records, or ``None``
  with a short machine reason (one of these, or the platform error's code):
  ``platform_not_configured``; ``busy``; ``rate_limited``; ``circuit_open``; ``deadline``, no
  answer within the caller's timeout when it is shorter than the workers' (the
  timeout the circuit does not count); ``unavailable``, what the circuit counts as a
  platform failure (a refused connection, a 5xx, no answer within the workers' timeout).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from sync_worker.config import secret
from sync_worker.platform import (
    UPSTREAM,
    PlatformClient,
    PlatformError,
    PlatformRateLimited,
    PlatformUnavailable,
)
from sync_worker.platform_circuit import FAILURE, circuit_outcome, guarded
from sync_worker.ratelimit import RateLimitHooks, RateLimitWait
from sync_worker.runtime import Runtime

#: How long the read may wait for a platform rate-limit token before giving up on it.
MAX_TOKEN_WAIT_SECONDS = 0.05

NOT_CONFIGURED = "platform_not_configured"
#: As many reads as ``SYNC_CONNECTOR_MAX_READS`` already wait on the platform in this process.
BUSY = "busy"
RATE_LIMITED = "rate_limited"
CIRCUIT_OPEN = "circuit_open"
#: Cut short by the caller's own deadline, shorter than the workers' timeout (not a platform failure).
DEADLINE = "deadline"
#: A platform failure, as the circuit counts it.
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class PlatformRead:
    """The platform's accounts for the email, or ``records=None`` and why not."""

    records: list[dict[str, Any]] | None
    reason: str | None = None


def _reason(error: RateLimitWait | PlatformError, *, full_timeout: bool) -> str:
    """Why a read that raised ``error`` has no records; ``full_timeout``: it had the workers' timeout."""
    if isinstance(error, RateLimitWait | PlatformRateLimited):
        return RATE_LIMITED
    if isinstance(error, PlatformUnavailable):
        # The circuit's own rule: what it does not count as a failure is a timeout shorter than a worker's.
        return UNAVAILABLE if circuit_outcome(error, full_timeout=full_timeout) == FAILURE else DEADLINE
    return error.code  # auth, bad request, broken contract


class PlatformReader:
    """The web process's platform reads (see the module's guarantees)."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._lock = threading.Lock()
        self._client: PlatformClient | None = None
        self._pid = 0
        self._reads = threading.BoundedSemaphore(runtime.settings.connector_max_reads)

    def client(self) -> PlatformClient | None:
        """This process's platform client, or ``None`` when the platform is not configured."""
        settings = self._runtime.settings
        token = secret(settings.platform_api_token)
        if not settings.platform_api_url or not token:
            return None
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():  # a forked child builds its own
                    hooks = RateLimitHooks(
                        {UPSTREAM: self._runtime.limiters[UPSTREAM]},
                        max_wait=MAX_TOKEN_WAIT_SECONDS,
                        metrics=self._runtime.metrics,
                    )
                    self._client = PlatformClient(
                        settings.platform_api_url,
                        token,
                        timeout=settings.platform_timeout_seconds,
                        max_attempts=1,
                        hooks=hooks,
                    )
                    self._pid = os.getpid()
        return self._client

    def read_clients(self, email: str, *, timeout: float) -> PlatformRead:
        """The accounts for ``email`` from the platform, read once within ``timeout`` seconds."""
        client = self.client()
        if client is None:
            return PlatformRead(None, NOT_CONFIGURED)
        if not self._reads.acquire(blocking=False):
            return PlatformRead(None, BUSY)
        try:
            return self._read(client, email, timeout=timeout)
        finally:
            self._reads.release()

    def _read(self, client: PlatformClient, email: str, *, timeout: float) -> PlatformRead:
        limiter = self._runtime.limiters[UPSTREAM]
        if limiter.peek() > MAX_TOKEN_WAIT_SECONDS:  # checked first: a refused token wastes no circuit probe
            return PlatformRead(None, RATE_LIMITED)
        circuit = self._runtime.circuit
        admission = circuit.admit()
        if admission is None:
            return PlatformRead(None, CIRCUIT_OPEN)
        workers_timeout = self._runtime.settings.platform_timeout_seconds
        timeout = min(timeout, workers_timeout)  # never waits longer than a worker would
        full_timeout = timeout >= workers_timeout
        try:
            with guarded(circuit, admission, full_timeout=full_timeout):
                return PlatformRead(client.clients_by_email(email, total_timeout=timeout))
        except (RateLimitWait, PlatformError) as exc:
            return PlatformRead(None, _reason(exc, full_timeout=full_timeout))
