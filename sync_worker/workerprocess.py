"""What a worker process does besides running tasks: the checks at start, logging, heartbeats,
the metrics flush at a pool child's exit, and a contact parked when its task failed outside its own
handling.

Guarantees:
- a worker without its credentials, with a ``SYNC_INTEGRATIONS`` name not registered, with a
  display zone or attribute names an integration's profile refuses, or with a setting an
  integration cannot work with (:class:`~sync_worker.config.InvalidSetting`) stops at start with one line
  naming the setting (exit 2), not a dead letter per contact;
- Celery's processes log JSON lines (:mod:`sync_worker.logs`);
- each worker keeps its heartbeat fresh every :data:`HEARTBEAT_SECONDS` (Redis's clock);
- a pool child writes its buffered counts as it exits (``os._exit``: no ``atexit``);
- a ``sync_contact`` that failed outside its own handling (a bug, a hard time limit) still parks
  its contact.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, NoReturn

from celery import Task
from celery.signals import celeryd_init, setup_logging, task_failure, worker_process_shutdown, worker_ready

from sync_worker import heartbeat
from sync_worker.attributes import InvalidAttributeName
from sync_worker.celery_app import SYNC_TASK
from sync_worker.config import InvalidSetting, MissingSetting, require
from sync_worker.dispatch import SyncRequest
from sync_worker.formatting import UnknownTimezone
from sync_worker.integrations import UnknownIntegration
from sync_worker.logs import configure_logging
from sync_worker.parking import park_contact
from sync_worker.runtime import get_runtime

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10


@task_failure.connect
def _park_on_unexpected_failure(
    sender: Task | None = None,
    exception: BaseException | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A task that failed outside its own handling (a bug, a hard time limit) still parks its contact."""
    if sender is None or sender.name != SYNC_TASK or not kwargs:
        return
    try:
        request = SyncRequest.from_kwargs(kwargs)
        error = exception if isinstance(exception, Exception) else RuntimeError(repr(exception))
        park_contact(request, error, int(kwargs.get("attempt", 0)) + 1)
    except Exception:  # never let the signal handler take the worker down
        logger.exception("dead_letter_park_failed")


@celeryd_init.connect
def _check_required_settings(**_: Any) -> None:
    """A worker without its credentials, or with a display zone or attribute names the profile
    refuses, stops at start with one line naming what is wrong (not a dead letter per contact)."""
    runtime = get_runtime()
    try:
        require(runtime.settings, "intercom_access_token", "platform_api_url", "platform_api_token")
        for name in runtime.integrations:  # builds each profile (no call): zone and names are checked
            runtime.pipeline(name)
    except UnknownIntegration as unknown:
        _refuse_to_start(f"SYNC_INTEGRATIONS: {unknown}")
    except (MissingSetting, InvalidSetting) as wrong:
        _refuse_to_start(str(wrong))
    except UnknownTimezone as zone:
        _refuse_to_start(f"SYNC_DISPLAY_TIMEZONE: {zone}")
    except InvalidAttributeName as name:
        _refuse_to_start(f"{name.setting}: {name}")


def _refuse_to_start(line: str) -> NoReturn:
    print(f"intercom-sync worker: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@setup_logging.connect
def _json_logging(loglevel: str | int | None = None, **_: Any) -> None:
    """Celery's processes log JSON lines too (and Celery adds no handlers of its own)."""
    configure_logging(loglevel or "INFO")


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Keep this worker's heartbeat fresh (``/healthz/workers``; Redis's clock: :mod:`.heartbeat`)."""
    configure_logging()
    hostname = getattr(sender, "hostname", None) or "worker"

    def beat() -> None:
        runtime = get_runtime()
        while True:
            try:
                heartbeat.beat(runtime.redis, hostname)
            except Exception:
                logger.warning("heartbeat_failed", exc_info=True)
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


@worker_process_shutdown.connect
def _flush_metrics(**_: Any) -> None:
    """A pool child ends with ``os._exit`` (no ``atexit``): it writes its buffered counts first
    (quietly, never raising: the child's exit must go on)."""
    try:
        get_runtime().metrics.flush()
    except Exception:
        logger.warning("metrics_flush_at_exit_failed")
