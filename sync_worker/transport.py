"""The one request loop every upstream client runs on (Intercom, the platform, the referral program).

Guarantees, for every client built on :class:`JsonApiClient`:
- every attempt carries ``Authorization: Bearer <token>``, ``Accept: application/json``, the
  client's own extra headers and a timeout (:attr:`~JsonApiClient.timeout` seconds to connect and
  again for each socket read, or with ``total_timeout`` one total for the attempt, urllib3's
  ``Timeout(total=...)``, made anew for each attempt); the token is never in the ``repr`` nor in
  a log line;
- ``hooks.before_request(upstream, operation)`` runs before every attempt, in-call retries
  included (so the shared limiter sees every call), and ``hooks.after_response(upstream, status,
  headers)`` after every response received;
- a 2xx answer with a JSON object is returned as that object; a 2xx without one (a proxy's
  page), a connection failure and a timeout are the client's :attr:`~JsonApiClient.unavailable_error`
  (a timeout, connect or read, also one met while reading the body, its
  :attr:`~JsonApiClient.timeout_error`); every other answer is what the upstream's own error table
  (:attr:`~JsonApiClient.error_table`, a pure function of status, headers and body) makes
  of it;
- failures of the client's :attr:`~JsonApiClient.retried` types are retried in the call
  (``max_attempts`` attempts in all, jittered exponential backoff capped at ``backoff_max``);
  anything else, a 429 included, is raised at once, so the caller can reschedule instead of
  blocking a worker;
- each failed attempt is one ``<upstream>_call_failed`` WARNING line (operation, status, error
  code, attempt and the client's :meth:`~JsonApiClient.failure_fields`), each answered call one
  DEBUG ``<upstream>_call`` line; never a body, an email or the token.

Why a base of our own: requests sends and tenacity backs off; what every upstream shares on top
of them (the limiter's hooks around each attempt, timeouts read the same way, the typed error
from one table) was written three times before, and drifted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Timeout

from sync_worker.errors import SyncError
from sync_worker.http import NoHooks, RequestHooks
from sync_worker.logs import log_event


def timed_out(exc: requests.RequestException) -> bool:
    """Did the call give up waiting (connect or read), rather than fail? (requests reports a read
    timeout met while reading the body as a ``ConnectionError`` wrapping urllib3's.)"""
    if isinstance(exc, requests.Timeout):
        return True
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, ReadTimeoutError) for arg in exc.args
    )


