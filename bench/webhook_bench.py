"""Benchmark of the webhook receiver as deployed (not a test).

Starts a private Redis (``LocalRedis`` on loopback; ``--persistent``: append-only
file with ``appendfsync always``, as deployed) and the receiver exactly as deployed
(``sync_worker.devtools.processes.web_argv``, the command line of the README and
``docker-compose.yml``: ``python -m web.serve``, waitress; ``--env NAME=VALUE`` sets one of its
settings, e.g. ``SYNC_WEB_THREADS``, for an experiment), then ``--generators`` load generator processes
(``bench/loadgen.py``: one epoll loop each, requests built beforehand as raw
bytes, a new connection per request as Intercom opens them) send signed,
distinct Intercom notifications (``conversation.user.created`` for ``--contacts``
contact ids, each notification id new) to ``POST /webhooks/intercom`` at a fixed
rate (``--rate`` requests a second, open loop: request ``i`` is due at
``start + i / rate`` whatever the answers before it) for ``--seconds`` seconds,
plus ``--warmup-seconds`` counted in the checks but not in the latency figures.

Figures (printed and written to ``--out``):
- achieved requests a second (answers / time from the first measured due time to
  the last answer);
- latency p50/p90/p99/max in ms from each request's *due* time (so a generator or
  server that falls behind shows; no coordinated omission) and, for information,
  from the moment it was sent, and the generator's lateness;
- CPU seconds of the web server process, Redis, the generators and the
  rest of the machine over the run, and CPU milliseconds per request of each, so a
  run on a busy machine shows as such (``other``);
- Redis's own stalls over 5 ms (its latency monitor: e.g. ``aof-fsync-always``), so a
  slow disk shows apart from slow code;
- the check that every accepted webhook is stored: every ``queued`` answer's task
  id is a message on ``sync.realtime`` naming that contact, every ``folded``
  answer's task id is one of those, queued + folded = accepted, and one message per
  contact; messages stored for requests that timed out unanswered are counted
  apart (stored, never acknowledged: allowed).

The load is bounded (``rate * seconds`` requests, each with a 10 s timeout) and only
ever sent to 127.0.0.1. Usage::

    python bench/webhook_bench.py [--rate 500] [--seconds 20] [--persistent] [--generators 1] [--env K=V]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "bench"))

import cputime  # noqa: E402
import loadgen  # noqa: E402
import reference_receiver  # noqa: E402

from sync_worker.celery_app import REALTIME_QUEUE  # noqa: E402
from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until  # noqa: E402
from sync_worker.devtools.processes import Child, web_argv  # noqa: E402
from web.auth import sign  # noqa: E402

SECRET = "bench-client-secret"
HOST = "127.0.0.1"
PATH = "/webhooks/intercom"
TARGET_RATE = 500.0
TARGET_P99_MS = 20.0
REQUEST_TIMEOUT = 10.0
#: Redis's latency monitor records any event of its own (an fsync, a command) slower than this.
LATENCY_MONITOR_MS = 5
#: A run counts as on a quiet machine when everything else (and the hypervisor, ``steal``) used
#: under this share of the CPU.
QUIET_SHARE = 0.05


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


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(statistics.median(ms), 2),
        "p90": round(percentile(ms, 90), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
    }


def messages_on_queue(client: redis_lib.Redis) -> dict[str, str | None]:
    """task id -> contact id of every message on the realtime queue (decoded as the worker would)."""
    found: dict[str, str | None] = {}
    for raw in client.lrange(REALTIME_QUEUE, 0, -1):
        envelope = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        assert envelope["headers"]["task"] == "sync_worker.tasks.sync_contact", envelope["headers"]
        found[envelope["headers"]["id"]] = kwargs.get("contact_id")
    return found


def stored_check(
    answers: list[dict[str, Any]], accepted: int, on_queue: dict[str, str | None]
) -> dict[str, Any]:
    queued = {a["task_id"]: a for a in answers if a.get("status") == "queued"}
    folded = [a for a in answers if a.get("status") == "folded"]
    contacts = [contact for contact in on_queue.values()]
    ok = (
        all(task_id in on_queue for task_id in queued)
        and all(a["task_id"] in on_queue for a in folded)
        and len(queued) + len(folded) == accepted
        and len(set(contacts)) == len(contacts)
    )
    return {
        "accepted": accepted,
        "queued_answers": len(queued),
        "folded_answers": len(folded),
        "realtime_messages": len(on_queue),
        "stored_unanswered": len(set(on_queue) - set(queued)),
        "one_message_per_contact": len(set(contacts)) == len(contacts),
        "every_accepted_stored": ok,
    }


# --- the run --------------------------------------------------------------------------------


REFERENCE_ARGV = [sys.executable, str(ROOT / "bench" / "reference_receiver.py")]
TARGETS = ("receiver", "reference")


def reference_messages(client: redis_lib.Redis) -> dict[str, str | None]:
    """task id -> None for every message the reference stored (it names no contact)."""
    return {raw.split(b" ", 1)[0].decode(): None for raw in client.lrange(reference_receiver.QUEUE, 0, -1)}


def reference_stored_check(
    answers: list[dict[str, Any]], accepted: int, on_queue: dict[str, Any]
) -> dict[str, Any]:
    queued = {a["task_id"] for a in answers if a.get("status") == "queued"}
    return {
        "accepted": accepted,
        "queued_answers": len(queued),
        "stored_messages": len(on_queue),
        "stored_unanswered": len(set(on_queue) - queued),
        "every_accepted_stored": len(queued) == accepted and queued <= set(on_queue),
    }


def run_one(args: argparse.Namespace, target: str, rate: float) -> dict[str, Any]:
    """One run of ``target`` (the receiver as deployed, or the reference) at ``rate``: its report."""
    warmup = int(rate * args.warmup_seconds)
    total = warmup + int(rate * args.seconds)
    workdir = tempfile.mkdtemp(prefix="webhook-bench-")
    redis_server = LocalRedis(persistent=args.persistent).start()
    port = free_port()
    env = {
        "REDIS_URL": f"redis://{HOST}:{redis_server.port}/0",
        "INTERCOM_CLIENT_SECRET": SECRET,
        "SYNC_TRIGGER_TOKEN": "bench-trigger-token",
        "PYTHONPATH": str(ROOT),
        **dict(item.split("=", 1) for item in args.env),
    }
    argv = web_argv(port=port) if target == "receiver" else [*REFERENCE_ARGV, "--bind", f"{HOST}:{port}"]
    web = Child("web", argv, env=env, log_path=Path(workdir) / "web.log", cwd=ROOT)
    web.start()
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    context = multiprocessing.get_context("spawn")
    try:
        wait_until(
            lambda: requests.get(f"http://{HOST}:{port}/healthz", timeout=1).ok,
            30,
            message="the web server to answer",
        )
        client.config_set("latency-monitor-threshold", LATENCY_MONITOR_MS)  # Redis notes its own stalls
        payloads = build_requests(port, total, args.contacts)
        quiet_before, busy_before = cputime.wait_for_quiet(QUIET_SHARE, args.quiet_wait)
        queue: Any = context.Queue()
        start = time.perf_counter() + 1.0 + 0.2 * args.generators  # time for the generators to start
        dues = [start + i / rate for i in range(total)]
        generators = [
            context.Process(
                target=loadgen.run_in_process,
                args=(HOST, port, payloads[g :: args.generators], dues[g :: args.generators], queue),
                kwargs={"timeout": REQUEST_TIMEOUT},
            )
            for g in range(args.generators)
        ]
        roles = {"web": web.pid, "redis": redis_server.process.pid}  # type: ignore[union-attr]
        before = cputime.snapshot({"web": roles["web"]}, {"redis": roles["redis"]})
        for generator in generators:
            generator.start()
        parts = [queue.get(timeout=args.seconds + args.warmup_seconds + 120) for _ in generators]
        after = cputime.snapshot({"web": roles["web"]}, {"redis": roles["redis"]})
        for generator in generators:
            generator.join(30)
        access_log_lines = sum(1 for _ in open(Path(workdir) / "web.log", "rb"))  # noqa: SIM115
    finally:
        web.stop()

    results: list[Any] = [None] * total
    for g, (part, _cpu) in enumerate(parts):
        results[g :: args.generators] = part
    cpu = cputime.usage(before, after)
    cpu["generators"] = sum(user + system for _, (user, system) in parts)
    cpu["generators_system"] = sum(system for _, (_user, system) in parts)
    cpu["other"] = max(0.0, cpu["other"] - cpu["generators"])  # they are not in a snapshot's groups
    capacity = max(1e-9, cpu["wall"] * (os.cpu_count() or 1))
    other_share, steal_share = cpu["other"] / capacity, cpu["steal"] / capacity

    answers: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for _due, _sent, _done, status, body in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 0:
            errors[body.decode()] = errors.get(body.decode(), 0) + 1
        answers.append(json.loads(body) if status == 200 and body else {})
    outcomes: dict[str, int] = {}
    for answer in answers:
        outcomes[answer.get("status", "none")] = outcomes.get(answer.get("status", "none"), 0) + 1
    if target == "receiver":
        stored = stored_check(answers, statuses.get("200", 0), messages_on_queue(client))
    else:
        stored = reference_stored_check(answers, statuses.get("200", 0), reference_messages(client))
    redis_stalls = {
        event[0].decode(): {"latest_ms": event[2], "max_ms": event[3], "threshold_ms": LATENCY_MONITOR_MS}
        for event in client.execute_command("LATENCY", "LATEST")
    }
    client.close()
    redis_server.cleanup()

    measured = results[warmup:]
    first_due = measured[0][0]
    last_done = max(done for _, _, done, _, _ in measured)
    ok = [item for item in measured if item[3] == 200]
    from_due = latency_summary([done - due for due, _, done, _, _ in ok])
    achieved = round(len(ok) / (last_done - first_due), 1)
    return {
        "benchmark": "webhook",
        "target_server": target,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "rate": rate,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "contacts": args.contacts,
            "redis_persistent": args.persistent,
            "web": " ".join(["python", *argv[1:]]),
            "web_env": dict(item.split("=", 1) for item in args.env),
            "generator": f"{args.generators} process(es), one epoll loop each, a new connection per request",
        },
        "sent": len(results),
        "statuses": statuses,
        "errors": errors,
        "outcomes": outcomes,
        "achieved_rps": achieved,
        "latency_ms_from_due": from_due,
        "latency_ms_from_sent": latency_summary([done - sent for _, sent, done, _, _ in ok]),
        "generator_lateness_ms": latency_summary([max(0.0, sent - due) for due, sent, _, _, _ in measured]),
        "machine_quiet": {
            "busy_share_before": round(busy_before, 3),
            "other_share_during": round(other_share, 3),
            "steal_share_during": round(steal_share, 3),
            "quiet": quiet_before and other_share < QUIET_SHARE and steal_share < QUIET_SHARE,
        },
        "cpu_seconds": {role: round(seconds, 2) for role, seconds in cpu.items()},
        "cpu_ms_per_request": {
            role: round(1000 * seconds / len(results), 3) for role, seconds in cpu.items() if role != "wall"
        },
        "stored": stored,
        "redis_stalls": redis_stalls,
        "web_log_lines": access_log_lines,
        "target": {
            "rate": TARGET_RATE,
            "p99_ms": TARGET_P99_MS,
            "met": bool(
                from_due
                and from_due["p99"] < TARGET_P99_MS
                and stored["every_accepted_stored"]
                and rate >= TARGET_RATE
                and achieved >= 0.99 * rate
                and statuses.get("200", 0) == len(results)
            ),
        },
        "sustained": sustained(from_due, stored, achieved, rate, statuses.get("200", 0) == len(results)),
    }


def sustained(
    from_due: dict[str, float], stored: dict[str, Any], achieved: float, rate: float, all_answered: bool
) -> bool:
    """The run kept its rate (99%) with p99 under the target, every request answered 200 and stored."""
    return bool(
        from_due
        and from_due["p99"] < TARGET_P99_MS
        and stored["every_accepted_stored"]
        and achieved >= 0.99 * rate
        and all_answered
    )


def comparison(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target: median web CPU per request, highest sustained rate; and the receiver/reference ratio."""
    summary: dict[str, Any] = {}
    for target in TARGETS:
        mine = [run for run in runs if run["target_server"] == target]
        if not mine:
            continue
        summary[target] = {
            "runs": len(mine),
            "web_cpu_ms_per_request_median": round(
                statistics.median(run["cpu_ms_per_request"]["web"] for run in mine), 3
            ),
            "highest_sustained_rate": max(
                (run["config"]["rate"] for run in mine if run["sustained"]), default=None
            ),
        }
    if len(summary) == len(TARGETS):
        summary["web_cpu_ratio_receiver_to_reference"] = round(
            summary["receiver"]["web_cpu_ms_per_request_median"]
            / summary["reference"]["web_cpu_ms_per_request_median"],
            2,
        )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument(
        "--rates", default="", help="comma-separated rates, each run for every target (overrides --rate)"
    )
    parser.add_argument(
        "--targets",
        default="receiver",
        help="comma-separated: receiver (as deployed), reference (bench/reference_receiver.py); interleaved",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--persistent", action="store_true", help="Redis append-only file, fsync every write")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the web server (experiments; unset: as deployed)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0, help="wait this long at most for an idle machine first"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "webhook.json"))
    args = parser.parse_args()
    targets = [name for name in args.targets.split(",") if name]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    rates = [float(value) for value in args.rates.split(",") if value] or [args.rate]
    runs = []
    for rate in rates:
        for target in targets:
            run = run_one(args, target, rate)
            runs.append(run)
            print(
                json.dumps(
                    {
                        key: run[key]
                        for key in ("target_server", "achieved_rps", "latency_ms_from_due", "sustained")
                    }
                    | {
                        "rate": rate,
                        "web_cpu_ms": run["cpu_ms_per_request"]["web"],
                        "others": run["machine_quiet"]["other_share_during"],
                    }
                ),
                flush=True,
            )
    report: dict[str, Any] = runs[0] if len(runs) == 1 else {"runs": runs, "comparison": comparison(runs)}
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(run["stored"]["every_accepted_stored"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
