"""The composition root: builds a process's clients and shared state from its settings.

Guarantees: one :class:`Runtime` per process (``get_runtime``), built lazily on
first use, after the process has read its environment; every upstream call
goes through the shared rate limiters (the clients' hooks); nothing in here
computes or decides, it only wires the parts together. The integrations that run are the ones
``SYNC_INTEGRATIONS`` names (:mod:`sync_worker.integrations`); each one's pipeline is built once,
on first use (:meth:`Runtime.pipeline`), with its own last known values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from sync_worker.cache import LastKnownValues
from sync_worker.circuit import CircuitBreaker
from sync_worker.config import Settings, get_settings, require, secret
from sync_worker.countbuffer import CountBuffer
from sync_worker.deadletter import DeadLetterStore
from sync_worker.halts import HaltStore
from sync_worker.integrations import Integration, UnknownIntegration, enabled
from sync_worker.intercom import IntercomClient
from sync_worker.platform import PlatformClient
from sync_worker.ratelimit import RateLimiter, RateLimitHooks
from sync_worker.ratelimit.hooks import REFERRAL
from sync_worker.ratelimit.limiter import DEFAULT_SKEW_MARGIN_SECONDS
from sync_worker.ratelimit.slices import sliced_budget
from sync_worker.referral import ReferralClient
from sync_worker.schema import AttributeSchema, workspace_id
from sync_worker.servicemetrics import ServiceMetrics

#: How long a task may block waiting for a rate-limit token before it reschedules itself instead.
MAX_INLINE_WAIT_SECONDS = 2.0


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)

    @cached_property
    def redis_best_effort(self) -> redis_lib.Redis:
        """For a best-effort write on a failure path: one try, short timeouts (3 s at worst),
        so it never holds up what the failure path does next."""
        return redis_lib.Redis.from_url(
            self.settings.redis_url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )

    @cached_property
    def limiters(self) -> dict[str, RateLimiter]:
        return {
            "intercom": RateLimiter(
                self.redis,
                "intercom",
                limit=self.settings.intercom_calls_per_window,
                window_seconds=self.settings.intercom_window_seconds,
            ),
            "platform": RateLimiter(
                self.redis, "platform", limit=self.settings.platform_calls_per_second, window_seconds=1
            ),
            REFERRAL: referral_limiter(self.redis, self.settings.referral_calls_per_minute),
        }

    @cached_property
    def metrics(self) -> ServiceMetrics:
        """This process's counts for ``/metrics``, written to Redis in the background (a client of
        their own: short timeouts, no retries, so a slow Redis only delays a background write)."""
        client = redis_lib.Redis.from_url(
            self.settings.redis_url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        return ServiceMetrics(CountBuffer(client))

    @cached_property
    def hooks(self) -> RateLimitHooks:
        return RateLimitHooks(
            self.limiters,
            max_wait=MAX_INLINE_WAIT_SECONDS,
            reserved_wait=self.reserved_wait,
            metrics=self.metrics,
        )

    @property
    def reserved_wait(self) -> float:
        """How long a run waits inline for a token reserved for it: up to the next Intercom window's
        (plus the skew margin), within half the soft time limit; longer waits reschedule the task."""
        window = self.settings.intercom_window_seconds + DEFAULT_SKEW_MARGIN_SECONDS
        return min(window, 0.5 * self.settings.soft_time_limit_seconds)

    @cached_property
    def intercom(self) -> IntercomClient:
        require(self.settings, "intercom_access_token")
        return IntercomClient(
            self.settings.intercom_api_url,
            secret(self.settings.intercom_access_token) or "",
            version=self.settings.intercom_api_version,
            timeout=self.settings.http_timeout_seconds,
            hooks=self.hooks,
        )

    @cached_property
    def platform(self) -> PlatformClient:
        require(self.settings, "platform_api_url", "platform_api_token")
        return PlatformClient(
            self.settings.platform_api_url or "",
            secret(self.settings.platform_api_token) or "",
            timeout=self.settings.platform_timeout_seconds,
            hooks=self.hooks,
        )

    @cached_property
    def referral(self) -> ReferralClient:
        require(self.settings, "referral_api_url", "referral_api_token")
        return ReferralClient(
            self.settings.referral_api_url or "",
            secret(self.settings.referral_api_token) or "",
            timeout=self.settings.referral_timeout_seconds,
            hooks=self.hooks,
        )

    @cached_property
    def circuit(self) -> CircuitBreaker:
        return CircuitBreaker(
            self.redis,
            "platform",
            failure_threshold=self.settings.circuit_failure_threshold,
            window_seconds=self.settings.circuit_window_seconds,
            open_seconds=self.settings.circuit_open_seconds,
        )

    @cached_property
    def halts(self) -> HaltStore:
        wait = min(self.settings.halt_probe_seconds, self.settings.max_reschedule_seconds)
        return HaltStore(self.redis, wait_seconds=wait)

    @cached_property
    def cache(self) -> LastKnownValues:
        """The legacy (``clients``) integration's last known values (:meth:`cache_for` any other's)."""
        return LastKnownValues(self.redis)

    def cache_for(self, integration: str) -> LastKnownValues:
        """The last known values of ``integration`` (each integration keeps its own)."""
        if integration == self.cache.integration:
            return self.cache
        return LastKnownValues(self.redis, integration=integration)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis)

    @cached_property
    def schema(self) -> AttributeSchema:
        workspace = workspace_id(
            self.settings.intercom_api_url, secret(self.settings.intercom_access_token) or ""
        )
        return AttributeSchema(self.intercom, self.redis, workspace)

    @cached_property
    def integrations(self) -> dict[str, Integration]:
        """The integrations this process runs, by name (:class:`UnknownIntegration` for a name not
        registered)."""
        return {integration.name: integration for integration in enabled(self.settings.integrations)}

    def pipeline(self, integration: str) -> Any:
        """The pipeline that runs ``integration``'s requests, built once per process (its profile's
        zone and attribute names are checked then); :class:`UnknownIntegration` for one that does
        not run here."""
        built = self._pipelines.get(integration)
        if built is None:
            try:
                chosen = self.integrations[integration]
            except KeyError:
                raise UnknownIntegration(
                    f"integration {integration!r} does not run here (SYNC_INTEGRATIONS: {', '.join(self.integrations)})"
                ) from None
            built = self._pipelines[integration] = chosen.pipeline(self)
        return built

    @cached_property
    def _pipelines(self) -> dict[str, Any]:
        return {}


def referral_limiter(
    client: redis_lib.Redis, calls_per_minute: int, *, minute_seconds: float = 60.0
) -> RateLimiter:
    """The referral program's shared limiter: ``calls_per_minute`` in slices (:func:`sliced_budget`),
    so no minute of the program's own sees more than 1.1 times it (``minute_seconds``: tests only)."""
    limit, window = sliced_budget(calls_per_minute, minute_seconds)
    return RateLimiter(client, REFERRAL, limit=limit, window_seconds=window)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime
