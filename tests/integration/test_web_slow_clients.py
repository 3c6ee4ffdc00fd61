"""Slow and half-open clients, and slow platform reads, against the receiver as deployed (issue 12 item 1).

The real server process (``processes.web_argv``: ``python -m web.serve``) on real sockets:

- 240 connections that declare a body and trickle it a byte at a time, or send part of it and
  go silent, or stop inside the headers, or send nothing, are all open while signed webhooks
  and ``/healthz`` are answered in under 100 ms each;
- a connection silent for ``SYNC_WEB_CLIENT_TIMEOUT_SECONDS`` is closed by the server; one that
  keeps trickling is not (it holds a socket, never a thread);
- data connector requests waiting on a slow platform never make a webhook wait: beyond
  ``SYNC_CONNECTOR_MAX_READS`` they answer at once, stale, with the reason ``busy``;
- SIGTERM stops the server accepting at once, and the request it was running is still answered.

Under gunicorn's sync workers (the shape before) two such clients held both workers and each
of these fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sync_worker.devtools.localredis import free_port, wait_until
from sync_worker.devtools.processes import Child, web_argv
from tests.fixtures.deployed import ROOT, deployed_web
from tests.fixtures.web import CLIENT_SECRET, CONNECTOR_TOKEN, TRIGGER_TOKEN, notification
from web.auth import sign
from web.serve import SHUTDOWN_SECONDS

pytestmark = pytest.mark.integration

#: Each kind of slow client, this many connections (240 in all).
PER_KIND = 60
ANSWER_WITHIN_SECONDS = 0.1
CLIENT_TIMEOUT_SECONDS = 2
TRICKLE_INTERVAL_SECONDS = 0.2


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "INTERCOM_CLIENT_SECRET": CLIENT_SECRET,
        "SYNC_TRIGGER_TOKEN": TRIGGER_TOKEN,
        "SYNC_CONNECTOR_TOKEN": CONNECTOR_TOKEN,
        **extra,
    }


def _timed_webhook(url: str, n: int) -> tuple[float, requests.Response]:
    body = json.dumps(notification(contact_id=f"6650slow{n:04d}", notification_id=f"notif_slow_{n}")).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(body, CLIENT_SECRET)}
    started = time.monotonic()
    response = requests.post(f"{url}/webhooks/intercom", data=body, headers=headers, timeout=30)
    return time.monotonic() - started, response


def _timed_get(url: str) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.get(url, timeout=30)
    return time.monotonic() - started, response


def _is_open(sock: socket.socket) -> bool:
    """The peer has not closed (nor reset) the connection, and sent nothing."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class SlowClients:
    """Connections that hold a request open in each way a slow or vanished client does."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.kinds: dict[str, list[socket.socket]] = {}
        self._stop = threading.Event()
        self.rounds = 0  # trickle rounds sent so far
        self._trickler = threading.Thread(target=self._trickle, daemon=True)

    def _connect(self, first: bytes) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=5)
        if first:
            sock.sendall(first)
        sock.settimeout(None)  # blocking, so MSG_DONTWAIT peeks (:func:`_is_open`) answer at once
        return sock

    def open(self, per_kind: int) -> SlowClients:
        head = (
            f"POST /webhooks/intercom HTTP/1.1\r\nHost: {self.address[0]}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        ).encode()
        self.kinds = {
            "trickling a declared body": [self._connect(head) for _ in range(per_kind)],
            "silent inside a declared body": [self._connect(head) for _ in range(per_kind)],
            "silent inside the headers": [
                self._connect(b"POST /webhooks/intercom HTTP/1.1\r\nContent-Le") for _ in range(per_kind)
            ],
            "connected, nothing sent": [self._connect(b"") for _ in range(per_kind)],
        }
        self._trickler.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(TRICKLE_INTERVAL_SECONDS):
            for sock in self.kinds["trickling a declared body"]:
                with contextlib.suppress(OSError):
                    sock.send(b" ")
            self.rounds += 1

    def open_counts(self) -> dict[str, int]:
        return {kind: sum(_is_open(sock) for sock in socks) for kind, socks in self.kinds.items()}

    def close(self) -> None:
        self._stop.set()
        if self._trickler.is_alive():
            self._trickler.join(5)
        for socks in self.kinds.values():
            for sock in socks:
                sock.close()


@pytest.fixture
def slow_clients() -> Iterator[list[SlowClients]]:
    opened: list[SlowClients] = []
    yield opened
    for clients in opened:
        clients.close()


def test_webhooks_are_answered_fast_while_240_slow_clients_hold_connections(
    redis_url: str, tmp_path: Path, slow_clients: list[SlowClients]
) -> None:
    with deployed_web(_env(redis_url), tmp_path) as url:
        clients = SlowClients(url).open(PER_KIND)
        slow_clients.append(clients)
        wait_until(lambda: clients.rounds >= 2, 10, message="the trickle under way")
        assert clients.open_counts() == {kind: PER_KIND for kind in clients.kinds}

        timings = [_timed_webhook(url, n) for n in range(5)]
        health = _timed_get(f"{url}/healthz")

        for elapsed, response in [*timings, health]:
            assert response.status_code == 200, response.text
            assert elapsed < ANSWER_WITHIN_SECONDS, [round(t, 3) for t, _ in [*timings, health]]
        assert [response.json()["status"] for _, response in timings] == ["queued"] * 5
        # Every slow client was still connected when the webhooks were answered.
        assert clients.open_counts() == {kind: PER_KIND for kind in clients.kinds}


def test_silent_clients_are_closed_after_the_client_timeout_and_trickling_ones_hold_no_thread(
    redis_url: str, tmp_path: Path, slow_clients: list[SlowClients]
) -> None:
    env = _env(
        redis_url,
        SYNC_WEB_CLIENT_TIMEOUT_SECONDS=str(CLIENT_TIMEOUT_SECONDS),
        SYNC_WEB_THREADS="2",
        SYNC_CONNECTOR_MAX_READS="1",
    )
    with deployed_web(env, tmp_path) as url:
        clients = SlowClients(url).open(10)
        slow_clients.append(clients)
        silent = [kind for kind in clients.kinds if kind != "trickling a declared body"]
        seen: dict[str, int] = {}

        def silent_ones_closed() -> bool:
            seen.update(clients.open_counts())
            return all(seen[kind] == 0 for kind in silent)

        wait_until(silent_ones_closed, CLIENT_TIMEOUT_SECONDS + 8, message=f"silent clients closed ({seen})")
        assert seen["trickling a declared body"] == 10  # active: kept, and holding no thread
        for n in range(3):
            elapsed, response = _timed_webhook(url, n)
            assert response.status_code == 200 and elapsed < ANSWER_WITHIN_SECONDS, (elapsed, response.text)


def _busy_answers(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    found = re.findall(
        r'^intercom_sync_web_connector_answers_total\{[^}]*reason="busy"[^}]*\} (\S+)$', text, re.MULTILINE
    )
    return sum(float(value) for value in found)


def test_connector_reads_waiting_on_a_slow_platform_never_make_a_webhook_wait(
    redis_url: str, tmp_path: Path, platform_sandbox
) -> None:
    platform_sandbox.config(latency_ms=4000)  # longer than the connector's deadline
    env = _env(
        redis_url,
        PLATFORM_API_URL=platform_sandbox.url,
        PLATFORM_API_TOKEN=platform_sandbox.token,
        SYNC_CONNECTOR_DEADLINE_SECONDS="2.5",
        SYNC_WEB_THREADS="8",
        SYNC_CONNECTOR_MAX_READS="4",
    )
    asks = 12
    with deployed_web(env, tmp_path) as url, ThreadPoolExecutor(asks) as pool:

        def ask(n: int) -> tuple[float, requests.Response]:
            started = time.monotonic()
            response = requests.post(
                f"{url}/v1/connector/client-attributes",
                json={"email": f"client{n}@example.com"},
                headers={"Authorization": f"Bearer {CONNECTOR_TOKEN}"},
                timeout=30,
            )
            return time.monotonic() - started, response

        pending = [pool.submit(ask, n) for n in range(asks)]
        wait_until(lambda: platform_sandbox.stats()["total_calls"] >= 4, 10, message="4 platform reads")
        timings = [_timed_webhook(url, n) for n in range(5)]
        for elapsed, response in timings:
            assert response.status_code == 200, response.text
            assert elapsed < ANSWER_WITHIN_SECONDS, [round(t, 3) for t, _ in timings]
        answers = [future.result() for future in pending]
        wait_until(lambda: _busy_answers(url) == asks - 4, 10, message="the busy answers counted")

    assert all(response.status_code == 200 for _, response in answers), [r.text for _, r in answers]
    assert all(response.json()["stale"] is True for _, response in answers)
    fast = [elapsed for elapsed, _ in answers if elapsed < 1.0]
    assert len(fast) == asks - 4, sorted(round(e, 2) for e, _ in answers)  # all but the 4 reads, at once
    assert platform_sandbox.stats()["total_calls"] == 4


def test_sigterm_stops_accepting_at_once_and_answers_the_request_already_running(
    redis_url: str, tmp_path: Path, platform_sandbox
) -> None:
    platform_sandbox.config(latency_ms=2500)
    env = _env(
        redis_url,
        PLATFORM_API_URL=platform_sandbox.url,
        PLATFORM_API_TOKEN=platform_sandbox.token,
        SYNC_CONNECTOR_DEADLINE_SECONDS="4",
    )
    port = free_port()
    web = Child("web", web_argv(port=port), env=env, log_path=tmp_path / "web.log", cwd=ROOT).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/healthz", timeout=1).ok, 60, message="the receiver")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                requests.post,
                f"{url}/v1/connector/client-attributes",
                json={"email": "client@example.com"},
                headers={"Authorization": f"Bearer {CONNECTOR_TOKEN}"},
                timeout=30,
            )
            wait_until(lambda: platform_sandbox.stats()["total_calls"] == 1, 10, message="the platform read")
            web.signal_group(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    return True
                return False

            wait_until(refused, 2, message="new connections refused")
            assert web.alive()  # still answering the request it had
            answer = running.result()
        assert answer.status_code == 200, answer.text
        assert answer.json()["stale"] is False  # the platform's answer, read to the end
        wait_until(lambda: not web.alive(), SHUTDOWN_SECONDS + 5, message="the receiver to exit")
        assert web.process is not None and web.process.returncode == 0
    finally:
        web.stop()
