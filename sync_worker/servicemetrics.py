"""What the workers count, and the labels they count it by, for ``/metrics``.

Guarantees:
- every count goes to a :class:`~sync_worker.countbuffer.CountBuffer` (memory only; a
  background thread writes it to Redis, :func:`sync_worker.keys.metric` hashes), so
  counting never slows a sync by a round trip and never fails it, whatever Redis does;
- the names and help texts of these counters live here, in :data:`COUNTERS`, and
  ``/metrics`` (:mod:`web.exposition`) serves each one as
  ``intercom_sync_<name>_total`` with the labels given here;
- label values are low-cardinality: outcome and error codes, triggers, upstream names,
  HTTP status codes; never a contact id or an email.
"""

from __future__ import annotations

from sync_worker import keys
from sync_worker.countbuffer import CountBuffer, label_field

#: The ``error_code`` of an outcome that is no error (Prometheus treats an empty label as absent).
NO_ERROR = "none"

SYNCS = "worker_syncs"
UPSTREAM_REQUESTS = "upstream_requests"
UPSTREAM_RESPONSES = "upstream_responses"
RATE_LIMIT_WAITS = "rate_limit_waits"
RATE_LIMIT_WAITED = "rate_limit_waited_seconds"

#: Counter name -> (help text, label names in the order ``/metrics`` shows them).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    SYNCS: (
        "Contact syncs ended by a worker, by integration, trigger, outcome (synced, no_account, "
        "unchanged, stale, skipped, gone, not_found; a bulk run's deferred; retried, rescheduled, "
        "requeued, dead_lettered; waiting_halt once per look at a halt) and error code (none for "
        "success).",
        ("integration", "trigger", "outcome", "error_code"),
    ),
    UPSTREAM_REQUESTS: (
        "Attempts sent to the upstream APIs (intercom, platform), retries included; those without a "
        "response (timeouts, refused connections) are these minus the responses.",
        ("upstream",),
    ),
    UPSTREAM_RESPONSES: (
        "Responses of the upstream APIs (intercom, platform), by HTTP status code.",
        ("upstream", "status"),
    ),
    RATE_LIMIT_WAITS: (
        "Calls that found no rate-limit token at once, by upstream and how they waited "
        "(inline: slept for it; rescheduled: the task was put back for later).",
        ("upstream", "how"),
    ),
    RATE_LIMIT_WAITED: (
        "Seconds spent sleeping inline for a rate-limit token, by upstream.",
        ("upstream",),
    ),
}


class ServiceMetrics:
    """One process's counts of what the workers do (every method: memory only, never raises)."""

    def __init__(self, buffer: CountBuffer):
        self.buffer = buffer

    def _count(self, name: str, times: int = 1, **labels: str) -> None:
        self.buffer.add(counts=[(keys.metric(name), label_field(labels))] * times)

    def sync(
        self,
        outcome: str,
        *,
        trigger: str,
        error_code: str | None = None,
        times: int = 1,
        integration: str = keys.LEGACY_INTEGRATION,
    ) -> None:
        """A contact's sync of ``integration`` ended as ``outcome`` (or a run of it was retried,
        rescheduled, ...); ``times`` contacts at once (a bulk chunk's)."""
        labels = {
            "integration": integration,
            "trigger": trigger or "unknown",
            "outcome": outcome,
            "error_code": error_code or NO_ERROR,
        }
        self._count(SYNCS, times, **labels)

    def upstream_request(self, upstream: str) -> None:
        self._count(UPSTREAM_REQUESTS, upstream=upstream)

    def upstream_response(self, upstream: str, status: int) -> None:
        self._count(UPSTREAM_RESPONSES, upstream=upstream, status=str(status))

    def rate_limit_wait(self, upstream: str, *, how: str, seconds: float = 0.0) -> None:
        """A call found no token at once: ``how`` = ``inline`` (slept ``seconds``) or ``rescheduled``."""
        entry = (keys.metric(RATE_LIMIT_WAITS), label_field({"upstream": upstream, "how": how}))
        sums = (
            [(keys.metric(RATE_LIMIT_WAITED), label_field({"upstream": upstream}), seconds)]
            if seconds
            else []
        )
        self.buffer.add(counts=[entry], sums=sums)

    def flush(self) -> bool:
        """Write what this process holds now (a pool child's shutdown; tests)."""
        return self.buffer.flush(quiet=True)
