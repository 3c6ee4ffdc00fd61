"""Benchmark of a burst of referrals, webhook to Intercom lead (not a test).

Starts a private Redis (append-only, fsync on every write, as deployed), the Intercom sandbox (its
real rate limit, every request validated against Intercom's 2.14 description) in a process of
its own that notes when each contact is created, the referral program's sandbox (its real limit:
600 calls in any 60 s) sending its ``user.join`` webhook with ``X-Referral-Token`` to the
receiver as deployed (``python -m web.serve``), and ``celery worker`` processes running the
``referral_leads`` integration. Then ``--users`` referred users join within ``--seconds`` (open
loop: join *n* is due at ``n * seconds / users``; each join makes the sandbox send the real
webhook to the real receiver), and the bench waits until every one of them is a lead in Intercom.

Figures printed and written to ``--out`` (JSON):
- per referral, the time from its join (the webhook is sent within it) to its lead's creation in
  Intercom: p50, p95, max (and the share within the spec's 10 s);
- the program's API calls per referral (every call the program's sandbox counted, by operation,
  divided by the referrals), the most calls in any 60 s span, and calls answered over the limit
  (the target: at most 1 a referral, fewer in a burst; 0 over the limit);
- the webhooks' answers, the joins that ran late (the driver could not keep the schedule), the
  Intercom calls and 429s, and the machine.

Usage: ``flock /tmp/intercom-sync-heavy.lock .venv/bin/python bench/referral_burst_bench.py
[--users 2000] [--seconds 60] [--workers 2] [--concurrency 4] [--out bench/results/referral_burst.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import INTERCOM_TOKEN, machine, service_env, start_workers, stop  # noqa: E402
from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until  # noqa: E402
from sync_worker.devtools.processes import Child, web_argv  # noqa: E402

REFERRAL_TOKEN = "bench-referral-token"
WEBHOOK_TOKEN = "bench-referral-webhook-token"
#: The spec's target: the lead is in Intercom within 10 s of the webhook.
TARGET_SECONDS = 10.0
#: Intercom's limit as the service starts with it (INTERCOM_CALLS_PER_WINDOW's default): 10,000 a minute.
INTERCOM_LIMIT, INTERCOM_WINDOW = 1666, 10.0


# --- the Intercom sandbox's process: notes when each contact is created ------------------------


def serve_intercom(port: int) -> None:
    from flask import jsonify

    from sync_worker.devtools.sandbox.intercom import IntercomState, create_app
    from sync_worker.devtools.sandbox.openapi import get_validator
    from sync_worker.devtools.sandbox.server import ServedApp

    created: dict[str, float] = {}
    lock = threading.Lock()

    class Noting(IntercomState):
        def create_contact(self, body: Any) -> dict[str, Any]:
            answer = super().create_contact(body)
            with lock:
                created.setdefault(str(body.get("email") or "").lower(), time.time())
            return answer

    state = Noting(rate_limit=INTERCOM_LIMIT, window_seconds=INTERCOM_WINDOW)
    app = create_app(state, token=INTERCOM_TOKEN, validator=get_validator())

    @app.get("/_sandbox/bench-created")
    def bench_created() -> Any:
        with lock:
            return jsonify(dict(created))

    ServedApp(app, port=port).serve_forever()


# --- the run ------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def run(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="referral-burst-"))
    (log_dir / "redis").mkdir()
    redis = LocalRedis(persistent=True, directory=str(log_dir / "redis")).start()
    children: list[Child] = []
    workers: list[Child] = []
    try:
        intercom_port, referral_port, web_port = free_port(), free_port(), free_port()
        intercom_url = f"http://127.0.0.1:{intercom_port}"
        referral_url = f"http://127.0.0.1:{referral_port}"
        web_url = f"http://127.0.0.1:{web_port}"
        bench = [sys.executable, str(Path(__file__).resolve())]
        children.append(
            Child(
                "intercom",
                [*bench, "--serve-intercom", str(intercom_port)],
                env={},
                log_path=log_dir / "intercom.log",
                cwd=ROOT,
            ).start()
        )
        children.append(
            Child(
                "referral",
                [
                    sys.executable, "-m", "sync_worker.devtools.sandbox.referral",
                    "--port", str(referral_port), "--token", REFERRAL_TOKEN,
                    "--webhook-url", f"{web_url}/webhooks/referrals",
                    "--webhook-header", f"X-Referral-Token={WEBHOOK_TOKEN}",
                ],
                env={}, log_path=log_dir / "referral.log", cwd=ROOT,
            ).start()
        )  # fmt: skip
        env = {
            **service_env(
                redis_url=redis.url,
                intercom_url=intercom_url,
                platform_url="http://127.0.0.1:1",
                limit=INTERCOM_LIMIT,
                window=INTERCOM_WINDOW,
            ),
            "SYNC_INTEGRATIONS": "clients,referral_leads",
            "REFERRAL_API_URL": referral_url,
            "REFERRAL_API_TOKEN": REFERRAL_TOKEN,
            "REFERRAL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "SYNC_WEB_THREADS": "8",
        }
        children.append(
            Child("web", web_argv(port=web_port), env=env, log_path=log_dir / "web.log", cwd=ROOT).start()
        )
        wait_until(lambda: _ok(f"{intercom_url}/_sandbox/bench-created"), 60, message="the Intercom sandbox")
        wait_until(lambda: _ok(f"{referral_url}/_sandbox/stats"), 60, message="the referral sandbox")
        wait_until(lambda: _ok(f"{web_url}/readyz"), 60, message="the receiver")
        workers = start_workers(args.workers, env=env, log_dir=log_dir, concurrency=args.concurrency)

        http = requests.Session()
        before = http.get(f"{referral_url}/_sandbox/stats", timeout=10).json()
        emails = [f"burst{n:05d}@example.com" for n in range(args.users)]
        joined: dict[str, dict[str, Any]] = {}
        interval = args.seconds / args.users
        start = time.time() + 0.5

        def join(n: int) -> None:
            due = start + n * interval
            time.sleep(max(0.0, due - time.time()))
            sent = time.time()
            answer = requests.post(
                f"{referral_url}/_sandbox/join",
                json={"email": emails[n], "first_name": f"Burst {n}"},
                timeout=30,
            ).json()
            joined[emails[n]] = {
                "due": due,
                "sent": sent,
                "answered": time.time(),
                "webhook": answer["webhook"],
            }

        with ThreadPoolExecutor(max_workers=args.drivers) as pool:
            list(pool.map(join, range(args.users)))
        joins_done = time.time()

        def created() -> dict[str, float]:
            return http.get(f"{intercom_url}/_sandbox/bench-created", timeout=30).json()

        wait_until(
            lambda: all(email in created() for email in emails),
            args.timeout,
            interval=0.5,
            message="every referral's lead in Intercom",
        )
        leads = created()
        done = time.time()
        after = http.get(f"{referral_url}/_sandbox/stats", timeout=10).json()
        intercom_stats = http.get(f"{intercom_url}/_sandbox/stats", timeout=10).json()
    finally:
        stop(workers)
        for child in reversed(children):
            child.stop()
        redis.cleanup()

    latencies = [leads[email] - joined[email]["sent"] for email in emails]
    calls = {op: after["calls"].get(op, 0) - before["calls"].get(op, 0) for op in after["calls"]}
    total_calls = sum(calls.values())
    late = [j["sent"] - j["due"] for j in joined.values()]
    statuses: dict[str, int] = {}
    for each in joined.values():
        statuses[str(each["webhook"].get("status"))] = statuses.get(str(each["webhook"].get("status")), 0) + 1
    return {
        "users": args.users,
        "seconds": args.seconds,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "joins_took_s": round(joins_done - start, 2),
        "all_leads_after_s": round(done - start, 2),
        "join_late_s": {"p50": round(percentile(late, 0.5), 3), "max": round(max(late), 3)},
        "webhook_answers": statuses,
        "webhook_to_lead_s": {
            "p50": round(percentile(latencies, 0.50), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "max": round(max(latencies), 3),
            "mean": round(statistics.fmean(latencies), 3),
            "within_target_pct": round(100 * sum(1 for x in latencies if x <= TARGET_SECONDS) / len(latencies), 2),
        },
        "program_calls": calls,
        "program_calls_per_referral": round(total_calls / args.users, 4),
        "program_max_calls_in_any_window": after["max_in_window"],
        "program_rate_limit": after["rate_limit"],
        "program_over_limit": after["over_limit"] - before["over_limit"],
        "intercom": {
            k: intercom_stats.get(k)
            for k in (
                "received_total",
                "admitted_total",
                "max_admitted_in_window",
                "windows_over_limit",
                "calls_by_operation",
                "rate_limited",
                "validation_failures",
            )
        },
        "machine": machine(),
        "logs": str(log_dir),
    }  # fmt: skip


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve-intercom", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--drivers", type=int, default=16, help="threads sending the joins")
    parser.add_argument("--timeout", type=float, default=600.0, help="how long to wait for every lead")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.serve_intercom:
        serve_intercom(args.serve_intercom)
        return
    figures = run(args)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