def json_or_none(response: requests.Response) -> Any:
    """The answer's JSON, or None when its body is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


class JsonApiClient:
    """A JSON-over-HTTP upstream with a bearer token; subclasses name the upstream and its errors."""

    #: The upstream's name for the hooks, the halts and the log lines (``intercom``, ...).
    upstream: ClassVar[str]
    #: How messages name the upstream (``Intercom``, ``platform``, ...).
    label: ClassVar[str]
    #: Raised for a connection failure and for a 2xx that is not a JSON object (transient).
    unavailable_error: ClassVar[type[SyncError]]
    #: Raised when an attempt timed out (a subclass of, or the same as, ``unavailable_error``).
    timeout_error: ClassVar[type[SyncError]]
    #: The ``code`` a timeout carries (None: its class's).
    timeout_code: ClassVar[str | None] = None
    #: The failures retried in the call.
    retried: ClassVar[tuple[type[Exception], ...]]
    #: Whether a 3xx is followed (requests drops the token on a redirect to another host).
    follow_redirects: ClassVar[bool] = True
    #: The upstream's one error table: the typed error for a non-2xx answer, a pure function of
    #: ``(status, headers, payload, *, operation, now)`` (set with ``staticmethod``).
    error_table: ClassVar[Callable[..., SyncError]]
    #: ``timeout`` and ``backoff_max`` when the caller gives none.
    default_timeout: ClassVar[float] = 10.0
    default_backoff_max: ClassVar[float] = 0.5

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | None = None,
        hooks: RequestHooks | None = None,
        session: requests.Session | None = None,
        max_attempts: int = 3,
        backoff_base: float = 0.1,
        backoff_max: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = self.default_timeout if timeout is None else timeout
        self.hooks: RequestHooks = hooks or NoHooks()
        self.session = session or requests.Session()
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = self.default_backoff_max if backoff_max is None else backoff_max
        self.clock = clock
        self._token = token
        # The client's own module's logger, so a logging set-up keyed on it keeps working.
        self._logger = logging.getLogger(type(self).__module__)

    def __repr__(self) -> str:  # never shows the token
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    # --- what a subclass says -----------------------------------------------------------

    def extra_headers(self) -> dict[str, str]:
        """Headers the upstream wants on every request beyond the token and ``Accept``."""
        return {}

    def observe_response(self, response: requests.Response) -> None:
        """Called with every response received, before it is read (no I/O expected)."""

    def failure_fields(self, error: SyncError | None) -> dict[str, Any]:
        """Fields a failed attempt's log line carries beyond operation, status and attempt."""
        return {"error": error.code if error is not None else None}

    # --- the loop ---------------------------------------------------------------------

    def _request(
        self, operation: str, method: str, path: str, *, total_timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """``method`` on ``base_url + path``, retried as the module says; the answer's JSON object."""
        return self._request_url(
            operation, method, self.base_url + path, total_timeout=total_timeout, **kwargs
        )

    def _request_url(
        self, operation: str, method: str, url: str, *, total_timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """As :meth:`_request`, on a whole URL (a link the upstream gave)."""
        attempts = [0]
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max),
            retry=retry_if_exception_type(self.retried),
            reraise=True,
        )
        return retrying(self._attempt, operation, method, url, attempts, total_timeout, kwargs)

    def _attempt(
        self,
        operation: str,
        method: str,
        url: str,
        attempts: list[int],
        total_timeout: float | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        attempts[0] += 1
        attempt = attempts[0]
        self.hooks.before_request(self.upstream, operation)
        started = time.monotonic()
        # A new Timeout per attempt: urllib3 starts its total when the attempt starts.
        timeout: float | Timeout = self.timeout if total_timeout is None else Timeout(total=total_timeout)
        try:
            response = self.session.request(
                method,
                url,
                headers=self._headers(),
                timeout=timeout,
                allow_redirects=self.follow_redirects,
                **kwargs,
            )
        except requests.RequestException as exc:
            if timed_out(exc):
                seconds = self.timeout if total_timeout is None else total_timeout
                error = self.timeout_error(
                    f"{self.label} {operation} timed out after {seconds}s", code=self.timeout_code
                )
                self._log_failure(operation, None, attempt, {"error": "timeout"})
            else:
                error = self.unavailable_error(f"{self.label} {operation} failed: {type(exc).__name__}")
                self._log_failure(operation, None, attempt, {"error": type(exc).__name__})
            raise error from exc
        self.observe_response(response)
        headers = response.headers  # case-insensitive
        self.hooks.after_response(self.upstream, response.status_code, headers)
        payload = json_or_none(response)
        if 200 <= response.status_code < 300:
            if not isinstance(payload, dict):
                self._log_failure(operation, response.status_code, attempt, {"error": "not_json"})
                raise self.unavailable_error(
                    f"{self.label} {operation} answered {response.status_code} without a JSON object",
                    status=response.status_code,
                )
            log_event(
                self._logger,
                f"{self.upstream}_call",
                level=logging.DEBUG,
                operation=operation,
                status=response.status_code,
                attempt=attempt,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return payload
        failure = self.error_table(
            response.status_code, headers, payload, operation=operation, now=self.clock()
        )
        self._log_failure(operation, response.status_code, attempt, self.failure_fields(failure))
        raise failure

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            **self.extra_headers(),
        }

    def _log_failure(self, operation: str, status: int | None, attempt: int, fields: dict[str, Any]) -> None:
        log_event(
            self._logger,
            f"{self.upstream}_call_failed",
            level=logging.WARNING,
            operation=operation,
            status=status,
            attempt=attempt,
            **fields,
        )
