"""What every operator subcommand shares: which Redis it talks to, and a client for it.

Guarantees:
- :func:`locate_redis` picks the service's Redis: ``REDIS_URL`` when it is set; else the Redis
  of the ``sync-worker dev`` stack started from here (:mod:`sync_worker.stackfile`), if that
  Redis answers; else it raises :class:`click.ClickException` with one line saying what to set
  or start. A stack file whose Redis does not answer is reported as a stopped stack, never used,
  and the default ``redis://127.0.0.1:6379`` is never guessed: an operator command must not
  read or start work in some other Redis that happens to run on the machine.
- :func:`redis_client` and :func:`celery_app`, the only ways an operator command reaches Redis,
  locate it once per process (:func:`use_service_redis`): the choice becomes the process's
  ``REDIS_URL``, and is printed on stderr as the command's first line, password masked (stdout
  stays clean for ``--json``). Nothing is located for ``--help`` or a usage error.
- Clients have short timeouts: an unreachable Redis ends a command within seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import redis as redis_lib

from sync_worker import integrations, stackfile
from sync_worker.config import get_settings


@dataclass(frozen=True)
class ServiceRedis:
    url: str
    source: str

    def describe(self) -> str:
        return f"redis: {masked(self.url)} ({self.source})"


def masked(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _answers(url: str) -> bool:
    try:
        return bool(redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1).ping())
    except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError):
        return False


def locate_redis(environ: dict[str, str] | None = None) -> ServiceRedis:
    """The Redis an operator command uses (see the module docstring for the order)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("REDIS_URL"):
        return ServiceRedis(environ["REDIS_URL"], "REDIS_URL")
    stack = stackfile.find()
    if stack is None:
        looked = ", ".join(str(path) for path in stackfile.candidates())
        raise click.ClickException(
            "REDIS_URL is unset and no `sync-worker dev` stack is running here "
            f"(looked for {looked}): set REDIS_URL to the service's Redis, or start scripts/dev"
        )
    if not _answers(stack.redis_url):
        raise click.ClickException(
            f"REDIS_URL is unset and the `sync-worker dev` stack of {stack.path} is not running "
            f"(its Redis at {masked(stack.redis_url)} does not answer): start scripts/dev, or set REDIS_URL"
        )
    return ServiceRedis(stack.redis_url, f"the sync-worker dev stack of {stack.path.parent}")


_located: list[ServiceRedis] = []


def use_service_redis() -> ServiceRedis:
    """Locate the service's Redis once per process, make it ``REDIS_URL`` and say so on stderr."""
    if not _located:
        service = locate_redis()
        os.environ["REDIS_URL"] = service.url
        get_settings.cache_clear()
        click.echo(service.describe(), err=True)
        _located.append(service)
    return _located[0]


def redis_client() -> redis_lib.Redis:
    """A client for the service's Redis, located first."""
    url = use_service_redis().url
    return redis_lib.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def celery_app() -> Any:
    """The worker's Celery app, publishing to the service's Redis (located first)."""
    from sync_worker.celery_app import create_celery

    use_service_redis()
    return create_celery(get_settings())


#: ``--integration NAME``: only that integration's entries or runs (a registered name).
integration_option = click.option(
    "--integration",
    type=click.Choice(sorted(integrations.REGISTRY)),
    default=None,
    help="Only this integration's (default: every integration's).",
)
