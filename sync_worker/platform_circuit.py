"""What the end of a platform read tells the shared platform circuit: one rule for every reader.

Guarantees:
- :func:`circuit_outcome` (pure) classifies how a read ended: records are a
  :data:`SUCCESS`; a refused or reset connection, a 5xx, a 2xx that is not JSON, or
  no answer within the workers' own timeout (``full_timeout``) a :data:`FAILURE`;
  an answer without records (429, 401/403, another 4xx, a broken contract) is
  :data:`ANSWERED` (the platform is up); anything else, such as no answer within a
  shorter timeout or no request sent at all (no rate-limit token), :data:`NO_VERDICT`;
- :func:`settle` reports it: a success closes the circuit, a failure counts towards
  opening it; an answer without records changes nothing while the circuit is closed,
  but closes it when the read was the half-open probe; a probe that learnt nothing is
  released, so the next call probes at once instead of after the probe timeout;
- :func:`guarded` wraps one read in those rules for the workers (the triggered sync
  and the bulk re-sync's chunks) and the data connector alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sync_worker.circuit import Admission, CircuitBreaker
from sync_worker.platform import PlatformError, PlatformTimedOut, PlatformUnavailable

SUCCESS = "success"
FAILURE = "failure"
ANSWERED = "answered"
NO_VERDICT = "no_verdict"


def circuit_outcome(error: BaseException | None, *, full_timeout: bool) -> str:
    """What a read that ended with ``error`` (``None``: records) says about the platform (pure)."""
    if error is None:
        return SUCCESS
    if isinstance(error, PlatformTimedOut):
        return FAILURE if full_timeout else NO_VERDICT
    if isinstance(error, PlatformUnavailable):
        return FAILURE
    if isinstance(error, PlatformError):
        return ANSWERED
    return NO_VERDICT


def settle(circuit: CircuitBreaker, admission: Admission, outcome: str) -> None:
    """Report ``outcome`` of a read the circuit admitted (see the module's guarantees)."""
    if outcome == SUCCESS or (outcome == ANSWERED and admission.probe is not None):
        circuit.record_success()
    elif outcome == FAILURE:
        circuit.record_failure()
    elif outcome == NO_VERDICT:
        circuit.release(admission)


@contextmanager
def guarded(circuit: CircuitBreaker, admission: Admission, *, full_timeout: bool = True) -> Iterator[None]:
    """Settle the circuit with how the read in the ``with`` block ended (its exception re-raised)."""
    try:
        yield
    except BaseException as exc:
        settle(circuit, admission, circuit_outcome(exc, full_timeout=full_timeout))
        raise
    settle(circuit, admission, SUCCESS)
