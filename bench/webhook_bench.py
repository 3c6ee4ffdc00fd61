"""Benchmark of the webhook receiver under gunicorn (not a test).

Starts a private Redis (``LocalRedis``, on loopback) and the receiver as the
README runs it (``sync_worker.processes.web_argv``: gunicorn, ``--workers``), then
a load generator in a separate process sends signed, distinct Intercom
notifications (``conversation.user.created`` for ``--contacts`` contact ids, each
notification id new) to ``POST /webhooks/intercom`` at a fixed rate (``--rate``
requests a second, open loop: request ``i`` is due at ``start + i / rate`` whatever
the answers before it) for ``--seconds`` seconds, plus a warm-up second that is
counted in the checks but not in the latency figures.

Figures (printed and written to ``--out``):
- achieved requests a second (answers / time from the first due time to the last answer);
- latency p50/p90/p99/max in ms, measured from each request's *due* time (so a
  generator or server that falls behind shows it; no coordinated omission) and, for
  information, from the moment it was actually sent;
- the check that every accepted webhook is stored: messages on ``sync.realtime`` =
  answers ``queued``, every ``folded`` answer's task id is one of those messages, and
  queued + folded = accepted.

The load is bounded (``rate * seconds`` requests, each with a 10 s timeout) and only
ever sent to 127.0.0.1. Usage: ``python bench/webhook_bench.py [--rate 500] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as redis_lib
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync_worker.celery_app import REALTIME_QUEUE  # noqa: E402
from sync_worker.localredis import LocalRedis, free_port, wait_until  # noqa: E402
from sync_worker.processes import Child, web_argv  # noqa: E402
from web.auth import sign  # noqa: E402

SECRET = "bench-client-secret"
HOST = "127.0.0.1"
PATH = "/webhooks/intercom"
TARGET_P99_MS = 20.0
REQUEST_TIMEOUT = 10.0


# --- the requests (built before the clock starts) ------------------------------------------


def notification(index: int, contact_id: str) -> bytes:
    author = {"type": "user", "id": contact_id, "email": f"{contact_id}@example.com", "name": "A Client"}
    return json.dumps(
        {
            "type": "notification_event",
            "app_id": "benchapp",
            "id": f"notif_bench_{index}",
            "topic": "conversation.user.created",
            "delivery_attempts": 1,
            "created_at": 1767225600,
            "data": {
                "type": "notification_event_data",
                "item": {
                    "type": "conversation",
                    "id": str(1_000_000 + index),
                    "created_at": 1767225600,
                    "source": {"type": "conversation", "author": author, "body": "<p>Hello</p>"},
                    "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": contact_id}]},
                },
            },
        }
    ).encode()


def raw_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature: {sign(body, SECRET)}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def build_requests(port: int, total: int, contacts: int) -> list[bytes]:
    return [raw_request(port, notification(i, f"contact{i % contacts:05d}")) for i in range(total)]


# --- the load generator (its own process) --------------------------------------------------


async def _send(port: int, payload: bytes) -> tuple[float, int, bytes]:
    """One request on a new connection; done when the whole answer (Content-Length) is in, as a
    client that does not wait for the server to close would see it."""
    sent = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(payload)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
    finally:
        writer.close()
    status = int(head[9:12]) if head.startswith(b"HTTP/1.") else 0
    return sent, status, body


async def _run(port: int, payloads: list[bytes], rate: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in payloads]

    async def one(index: int, due: float) -> None:
        try:
            sent, status, body = await asyncio.wait_for(_send(port, payloads[index]), REQUEST_TIMEOUT)
            results[index] = {
                "due": due,
                "sent": sent,
                "done": time.perf_counter(),
                "status": status,
                "body": body,
            }
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            results[index] = {
                "due": due,
                "sent": due,
                "done": time.perf_counter(),
                "status": 0,
                "error": repr(exc),
            }

    tasks = []
    start = time.perf_counter() + 0.2
    for index in range(len(payloads)):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    return results


def generate(port: int, payloads: list[bytes], rate: float, out: Any) -> None:
    """Process entry point: send every payload on schedule; put the raw results on ``out``."""
    results = asyncio.run(_run(port, payloads, rate))
    for item in results:
        if "body" in item:
            item["body"] = base64.b64encode(item["body"]).decode()
    out.put(results)


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(statistics.median(ms), 2),
        "p90": round(percentile(ms, 90), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
    }


def task_ids_on_queue(client: redis_lib.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(REALTIME_QUEUE, 0, -1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--persistent", action="store_true", help="Redis append-only file, fsync every write")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "webhook.json"))
    args = parser.parse_args()

    warmup = int(args.rate * args.warmup_seconds)
    total = warmup + int(args.rate * args.seconds)
    workdir = tempfile.mkdtemp(prefix="webhook-bench-")
    redis_server = LocalRedis(persistent=args.persistent).start()
    port = free_port()
    env = {
        "REDIS_URL": f"redis://{HOST}:{redis_server.port}/0",
        "INTERCOM_CLIENT_SECRET": SECRET,
        "SYNC_TRIGGER_TOKEN": "bench-trigger-token",
        "PYTHONPATH": str(ROOT),
    }
    web = Child(
        "web",
        web_argv(port=port, workers=args.workers),
        env=env,
        log_path=Path(workdir) / "web.log",
        cwd=ROOT,
    )
    web.start()
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    try:
        wait_until(
            lambda: requests.get(f"http://{HOST}:{port}/healthz", timeout=1).ok,
            30,
            message="gunicorn to answer",
        )
        payloads = build_requests(port, total, args.contacts)
        queue: Any = multiprocessing.get_context("spawn").Queue()
        generator = multiprocessing.get_context("spawn").Process(
            target=generate, args=(port, payloads, args.rate, queue)
        )
        generator.start()
        results = queue.get(timeout=args.seconds + args.warmup_seconds + 120)
        generator.join(30)
        access_log_lines = sum(1 for _ in open(Path(workdir) / "web.log", "rb"))  # noqa: SIM115
    finally:
        web.stop()

    answers: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    for item in results:
        key = str(item["status"])
        statuses[key] = statuses.get(key, 0) + 1
        body = base64.b64decode(item.get("body", "")) if item.get("body") else b""
        answers.append(json.loads(body) if item["status"] == 200 and body else {})
    outcomes: dict[str, int] = {}
    for answer in answers:
        outcomes[answer.get("status", "none")] = outcomes.get(answer.get("status", "none"), 0) + 1

    on_queue = task_ids_on_queue(client)
    queued_ids = {a["task_id"] for a in answers if a.get("status") == "queued"}
    folded_ids = [a["task_id"] for a in answers if a.get("status") == "folded"]
    accepted = statuses.get("200", 0)
    stored_ok = (
        len(on_queue) == outcomes.get("queued", 0)
        and set(on_queue) == queued_ids
        and all(task_id in queued_ids for task_id in folded_ids)
        and outcomes.get("queued", 0) + outcomes.get("folded", 0) == accepted
    )
    client.close()
    redis_server.cleanup()

    measured = results[warmup:]
    first_due = measured[0]["due"]
    last_done = max(item["done"] for item in measured)
    ok = [item for item in measured if item["status"] == 200]
    from_due = latency_summary([item["done"] - item["due"] for item in ok])
    from_sent = latency_summary([item["done"] - item["sent"] for item in ok])
    lateness = latency_summary([max(0.0, item["sent"] - item["due"]) for item in measured])
    report = {
        "benchmark": "webhook",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "rate": args.rate,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "contacts": args.contacts,
            "gunicorn_workers": args.workers,
            "redis_persistent": args.persistent,
            "generator": "asyncio, one process, a new connection per request (gunicorn sync workers close it)",
        },
        "sent": len(results),
        "statuses": statuses,
        "outcomes": outcomes,
        "achieved_rps": round(len(ok) / (last_done - first_due), 1),
        "latency_ms_from_due": from_due,
        "latency_ms_from_sent": from_sent,
        "generator_lateness_ms": lateness,
        "stored": {
            "accepted": accepted,
            "realtime_messages": len(on_queue),
            "queued_answers": outcomes.get("queued", 0),
            "folded_answers": len(folded_ids),
            "every_accepted_stored": stored_ok,
        },
        "web_log_lines": access_log_lines,
        "target": {"p99_ms": TARGET_P99_MS, "met": from_due["p99"] < TARGET_P99_MS and stored_ok},
    }
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if stored_ok else 1


if __name__ == "__main__":
    sys.exit(main())
