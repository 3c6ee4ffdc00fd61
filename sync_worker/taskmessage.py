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
- nothing is sent: the only I/O is opening the broker channel, once per
  process, on first use (a connect and the ``PING`` the Redis transport sends
  when it creates a channel, which kombu's message preparation needs); later
  builds do no I/O, whatever the broker's state;
- a broker that cannot be reached fails a build quickly with kombu's
  ``OperationalError`` (a :class:`~kombu.exceptions.KombuError`), never after
  kombu's connection retry loop (``default_channel``: ~6 s against a refused
  port, on every call): one attempt, the connect and the ping each bounded by
  :data:`CONNECT_TIMEOUT_SECONDS`. A refused port fails in milliseconds, a
  silent or hung broker within twice the bound; a build that finds another
  thread's attempt under way waits for it and, if it failed, fails too rather
  than making another. Until an attempt succeeds, the next build tries again;
- one builder per app (:func:`task_messages`), living no longer than the app:
  it holds the app weakly, and its connection is released when the app is
  garbage-collected.

``tests/integration/test_dispatch.py`` checks the bytes against a real
``send_task``, that a real worker runs a message built here, that an
unreachable Redis is refused within the webhook bound, and that a builder and
its connection go with their app.
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
from kombu.exceptions import OperationalError
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as json_dumps


@dataclass(frozen=True)
class BuiltMessage:
    list_key: str
    payload: str


#: Bound (seconds) on each socket step of opening the builder's channel: the connect, then the ping.
#: Intercom gives up on a webhook after 5 s, so a refusal (503) must come well before that.
CONNECT_TIMEOUT_SECONDS = 1.0


class TaskMessages:
    """Builds task messages for one Celery app (one broker channel per process, opened on first use).

    Holds the app weakly (:func:`task_messages` keys builders by app); :meth:`close` releases the channel.
    """

    def __init__(self, celery_app: Celery):
        self._app_ref = weakref.ref(celery_app)
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

    @property
    def _app(self) -> Celery:
        app = self._app_ref()
        if app is None:
            raise ReferenceError("the Celery app of this message builder was garbage-collected")
        return app

    def _broker_channel(self) -> Any:
        if self._channel is not None and self._pid == os.getpid():
            return self._channel
        waited = not self._lock.acquire(blocking=False)
        # Another thread is opening the channel: wait for its one attempt, and make none after it
        # (attempts one after another against a silent broker would add up).
        if waited and not self._lock.acquire(timeout=2 * CONNECT_TIMEOUT_SECONDS):
            raise OperationalError("the broker channel is still being opened by another thread")
        try:
            if self._channel is None or self._pid != os.getpid():
                if waited:
                    raise OperationalError("the broker could not be reached (another thread's attempt)")
                # A parent's connection is left alone in a forked child (its sockets are the parent's).
                self._connection, self._channel = self._open_channel()
                self._pid = os.getpid()
            return self._channel
        finally:
            self._lock.release()

    def _open_channel(self) -> tuple[Connection, Any]:
        """A connection and its first channel (the one the Redis transport pinged): one attempt.

        Not ``connection.default_channel``: that runs kombu's retry loop (sleeps of 2 s, then 4 s,
        up to ``broker_connection_timeout``) on every call while the broker is down.
        """
        bound = CONNECT_TIMEOUT_SECONDS
        connection = self._app.connection_for_write(
            transport_options={"socket_connect_timeout": bound, "socket_timeout": bound}
        )
        try:
            connection.ensure_connection(max_retries=0)  # OperationalError at the first failure
            return connection, connection.channel()
        except BaseException:
            connection.release()
            raise

    def close(self) -> None:
        """Release this process's broker connection (the next build opens a new one)."""
        with self._lock:
            connection, self._connection, self._channel = self._connection, None, None
            if connection is not None and self._pid == os.getpid():
                connection.release()

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


# The builders hold their apps weakly, so an entry goes when its app does.
_builders: weakref.WeakKeyDictionary[Celery, TaskMessages] = weakref.WeakKeyDictionary()
_builders_lock = threading.Lock()


def task_messages(celery_app: Celery) -> TaskMessages:
    """The message builder of ``celery_app`` (one per app; closed when the app is garbage-collected)."""
    builder = _builders.get(celery_app)
    if builder is None:
        with _builders_lock:
            builder = _builders.get(celery_app)
            if builder is None:
                builder = _builders[celery_app] = TaskMessages(celery_app)
                weakref.finalize(celery_app, builder.close)
    return builder
