"""`sync-worker dev` and `sync-worker try` as a newcomer runs them (the README's run command).

With no REDIS_URL and no INTERCOM_ACCESS_TOKEN in the environment, `dev` must
start its own Redis and both sandboxes, print a `try` command that works, and
stop every child on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from sync_worker.devtools.localredis import free_port, wait_until

SCRIPT = Path(sys.executable).parent / "sync-worker"
UNSET = (
    "REDIS_URL",
    "INTERCOM_ACCESS_TOKEN",
    "INTERCOM_API_URL",
    "PLATFORM_API_URL",
    "PLATFORM_API_TOKEN",
    "REFERRAL_API_URL",
    "REFERRAL_API_TOKEN",
    "REFERRAL_WEBHOOK_TOKEN",
    "SYNC_TRIGGER_TOKEN",
    "SYNC_ADMIN_TOKEN",
    "INTERCOM_CLIENT_SECRET",
    "SYNC_DEV_STATE_DIR",
    "INTERCOM_OPENAPI_SPEC",
)


def test_dev_stops_at_once_with_the_log_of_a_part_that_fails_to_start(tmp_path):
    """A sandbox that cannot start ends `dev` within seconds, with that sandbox's own log lines."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["INTERCOM_OPENAPI_SPEC"] = str(tmp_path / "no-such-description.yaml")
    started = time.monotonic()
    finished = subprocess.run(
        [str(SCRIPT), "dev", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert took < 20, f"took {took:.1f} s: {output}"  # the part's own start (imports) plus a second, not 60 s
    assert "intercom-sandbox exited during start-up (exit code 2)" in finished.stderr, output
    assert "no-such-description.yaml" in finished.stderr, output  # the sandbox's own log line, shown
    assert "Traceback" not in output, output
    assert "stopped." in finished.stdout
    assert not (tmp_path / "var" / "dev" / "stack.json").exists()


def test_dev_runs_everything_and_try_shows_a_synced_contact(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    port = free_port()
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        dev = subprocess.Popen(
            [str(SCRIPT), "dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # As a shell starts a background job (CI does): SIGINT inherited ignored. Ctrl-C must still work.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in output.read_text() or dev.poll() is not None,
            120,
            message="the dev banner",
        )
        banner = output.read_text()
        assert dev.poll() is None, banner
        assert "(sandbox)" in banner
        command = re.search(r"^\s+(\.venv/bin/sync-worker try \S+)$", banner, re.MULTILINE)
        assert command, banner
        email = command.group(1).split()[-1]
        tried = subprocess.run(
            [str(SCRIPT), "try", email], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert tried.returncode == 0, tried.stdout + tried.stderr
        assert "worker result: synced" in tried.stdout
        assert re.search(r"Data Status\s+Live", tried.stdout), tried.stdout
        assert re.search(r"Platform Account Exists\s+Yes", tried.stdout), tried.stdout
        assert "try --integration dealer_users user123" in banner  # every integration runs on the sandboxes
        user = subprocess.run(
            [str(SCRIPT), "try", "--integration", "dealer_users", "user123"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert user.returncode == 0, user.stdout + user.stderr
        assert "worker result: synced" in user.stdout, user.stdout
        assert re.search(r"external_id\s+user123", user.stdout), user.stdout
        assert re.search(r"User_roles\s+Company Billing Admin, Location Sales Admin", user.stdout), (
            user.stdout
        )
        assert re.search(r"company\s+location_id_1\s+Location 1", user.stdout), user.stdout
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        stack = json.loads((tmp_path / "var" / "dev" / "stack.json").read_text())
        referral = requests.get(f"{stack['referral_api_url']}/_sandbox/config", timeout=5).json()
        assert (
            referral["webhook_url"] == f"http://127.0.0.1:{port}/webhooks/referrals"
        )  # aimed at our receiver
        assert set(referral["webhook_headers"]) == {"X-Referral-Token"}
        # A referred user joins the program: its webhook reaches the receiver, its lead Intercom.
        joined = requests.post(
            f"{stack['referral_api_url']}/_sandbox/join", json={"email": "dev.joiner@example.com"}, timeout=10
        ).json()
        assert joined["webhook"]["status"] == 200, joined

        def lead() -> dict | None:
            contacts = requests.get(f"{stack['intercom_api_url']}/_sandbox/contacts", timeout=5).json()
            return next((c for c in contacts if c.get("email") == "dev.joiner@example.com"), None)

        wait_until(lead, 30, interval=0.2, message="the joiner's lead in the Intercom sandbox")
        assert lead()["custom_attributes"]["Referral ID"] == str(joined["user"]["id"])
        by_hand = re.search(r"curl -s -X POST (\S+) -H \"Authorization: Bearer (\S+)\"", banner)
        assert by_hand, banner  # the copy-paste curl line carries a token that works as printed
        url, bearer = by_hand.groups()
        answer = requests.post(
            url, json={"email": email}, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
        )
        assert answer.status_code == 202, answer.text
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(60)
            stopped_by_ctrl_c = True
        except subprocess.TimeoutExpired:
            stopped_by_ctrl_c = False
            dev.terminate()  # do not leave the stack running
            dev.wait(60)
    assert stopped_by_ctrl_c, "Ctrl-C (SIGINT) did not stop `sync-worker dev` within 60 s"
    assert "stopped." in output.read_text()
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        web_still_up = True
    except requests.ConnectionError:
        web_still_up = False
    assert not web_still_up
