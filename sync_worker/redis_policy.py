"""Redis must never evict our keys: checked when a worker, beat or the receiver's server starts.

"Nothing accepted is lost" holds only while Redis refuses writes at ``maxmemory`` instead of
dropping keys (queued messages, pending markers, dead letters) to make room: its
``maxmemory-policy`` must be ``noeviction``. Guarantees:

- :func:`eviction_problem` (pure) names what is wrong with a policy, or ``None``;
- :func:`check_eviction_policy` reads the policy (``CONFIG GET maxmemory-policy``) and raises
  :class:`EvictionPossible`, naming the setting and the way out, unless it is ``noeviction`` or
  ``SYNC_ALLOW_EVICTION=true`` says to start anyway; a Redis that refuses ``CONFIG`` (managed
  services often rename it) counts as unknown, hence refused too: check it by hand, then allow;
- a Redis that cannot be reached at start is not a refusal (the process starts and answers 503
  or waits for its broker as it would anyway); :func:`refuse_at_start` logs that the policy went
  unchecked.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import redis as redis_lib

from sync_worker.config import Settings, get_settings
from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
CHECK_TIMEOUT_SECONDS = 2.0


class EvictionPossible(RuntimeError):
    """Redis may evict keys; the message names ``maxmemory-policy`` and ``SYNC_ALLOW_EVICTION``."""


def eviction_problem(policy: str | None, *, allow: bool) -> str | None:
    """What is wrong with ``policy`` (``None``: it could not be read), or ``None`` when it is safe (pure)."""
    if policy == SAFE_POLICY or allow:
        return None
    found = f"is {policy}" if policy is not None else "could not be read (CONFIG GET refused)"
    return (
        f"Redis maxmemory-policy {found}: Redis may evict queued triggers at maxmemory. "
        f"Set maxmemory-policy {SAFE_POLICY} (docker-compose.yml does), or SYNC_ALLOW_EVICTION=true "
        "to start anyway"
    )


def read_policy(client: redis_lib.Redis) -> str | None:
    """Redis's ``maxmemory-policy``, or ``None`` when it refuses ``CONFIG GET``."""
    try:
        answer = client.config_get("maxmemory-policy")
    except redis_lib.ResponseError:
        return None
    value = answer.get("maxmemory-policy")
    return value.decode() if isinstance(value, bytes) else value


def check_eviction_policy(client: redis_lib.Redis, settings: Settings) -> None:
    problem = eviction_problem(read_policy(client), allow=settings.allow_eviction)
    if problem:
        raise EvictionPossible(problem)


def refuse_at_start(process: str, settings: Settings | None = None) -> None:
    """Exit (code 2, one line on stderr) when Redis may evict; for start-up hooks."""
    settings = settings or get_settings()
    client = redis_lib.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        check_eviction_policy(client, settings)
    except EvictionPossible as problem:
        print(f"intercom-sync {process}: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except redis_lib.RedisError as exc:
        log_event(logger, "eviction_policy_unchecked", process=process, error=type(exc).__name__)
    finally:
        client.close()


def refuse_worker_at_start(**_: Any) -> None:
    refuse_at_start("worker")


def refuse_beat_at_start(**_: Any) -> None:
    refuse_at_start("beat")
