"""Open-loop HTTP load from pre-built raw requests: one epoll loop, non-blocking sockets (bench helper).

Guarantees:
- request ``i`` is sent on a new connection at its due time ``dues[i]`` (a
  ``time.perf_counter`` instant), whatever the answers before it (open loop): a
  server that falls behind shows as latency from the due time, and a generator
  that falls behind shows as ``sent - due`` (both recorded);
- the work per request is a socket, a connect, one ``send`` of bytes built
  beforehand, ``recv`` until the ``Content-Length`` body is in, and a close, so
  the generator costs a small fraction of a core (the benchmark measures it);
- bounded: every request ends by its answer, a connection error, or
  ``timeout`` seconds after it was due; only the given address is contacted.

:func:`drive` runs in the calling process; the benchmark starts it in its own
process(es) (``run_in_process``).
"""

from __future__ import annotations

import contextlib
import errno
import resource
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"


@dataclass
class _Conn:
    index: int
    sock: socket.socket
    sent: float
    buffer: bytearray = field(default_factory=bytearray)
    need: int = -1  # total bytes of head + body once the head is in
    status: int = 0


def _parse_head(buffer: bytearray) -> tuple[int, int] | None:
    """(status, head + body length) once the head is complete, else None."""
    end = buffer.find(_HEAD_END)
    if end < 0:
        return None
    head = bytes(buffer[:end])
    status = int(head[9:12]) if head.startswith(b"HTTP/1.") else 0
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, end + len(_HEAD_END) + length


def drive(
    host: str, port: int, payloads: list[bytes], dues: list[float], timeout: float = 10.0
) -> list[tuple[float, float, float, int, bytes]]:
    """Send ``payloads[i]`` at ``dues[i]``; one ``(due, sent, done, status, body)`` per request.

    ``status`` 0 is a connection error or a timeout (``body`` then holds the reason).
    """
    results: list[Any] = [None] * len(payloads)
    poller = select.epoll()
    open_conns: dict[int, _Conn] = {}
    address = (host, port)
    following = 0
    total = len(payloads)
    finished = 0
    last_sweep = time.perf_counter()

    def finish(conn: _Conn, status: int, body: bytes) -> None:
        nonlocal finished
        fd = conn.sock.fileno()
        with contextlib.suppress(OSError, ValueError):
            poller.unregister(fd)
        open_conns.pop(fd, None)
        conn.sock.close()
        results[conn.index] = (dues[conn.index], conn.sent, time.perf_counter(), status, body)
        finished += 1

    try:
        while finished < total:
            now = time.perf_counter()
            while following < total and dues[following] <= now:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                conn = _Conn(following, sock, time.perf_counter())
                code = sock.connect_ex(address)
                if code not in (0, errno.EINPROGRESS):
                    results[following] = (
                        dues[following],
                        conn.sent,
                        conn.sent,
                        0,
                        errno.errorcode[code].encode(),
                    )
                    sock.close()
                    finished += 1
                else:
                    open_conns[sock.fileno()] = conn
                    poller.register(sock.fileno(), select.EPOLLOUT)
                following += 1
                now = time.perf_counter()
            wait = max(0.0, dues[following] - now) if following < total else 0.05
            for fd, events in poller.poll(min(wait, 0.05)):
                conn = open_conns.get(fd)
                if conn is None:
                    continue
                if events & select.EPOLLOUT:
                    error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        finish(conn, 0, errno.errorcode.get(error, str(error)).encode())
                        continue
                    payload = payloads[conn.index]
                    sent = conn.sock.send(payload)
                    if sent < len(payload):  # never for our small requests; keep it correct anyway
                        conn.sock.setblocking(True)
                        conn.sock.sendall(payload[sent:])
                        conn.sock.setblocking(False)
                    poller.modify(fd, select.EPOLLIN)
                    continue
                try:
                    chunk = conn.sock.recv(65536)
                except OSError as exc:
                    finish(conn, 0, type(exc).__name__.encode())
                    continue
                conn.buffer += chunk
                if conn.need < 0:
                    parsed = _parse_head(conn.buffer)
                    if parsed is not None:
                        conn.status, conn.need = parsed
                if conn.need >= 0 and len(conn.buffer) >= conn.need:
                    body_start = conn.buffer.find(_HEAD_END) + len(_HEAD_END)
                    finish(conn, conn.status, bytes(conn.buffer[body_start : conn.need]))
                elif not chunk:
                    finish(conn, 0, b"closed before the answer was complete")
            now = time.perf_counter()
            if now - last_sweep > 0.5:
                last_sweep = now
                for conn in [c for c in open_conns.values() if now - dues[c.index] > timeout]:
                    finish(conn, 0, b"timeout")
    finally:
        for conn in list(open_conns.values()):
            conn.sock.close()
        poller.close()
    return results


def run_in_process(
    host: str, port: int, payloads: list[bytes], dues: list[float], out: Any, timeout: float = 10.0
) -> None:
    """Process entry point: :func:`drive`, then put ``(results, (user, system) CPU seconds of drive)`` on ``out``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    results = drive(host, port, payloads, dues, timeout)
    after = resource.getrusage(resource.RUSAGE_SELF)
    out.put((results, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)))
