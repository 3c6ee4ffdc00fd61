"""A worker started without its credentials stops at once with one line naming the setting."""

from __future__ import annotations

import os
import subprocess

from sync_worker.processes import worker_argv


def test_worker_without_intercom_token_names_the_missing_setting(service_env):
    env = {k: v for k, v in service_env.items() if k != "INTERCOM_ACCESS_TOKEN"}
    clean = {k: v for k, v in os.environ.items() if k != "INTERCOM_ACCESS_TOKEN"}
    finished = subprocess.run(worker_argv(), env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if "INTERCOM_ACCESS_TOKEN" in line]
    assert lines == ["intercom-sync worker: INTERCOM_ACCESS_TOKEN is not set"], finished.stderr
    assert "Traceback" not in finished.stderr


def test_worker_with_an_unknown_display_zone_does_not_start(service_env):
    """Every contact would fail the same way: the worker refuses to start, naming the setting."""
    env = {**os.environ, **service_env, "SYNC_DISPLAY_TIMEZONE": "Mars/Olympus_Mons"}
    finished = subprocess.run(worker_argv(), env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if "SYNC_DISPLAY_TIMEZONE" in line]
    assert lines == [
        "intercom-sync worker: SYNC_DISPLAY_TIMEZONE: unknown time zone 'Mars/Olympus_Mons': "
        "expected an IANA name like 'America/Toronto'"
    ], finished.stderr
    assert "Traceback" not in finished.stderr
