"""Everything a newcomer needs to see the service work, on one machine.

Guarantees of :class:`DevStack`:
- with no ``REDIS_URL`` in the environment it starts a private redis-server
  (persistent, on a free port, files under the state directory);
- with no ``INTERCOM_ACCESS_TOKEN`` it starts the sandboxes (Intercom and the platform seeded
  with the sample dataset, the referral program with its sample users, its ``user.join``
  webhook aimed at the receiver's ``/webhooks/referrals`` with ``X-Referral-Token``), and
  points the service at them (``REFERRAL_API_URL``/``TOKEN``, ``REFERRAL_WEBHOOK_TOKEN``), with
  every registered integration running (``SYNC_INTEGRATIONS``, unless the environment names some);
  with one, it uses the real Intercom and the configured platform;
- it then starts web (waitress, ``web.serve``), one worker and beat, each in its own process
  group, and writes ``stack.json`` (URLs and the dev tokens, :mod:`sync_worker.stackfile`)
  so ``sync-worker try`` and the operator commands can find them;
- every wait of :meth:`DevStack.start` also watches every part started so far: a part
  that exits ends the start at once with :class:`~sync_worker.devtools.processes.ExitedDuringStart`
  (its name, exit code and last log lines), and the Redis it started with
  :class:`~sync_worker.devtools.localredis.RedisExited`;
- :meth:`DevStack.stop` stops every child it started, in reverse order, and removes
  ``stack.json``.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from sync_worker import integrations, stackfile
from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until
from sync_worker.devtools.processes import Child, beat_argv, web_argv, worker_argv
from sync_worker.devtools.sandbox.dataset import load_sample

SANDBOX_INTERCOM_TOKEN = "sandbox-intercom-token"
SANDBOX_PLATFORM_TOKEN = "sandbox-platform-token"
SANDBOX_REFERRAL_TOKEN = "sandbox-referral-token"
#: A contact in the Intercom sandbox whose email has no platform account (shows `Platform Account Exists = No`).
NO_ACCOUNT_EMAIL = "no.account@example.com"


@dataclass
class DevStack:
    state_dir: Path
    web_port: int = 8000
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)
    redis: LocalRedis | None = None
    info: dict[str, object] = field(default_factory=dict)

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env=env, log_path=self.state_dir / f"{name}.log").start()
        self.children.append(child)
        return child

    def _wait(self, ready: Callable[[], object], what: str, timeout: float = 60) -> None:
        """Wait for ``ready`` while every part started so far is still running."""

        def check() -> object:
            for child in self.children:
                child.raise_if_exited()
            return ready()

        wait_until(check, timeout, interval=0.1, message=what)

    def start(self) -> dict[str, object]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] = {}
        if not self.environ.get("REDIS_URL"):
            self.redis = LocalRedis(directory=str(self.state_dir / "redis"), persistent=True)
            Path(self.redis.directory).mkdir(parents=True, exist_ok=True)
            self.redis.start()
            env["REDIS_URL"] = self.redis.url
        sandboxed = not self.environ.get("INTERCOM_ACCESS_TOKEN")
        if sandboxed:
            env.update(self._start_sandboxes())
            # On the sandboxes every integration runs, unless the environment chooses.
            env["SYNC_INTEGRATIONS"] = self.environ.get("SYNC_INTEGRATIONS") or ",".join(
                integrations.REGISTRY
            )
        env.setdefault(
            "SYNC_TRIGGER_TOKEN", self.environ.get("SYNC_TRIGGER_TOKEN") or secrets.token_urlsafe(16)
        )
        env.setdefault("SYNC_ADMIN_TOKEN", self.environ.get("SYNC_ADMIN_TOKEN") or secrets.token_urlsafe(16))
        env.setdefault(
            "SYNC_CONNECTOR_TOKEN", self.environ.get("SYNC_CONNECTOR_TOKEN") or secrets.token_urlsafe(16)
        )
        env.setdefault(
            "INTERCOM_CLIENT_SECRET", self.environ.get("INTERCOM_CLIENT_SECRET") or secrets.token_urlsafe(16)
        )
        child_env = {**self.environ, **env}
        self._child("web", web_argv(port=self.web_port), child_env)
        self._child("worker", worker_argv(concurrency=2, hostname="dev-worker@%h"), child_env)
        self._child("beat", beat_argv(schedule_file=str(self.state_dir / "celerybeat-schedule")), child_env)
        web_url = f"http://127.0.0.1:{self.web_port}"
        self._wait(lambda: requests.get(f"{web_url}/healthz", timeout=1).ok, "web /healthz")
        self._wait(
            lambda: requests.get(f"{web_url}/readyz", timeout=2).ok, "web /readyz (Redis takes writes)"
        )
        self._wait(lambda: requests.get(f"{web_url}/healthz/workers", timeout=2).ok, "a worker heartbeat")
        self.info = {
            "web_url": web_url,
            "redis_url": child_env["REDIS_URL"],
            "intercom_api_url": child_env.get("INTERCOM_API_URL", "https://api.intercom.io"),
            "platform_api_url": child_env.get("PLATFORM_API_URL"),
            "referral_api_url": child_env.get("REFERRAL_API_URL"),
            "sandboxed": sandboxed,
            "integrations": list(integrations.parse(child_env.get("SYNC_INTEGRATIONS"))),
            "sync_trigger_token": env["SYNC_TRIGGER_TOKEN"],
            "generated_trigger_token": not self.environ.get("SYNC_TRIGGER_TOKEN"),
            "sync_admin_token": env["SYNC_ADMIN_TOKEN"],
            "sync_connector_token": env["SYNC_CONNECTOR_TOKEN"],
            "generated_connector_token": not self.environ.get("SYNC_CONNECTOR_TOKEN"),
            "logs": str(self.state_dir),
        }
        stackfile.write(self.state_dir, self.info)
        return self.info

    def _start_sandboxes(self) -> dict[str, str]:
        intercom_port, platform_port, referral_port = free_port(), free_port(), free_port()
        webhook_token = self.environ.get("REFERRAL_WEBHOOK_TOKEN") or secrets.token_urlsafe(16)
        self._child(
            "intercom-sandbox",
            [
                sys.executable,
                "-m",
                "sync_worker.devtools.sandbox.intercom",
                "--port",
                str(intercom_port),
                "--token",
                SANDBOX_INTERCOM_TOKEN,
            ],
            {},
        )
        self._child(
            "platform-sandbox",
            [
                sys.executable,
                "-m",
                "sync_worker.devtools.sandbox.platform",
                "--port",
                str(platform_port),
                "--token",
                SANDBOX_PLATFORM_TOKEN,
            ],
            {},
        )
        self._child(
            "referral-sandbox",
            [
                sys.executable,
                "-m",
                "sync_worker.devtools.sandbox.referral",
                "--port",
                str(referral_port),
                "--token",
                SANDBOX_REFERRAL_TOKEN,
                "--webhook-url",
                f"http://127.0.0.1:{self.web_port}/webhooks/referrals",
                "--webhook-header",
                f"X-Referral-Token={webhook_token}",
            ],
            {},
        )
        intercom_url = f"http://127.0.0.1:{intercom_port}"
        platform_url = f"http://127.0.0.1:{platform_port}"
        referral_url = f"http://127.0.0.1:{referral_port}"
        self._wait(
            lambda: requests.get(f"{intercom_url}/_sandbox/stats", timeout=1).ok, "the Intercom sandbox"
        )
        self._wait(lambda: requests.get(f"{platform_url}/v1/health", timeout=1).ok, "the platform sandbox")
        self._wait(
            lambda: requests.get(f"{referral_url}/_sandbox/stats", timeout=1).ok, "the referral sandbox"
        )
        seed_intercom_contacts(intercom_url)
        return {
            "INTERCOM_API_URL": intercom_url,
            "INTERCOM_ACCESS_TOKEN": SANDBOX_INTERCOM_TOKEN,
            "PLATFORM_API_URL": platform_url,
            "PLATFORM_API_TOKEN": SANDBOX_PLATFORM_TOKEN,
            "REFERRAL_API_URL": referral_url,
            "REFERRAL_API_TOKEN": SANDBOX_REFERRAL_TOKEN,
            "REFERRAL_WEBHOOK_TOKEN": webhook_token,
        }

    def stop(self) -> None:
        stackfile.remove(self.state_dir)
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()


def sample_contacts() -> list[dict[str, str]]:
    """One Intercom contact per distinct sample email, plus one with no platform account."""
    contacts: dict[str, dict[str, str]] = {}
    for record in load_sample():
        email = record["email"].strip().lower()
        name = f"{record['first_name']} {record['last_name']}".strip()
        contacts.setdefault(email, {"email": email, "name": name})
    contacts[NO_ACCOUNT_EMAIL] = {"email": NO_ACCOUNT_EMAIL, "name": "Nora Account"}
    return list(contacts.values())


def seed_intercom_contacts(intercom_url: str) -> list[dict]:
    response = requests.post(f"{intercom_url}/_sandbox/contacts", json=sample_contacts(), timeout=10)
    response.raise_for_status()
    return response.json()
