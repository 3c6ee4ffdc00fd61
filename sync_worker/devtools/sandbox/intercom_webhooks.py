"""Intercom's webhook notifications as the sandbox sends them: built, signed, posted, remembered.

Guarantees:
- :func:`notification` (pure) is Intercom's envelope (``type: notification_event``, ``app_id``,
  ``id``, ``topic``, ``created_at``, ``delivery_attempts``, ``first_sent_at`` as Unix seconds,
  ``data: {type: notification_event_data, item}``) around the whole contact, whose times
  (:data:`CONTACT_TIMES`) are ISO 8601 strings in UTC (``2026-01-01T00:00:00.000+00:00``), as
  Intercom's webhooks carry them, not the REST API's Unix integers;
- :func:`signature` (pure) is ``sha1=<hex HMAC-SHA1 of the exact body bytes with the client
  secret>``, sent as ``X-Hub-Signature``; with no secret configured nothing is signed (computed
  here, not with :func:`web.auth.sign`: the stand-in must not share the receiver's code it tests);
- :class:`Outbox` posts one notification at a time and remembers every one it posted (the last
  :data:`KEPT`): a redelivery (:meth:`Outbox.redeliver`) posts the same body again, same id and
  ``first_sent_at``, with ``delivery_attempts`` one higher; :meth:`Outbox.send_later` posts from
  one background thread in submission order (so per contact too), which ends when idle;
- a receiver that cannot be reached is recorded (``status`` None, ``error`` set), never raised:
  the sandbox, like Intercom, does not depend on its receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import requests

SIGNATURE_HEADER = "X-Hub-Signature"
KEPT = 1000
TIMEOUT_SECONDS = 10.0
CONTACT_TIMES = (
    "created_at", "updated_at", "signed_up_at", "last_seen_at", "last_replied_at",
    "last_contacted_at", "last_email_opened_at", "last_email_clicked_at",
)  # fmt: skip


def iso8601(unix: int | float | None) -> str | None:
    """``1767225600`` -> ``"2026-01-01T00:00:00.000+00:00"`` (None stays None)."""
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


def webhook_contact(contact: Mapping[str, Any]) -> dict[str, Any]:
    """A REST-shaped contact as a webhook carries it: the same fields, times as ISO 8601."""
    item = json.loads(json.dumps(dict(contact)))
    for name in CONTACT_TIMES:
        if isinstance(item.get(name), int | float):
            item[name] = iso8601(item[name])
    return item


def notification(
    topic: str, contact: Mapping[str, Any], *, app_id: str, notification_id: str, now: float
) -> dict[str, Any]:
    """Intercom's notification envelope for ``topic`` about ``contact`` (first delivery)."""
    return {
        "type": "notification_event",
        "app_id": app_id,
        "data": {"type": "notification_event_data", "item": webhook_contact(contact)},
        "links": {},
        "id": notification_id,
        "topic": topic,
        "delivery_status": "pending",
        "delivery_attempts": 1,
        "delivered_at": 0,
        "first_sent_at": int(now),
        "created_at": int(now),
        "self": None,
    }


def new_notification_id() -> str:
    return f"notif_{uuid.uuid4()}"


def signature(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature`` value for ``body``."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@dataclass(frozen=True)
class Target:
    """Where a notification goes and what signs it (read from the config when it is submitted)."""

    url: str | None
    secret: str | None


@dataclass
class Delivery:
    """One post of a notification, as recorded."""

    notification_id: str
    topic: str
    contact_id: str | None
    delivery_attempts: int
    at: float
    status: int | None = None  # the receiver's answer; None: not sent or not reached
    answer: Any = None  # the receiver's JSON body (else its text)
    error: str | None = None


class Outbox:
    """Posts notifications to the receiver and remembers them (thread-safe)."""

    def __init__(self, *, timeout: float = TIMEOUT_SECONDS):
        self._timeout = timeout
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, tuple[dict[str, Any], Target]] = OrderedDict()
        self._deliveries: deque[Delivery] = deque(maxlen=KEPT)
        self._queue: deque[tuple[dict[str, Any], Target]] = deque()
        self._draining = False

    def send(self, envelope: dict[str, Any], target: Target) -> Delivery:
        """Post ``envelope`` now (the caller waits for the receiver's answer)."""
        with self._lock:
            self._sent[envelope["id"]] = (envelope, target)
            self._sent.move_to_end(envelope["id"])
            while len(self._sent) > KEPT:
                self._sent.popitem(last=False)
        return self._post(envelope, target)

    def send_later(self, envelope: dict[str, Any], target: Target) -> None:
        """Post ``envelope`` from the background thread, after every one submitted before it."""
        with self._lock:
            self._queue.append((envelope, target))
            if self._draining:
                return
            self._draining = True
        threading.Thread(target=self._drain, name="intercom-sandbox-echo", daemon=True).start()

    def redeliver(self, notification_id: str) -> Delivery | None:
        """Post a notification already sent again (None: no such one remembered)."""
        with self._lock:
            sent = self._sent.get(notification_id)
            if sent is None:
                return None
            envelope, target = sent
            envelope = {**envelope, "delivery_attempts": envelope["delivery_attempts"] + 1}
            self._sent[notification_id] = (envelope, target)
        return self._post(envelope, target)

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(d) for d in self._deliveries]

    def pending(self) -> int:
        """Notifications submitted with :meth:`send_later` and not posted yet."""
        with self._lock:
            return len(self._queue) + (1 if self._draining else 0)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    return
                envelope, target = self._queue.popleft()
            self.send(envelope, target)

    def _post(self, envelope: dict[str, Any], target: Target) -> Delivery:
        item = envelope["data"]["item"]
        delivery = Delivery(
            notification_id=envelope["id"],
            topic=envelope["topic"],
            contact_id=item.get("id") if isinstance(item, Mapping) else None,
            delivery_attempts=envelope["delivery_attempts"],
            at=round(time.time(), 3),
        )
        if not target.url:
            delivery.error = "webhook_url is not configured"
        else:
            body = json.dumps(envelope).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "intercom-sandbox-webhooks"}
            if target.secret:
                headers[SIGNATURE_HEADER] = signature(body, target.secret)
            try:
                response = requests.post(target.url, data=body, headers=headers, timeout=self._timeout)
            except requests.RequestException as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
            else:
                delivery.status = response.status_code
                try:
                    delivery.answer = response.json()
                except ValueError:
                    delivery.answer = response.text[:500]
        with self._lock:
            self._deliveries.append(delivery)
        return delivery
