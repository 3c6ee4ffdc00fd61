"""A Celery task message exactly as ``send_task`` would put it on Redis, built without sending it.

Guarantees:
- :meth:`TaskMessages.build` returns the Redis list and the bytes that
  ``celery_app.send_task(name, kwargs=..., task_id=..., queue=...)`` would
  ``LPUSH`` there, assembled by Celery's and kombu's own code in the order
  ``send_task`` runs it: Celery's ``create_task_message`` (protocol 2 headers,
  body, ``reply_to`` = the app's thread oid), kombu's serializer, the queue's
  delivery mode, and the Redis channel's ``prepare_message``, body encoding,
  delivery tag and priority list naming (``queue_order_strategy: priority``
  names priority ``n > 0`` lists ``<queue>\\x06\\x16<n>``; ours publish at 0,
  the queue's own name); so a caller can push it in the same Lua script that
  writes other state, atomically with it (:mod:`sync_worker.dispatch`);
- ``argsrepr``/``kwargsrepr`` (what Celery shows in task events and its logs)
  are what the caller passes, never a repr of the arguments: emails stay out;
- with an ``eta`` the message is the one ``send_task(..., eta=eta)`` pushes: it
  goes on the queue at once and a worker holds it until then (Celery's ETA
  handling; the Redis transport has no delayed delivery of its own);
- nothing is sent: the only I/O is opening the broker channel once per process
  (a ``ping``), on first use; a broker that cannot be reached then raises, as
  ``send_task`` would.

``tests/integration/test_dispatch.py`` checks the bytes against a real
``send_task`` and that a real worker runs a message built here.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import Connection
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as json_dumps


@dataclass(frozen=True)
class BuiltMessage:
    list_key: str
    payload: str


class TaskMessages:
    """Builds task messages for one Celery app (one broker channel per process, opened on first use)."""

    def __init__(self, celery_app: Celery):
        self._app = celery_app
        self._lock = threading.Lock()
        self._pid = 0
        self._connection: Connection | None = None
        self._channel: Any = None
        conf = celery_app.conf  # read once: Celery's settings lookups are slow
        if conf.task_compression:
            raise ValueError("compressed task messages are not supported here")
        self._serializer = conf.task_serializer
        self._sent_event = conf.task_send_sent_event
        self._default_delivery_mode = conf.task_default_delivery_mode
        self._delivery_modes: dict[str, int] = {}

    def _broker_channel(self) -> Any:
        if self._channel is None or self._pid != os.getpid():
            with self._lock:
                if self._channel is None or self._pid != os.getpid():
                    connection = self._app.connection_for_write()
                    channel = connection.default_channel  # the Redis transport pings here
                    self._connection, self._channel, self._pid = connection, channel, os.getpid()
        return self._channel

    def _delivery_mode(self, queue: str) -> int:
        mode = self._delivery_modes.get(queue)
        if mode is None:
            declared = self._app.amqp.queues[queue]
            mode = maybe_delivery_mode(declared.exchange.delivery_mode or self._default_delivery_mode)
            self._delivery_modes[queue] = mode
        return mode

    def build(
        self,
        name: str,
        *,
        kwargs: dict[str, Any],
        task_id: str,
        queue: str,
        argsrepr: str = "()",
        kwargsrepr: str = "{}",
        eta: datetime | None = None,
    ) -> BuiltMessage:
        app = self._app
        channel = self._broker_channel()
        headers, properties, body, _sent_event = app.amqp.create_task_message(
            task_id,
            name,
            (),
            kwargs,
            eta=eta,
            reply_to=app.thread_oid,
            create_sent_event=self._sent_event,
            ignore_result=None,
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
        )
        # Producer.publish: delivery mode of the queue's exchange (else the app default), serialized body.
        properties["delivery_mode"] = self._delivery_mode(queue)
        content_type, content_encoding, encoded = serialize(body, serializer=self._serializer)
        # Channel.basic_publish on the anonymous exchange (a direct queue): routing key = queue name.
        message = channel.prepare_message(encoded, 0, content_type, content_encoding, headers, properties)
        channel._inplace_augment_message(message, "", queue)
        list_key = channel._q_for_pri(queue, channel._get_message_priority(message, reverse=False))
        return BuiltMessage(list_key=list_key, payload=json_dumps(message))


_builders: weakref.WeakKeyDictionary[Celery, TaskMessages] = weakref.WeakKeyDictionary()
_builders_lock = threading.Lock()


def task_messages(celery_app: Celery) -> TaskMessages:
    """The message builder of ``celery_app`` (one per app)."""
    builder = _builders.get(celery_app)
    if builder is None:
        with _builders_lock:
            builder = _builders.setdefault(celery_app, TaskMessages(celery_app))
    return builder
