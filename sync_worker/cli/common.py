"""What every operator subcommand shares: its Redis connection.

Guarantees: :func:`redis_client` connects to ``REDIS_URL`` with short timeouts, so an
unreachable Redis ends a command within seconds instead of hanging it.
"""

from __future__ import annotations

import redis as redis_lib

from sync_worker.config import get_settings


def redis_client() -> redis_lib.Redis:
    """A client for the service's Redis (``REDIS_URL``)."""
    return redis_lib.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=2)
