"""The service's processes as child processes: how to start, stop and kill them.

Guarantees: each :class:`Child` runs in its own process group, so
:meth:`Child.stop` (SIGTERM, then SIGKILL after a grace period) and
:meth:`Child.kill` reach every process it forked (Celery's pool children); the
command lines are the ones the README and ``docker-compose.yml`` document, built in one place (:func:`worker_argv`,
:func:`beat_argv`, :func:`web_argv`); :func:`process_table` reads who is whose
child or group (tests and benchmarks use it to find pool processes);
:meth:`Child.raise_if_exited` turns a child that died while others waited for it
into :class:`ExitedDuringStart`, carrying the last lines of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE
from sync_worker.devtools.localredis import WaitAborted


def worker_argv(
    *,
    concurrency: int = 2,
    hostname: str = "worker@%h",
    queues: Sequence[str] = (REALTIME_QUEUE, BULK_QUEUE),
    loglevel: str = "INFO",
    pool: str = "prefork",
    app: str = "sync_worker.celery_app",
) -> list[str]:
    """``celery worker`` consuming the queues in priority order (realtime first).

    ``app`` is the module holding the Celery app: the service's own unless a benchmark
    runs a variant of it (``bench/celery_task_rate.py``).
    """
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--hostname",
        hostname,
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]


def beat_argv(*, schedule_file: str, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "sync_worker.celery_app",
        "beat",
        "--schedule",
        schedule_file,
        "--loglevel",
        loglevel,
    ]


def web_argv(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The receiver's server (:mod:`web.serve`: waitress, whole requests read before a thread runs
    the app; threads and client timeout from the settings); ``bench/README.md`` has its figures."""
    return [sys.executable, "-m", "web.serve", "--bind", f"{host}:{port}"]


class ExitedDuringStart(WaitAborted):
    """A child exited while the stack was waiting for it (or another part) to come up."""

    def __init__(self, name: str, returncode: int | None, log_path: Path | None, log_tail: list[str]):
        super().__init__(f"{name} exited during start-up (exit code {returncode})")
        self.name = name
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = log_tail


def tail(path: Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the file at ``path`` (none when there is no such file)."""
    if path is None or not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        cwd: str | Path | None = None,
    ):
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.cwd,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def raise_if_exited(self) -> None:
        """Raise :class:`ExitedDuringStart` (with its log's last lines) if the process has ended."""
        if self.process is not None and not self.alive():
            raise ExitedDuringStart(self.name, self.process.returncode, self.log_path, tail(self.log_path))

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or an OOM kill would."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def process_table() -> Iterator[tuple[int, list[str]]]:
    """Every live process (Linux ``/proc``): its pid and the ``stat`` fields after its name.

    In those fields ``[0]`` is the state, ``[1]`` the parent pid, ``[2]`` the process group,
    ``[11]``/``[12]`` user/system CPU ticks. The name may hold spaces and parentheses, so the
    fields are split after its last closing parenthesis; a process that ends meanwhile is skipped.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat.rsplit(")", 1)[1].split()
