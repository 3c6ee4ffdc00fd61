"""The Celery task base class that applies delivery to every run of a task built on it.

Guarantees of :class:`DeliveryTask` (``@app.task(base=DeliveryTask, bind=True)``), around each run
(``__call__``, which Celery calls in place of ``run``; the request Celery pushed is kept):
- the run is counted (:mod:`.poison`): a message that killed its worker more than
  :data:`~.poison.MAX_DELIVERIES` times is not run again but handed to :meth:`DeliveryTask.poisoned`
  (for ``sync_contact``: parked in the dead-letter store);
- a run that cannot use Redis (:func:`~.redisloss.redis_unavailable`) hands its message back to
  the broker (``Reject(requeue=True)``) after a random pause in
  :data:`~.redisloss.HAND_BACK_PAUSE_SECONDS` (so a message whose requeue works cannot loop at full
  speed) and takes its poison token back, so a hand-back never counts as a death; it is run again
  at once, or, while Redis is still away, once the visibility timeout brings it back; never
  acknowledged as failed with nothing stored. Where Redis refuses the hand-back itself (out of
  memory refuses its ``LPUSH``), Celery stops that worker and the message stays unacknowledged;
- any other end (a result, a retry: a new message, a failure) deletes the run's tokens (best
  effort): an acknowledged message leaves none.

Celery's own ``autoretry_for`` is not used for this: a retry is a new message (the tokens would be
lost with it) and Celery turns a retry it cannot publish into ``Reject(requeue=False)``, which drops
the message; this class hands it back instead.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import redis as redis_lib
from celery import Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from sync_worker.delivery import poison
from sync_worker.delivery.redisloss import HAND_BACK_PAUSE_SECONDS, redis_unavailable
from sync_worker.logs import log_event

logger = logging.getLogger(__name__)


class DeliveryTask(Task):
    """A task whose runs are counted and handed back when Redis cannot be used (module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sync_worker.runtime import get_runtime  # the worker's; read at the run, not at import

        runtime = get_runtime()
        run = uuid.uuid4().hex
        task_id, retries = self.request.id, self.request.retries
        try:
            if poison.count_run(runtime.redis, task_id, retries, run) > poison.MAX_DELIVERIES:
                result = self.poisoned(args, kwargs)
            else:
                result = self.run(*args, **kwargs)
        except (redis_lib.RedisError, OperationalError, Reject) as error:
            cause = redis_unavailable(error)
            if cause is None:
                poison.forget(runtime.redis_best_effort, task_id, retries)
                raise
            # Neither the outcome nor a retry nor a dead letter can be stored: hand the message back
            # (now, or by the visibility timeout when Redis is still away) instead of acking it.
            poison.take_back(runtime.redis_best_effort, task_id, retries, run)
            self.handed_back(kwargs, cause)
            time.sleep(random.uniform(*HAND_BACK_PAUSE_SECONDS))
            raise Reject(repr(cause), requeue=True) from None
        except BaseException:  # a retry (a new message, counted afresh), a failure: this one is acked
            poison.forget(runtime.redis_best_effort, task_id, retries)
            raise
        poison.forget(runtime.redis_best_effort, task_id, retries)
        return result

    def poisoned(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What a message that killed its worker too often becomes instead of a run (default: it is
        acknowledged with a log line; ``sync_contact`` parks its contact)."""
        log_event(logger, "task_poisoned", level=logging.ERROR, task=self.name, task_id=self.request.id)
        return None

    def handed_back(self, kwargs: dict[str, Any], cause: BaseException) -> None:
        """Told before the message goes back (counts, a log line); must not raise."""
        log_event(
            logger,
            "task_requeued_redis_unavailable",
            level=logging.WARNING,
            task=self.name,
            error_type=type(cause).__name__,
        )
