"""How long one small append + ``fdatasync`` takes on a disk (not a test).

Redis with ``appendfsync always`` (as deployed) syncs its append-only file before it
answers a write, so a webhook is acknowledged only as fast as that disk syncs. This
probe does what such a Redis does to the disk, without Redis: ``--rate`` times a
second for ``--seconds`` it appends ``--size`` bytes to a file in ``--dir`` and calls
``fdatasync``, and reports the latency of each (p50/p99/p99.9/max, and every call
over ``--slow-ms`` with its time into the run). Optionally, at the same time:

- ``--beside-log KBPS``: a thread appends a log beside it at that many KB a second,
  without syncing (as the receiver's access lines do);
- ``--bulk-mb MB``: at ``--bulk-at`` seconds a thread writes one file of that size to
  the same directory and then syncs it (as a backup, a log shipper or another
  database on the same disk would), and deletes it at the end.

Everything it writes stays in a temporary directory under ``--dir``, removed at the
end. Figures are printed and recorded in ``--out`` under ``--label`` (one file keeps
every label's latest run). Usage::

    python bench/fsync_probe.py --label quiet
    python bench/fsync_probe.py --label beside-log --beside-log 200
    python bench/fsync_probe.py --label bulk-writer --bulk-mb 1500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def filesystem_of(directory: str) -> str:
    """The type of the filesystem ``directory`` is on (``/proc/mounts``: the longest mount point
    that holds it), or ``unknown``."""
    target = os.path.realpath(directory)
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind


def write_log_beside(path: Path, kilobytes_a_second: float, stop: threading.Event) -> None:
    """Append 400-byte lines at ``kilobytes_a_second``, never syncing, until ``stop``."""
    line = "x" * 399 + "\n"
    lines_a_tick = max(1, int(kilobytes_a_second * 1024 / 400 / 10))
    with path.open("a") as log:
        while not stop.wait(0.1):
            log.write(line * lines_a_tick)
            log.flush()


def write_bulk_file(path: Path, megabytes: int, started_at: list[float], ended_at: list[float]) -> None:
    """Write ``megabytes`` of zeros to ``path``, then fsync it (one bulk writer on the same disk)."""
    chunk = b"\0" * (1024 * 1024)
    started_at.append(time.monotonic())
    with path.open("wb") as bulk:
        for _ in range(megabytes):
            bulk.write(chunk)
        bulk.flush()
        os.fsync(bulk.fileno())
    ended_at.append(time.monotonic())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=500.0, help="appends + fdatasync a second")
    parser.add_argument("--size", type=int, default=1500, help="bytes per append")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="directory on the disk to probe")
    parser.add_argument("--beside-log", type=float, default=0.0, metavar="KBPS")
    parser.add_argument("--bulk-mb", type=int, default=0, metavar="MB")
    parser.add_argument("--bulk-at", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--slow-ms", type=float, default=20.0)
    parser.add_argument("--label", default="quiet", help="name of this run in --out")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fsync_probe.json"))
    args = parser.parse_args()

    filesystem = filesystem_of(args.dir)
    if filesystem in ("tmpfs", "ramfs"):
        print(f"warning: {args.dir} is on {filesystem} (memory): its syncs measure no disk", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="fsync-probe-", dir=args.dir))
    stop = threading.Event()
    bulk_started: list[float] = []
    bulk_ended: list[float] = []
    latencies_ms: list[float] = []
    slow: list[tuple[float, float]] = []
    try:
        if args.beside_log:
            threading.Thread(
                target=write_log_beside, args=(workdir / "beside.log", args.beside_log, stop), daemon=True
            ).start()
        bulk = threading.Thread(
            target=write_bulk_file,
            args=(workdir / "bulk", args.bulk_mb, bulk_started, bulk_ended),
            daemon=True,
        )
        bulk_launched = False
        payload = b"y" * args.size
        descriptor = os.open(workdir / "appendonly", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        start = time.monotonic()
        count = int(args.seconds * args.rate)
        for i in range(count):
            due = start + i / args.rate
            if args.bulk_mb and not bulk_launched and due - start >= args.bulk_at:
                bulk.start()
                bulk_launched = True
            ahead = due - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the open-loop schedule, not synchronisation
            began = time.monotonic()
            os.write(descriptor, payload)
            os.fdatasync(descriptor)
            took_ms = 1000 * (time.monotonic() - began)
            latencies_ms.append(took_ms)
            if took_ms > args.slow_ms:
                slow.append((round(began - start, 2), round(took_ms, 1)))
        os.close(descriptor)
        stop.set()
        if bulk.is_alive():
            bulk.join()
    finally:
        stop.set()
        shutil.rmtree(workdir, ignore_errors=True)

    ordered = sorted(latencies_ms)
    report = {
        "benchmark": "fsync_probe",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "config": {
            "seconds": args.seconds,
            "rate": args.rate,
            "size": args.size,
            "dir": args.dir,
            "filesystem": filesystem,
            "beside_log_kbps": args.beside_log,
            "bulk_mb": args.bulk_mb,
            "bulk_at": args.bulk_at if args.bulk_mb else None,
        },
        "calls": len(ordered),
        "latency_ms": {
            "p50": round(percentile(ordered, 0.50), 3),
            "p99": round(percentile(ordered, 0.99), 3),
            "p99_9": round(percentile(ordered, 0.999), 3),
            "max": round(ordered[-1], 1),
        },
        "slow_calls": {"over_ms": args.slow_ms, "count": len(slow), "at_seconds_and_ms": slow[:50]},
        "bulk_write_seconds": (
            [round(bulk_started[0] - start, 2), round(bulk_ended[0] - start, 2)] if bulk_ended else None
        ),
    }
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded[args.label] = report
    out.write_text(json.dumps(recorded, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
