"""Operator commands find the Redis of the stack they belong to, and say which one they use.

With ``REDIS_URL`` unset, ``sync-worker resync`` and ``sync-worker dead-letters`` must talk to the
Redis of the running ``sync-worker dev`` stack (never a default ``127.0.0.1:6379`` that may be
someone else's), name it in their first line, fail at once with one line when there is no stack,
and ``resync --follow`` must say so when no worker takes the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.localredis import LocalRedis, free_port, wait_until
from tests.integration.test_dev_command import UNSET

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "sync-worker"


def operator_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, **extra}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=env or operator_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory) -> Iterator[tuple[Path, dict]]:
    """A `sync-worker dev` stack started in an empty folder, as the README's run command starts it."""
    folder = tmp_path_factory.mktemp("dev-stack")
    output = folder / "dev.out"
    with output.open("wb") as sink:
        dev = subprocess.Popen(
            [str(SCRIPT), "dev", "--port", str(free_port())],
            cwd=folder,
            env=operator_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in output.read_text() or dev.poll() is not None,
            120,
            message="the dev banner",
        )
        assert dev.poll() is None, output.read_text()
        yield folder, json.loads((folder / "var" / "dev" / "stack.json").read_text())
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            dev.kill()


def test_resync_follow_runs_the_sample_workspace_on_the_stacks_redis(dev_stack):
    folder, info = dev_stack
    followed = run(folder, "resync", "--follow")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    first_line = followed.stderr.splitlines()[0]
    assert first_line.startswith(f"redis: {info['redis_url']} (the sync-worker dev stack of "), first_line
    assert "finished in" in followed.stdout and "100%" in followed.stdout, followed.stdout
    assert "no worker has taken it" not in followed.stderr


def test_dead_letters_list_reads_the_stacks_store(dev_stack):
    folder, info = dev_stack
    client = redis_lib.Redis.from_url(info["redis_url"])
    store = DeadLetterStore(client)
    store.park(
        contact_id="c-stack",
        email="parked.person@example.com",
        error_code="invalid_attribute",
        error_message="a test entry",
        trigger="manual",
        kwargs={"contact_id": "c-stack", "email": "parked.person@example.com", "trigger": "manual"},
    )
    try:
        listed = run(folder, "dead-letters", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stderr.splitlines()[0].startswith(f"redis: {info['redis_url']} "), listed.stderr
        assert "id:c-stack" in listed.stdout and "invalid_attribute" in listed.stdout, listed.stdout
    finally:
        store.purge()
        client.close()


def test_the_stack_is_found_from_another_directory_through_sync_dev_state_dir(dev_stack, tmp_path):
    folder, info = dev_stack
    listed = run(
        tmp_path, "dead-letters", "list", env=operator_env(SYNC_DEV_STATE_DIR=str(folder / "var/dev"))
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines()[0].startswith(f"redis: {info['redis_url']} "), listed.stderr


@pytest.mark.parametrize("command", [("resync", "--follow"), ("dead-letters", "list"), ("resync", "list")])
def test_with_no_stack_and_no_redis_url_a_command_fails_at_once_in_one_line(tmp_path, command):
    nowhere = tmp_path / "no-stack"
    finished = run(tmp_path, *command, env=operator_env(SYNC_DEV_STATE_DIR=str(nowhere)), timeout=30)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert finished.stdout == ""
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert "REDIS_URL is unset and no `sync-worker dev` stack is running here" in lines[0]
    assert str(nowhere) in lines[0]


def test_a_stack_file_whose_redis_is_gone_is_reported_as_stopped_not_used(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    gone = f"redis://127.0.0.1:{free_port()}/0"
    (state / "stack.json").write_text(json.dumps({"redis_url": gone}))
    finished = run(
        tmp_path, "dead-letters", "list", env=operator_env(SYNC_DEV_STATE_DIR=str(state)), timeout=30
    )
    assert finished.returncode == 1
    assert f"is not running (its Redis at {gone} does not answer)" in finished.stderr, finished.stderr


def test_follow_says_when_no_worker_takes_the_run(tmp_path):
    """A stack whose Redis answers but has no worker: one line says so instead of a silent 0%."""
    state = tmp_path / "state"
    state.mkdir()
    with LocalRedis(persistent=False) as lonely:
        (state / "stack.json").write_text(json.dumps({"redis_url": lonely.url}))
        following = subprocess.Popen(
            [str(SCRIPT), "resync", "--follow"],
            cwd=tmp_path,
            env=operator_env(SYNC_DEV_STATE_DIR=str(state)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = threading.Timer(30, following.kill)  # a missing hint fails the test, never hangs it
        deadline.start()
        try:
            assert following.stderr is not None
            first = following.stderr.readline()
            assert first.startswith(f"redis: {lonely.url} "), first
            hint = following.stderr.readline()  # blocks until the hint (or the end of the command)
            assert "no worker has taken it after 5 s; no worker has a fresh heartbeat in" in hint, hint
            assert lonely.url in hint
        finally:
            deadline.cancel()
            following.kill()
            following.wait(10)
