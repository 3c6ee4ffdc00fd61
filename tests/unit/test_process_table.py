"""``process_table``: the /proc reading that tests and benchmarks use to find pool processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.processes import process_table

ODD_NAME = "odd) name (x"  # spaces and parentheses, as a process name (comm) may hold


def test_a_child_is_found_with_its_parent_and_group_even_with_an_odd_name() -> None:
    renames_itself = f"open('/proc/self/comm', 'w').write({ODD_NAME!r}); import sys; sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", renames_itself], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        comm = Path(f"/proc/{child.pid}/comm")
        wait_until(lambda: comm.read_text().strip() == ODD_NAME, 10, message="the child to rename itself")
        table = dict(process_table())
        fields = table[child.pid]
        assert int(fields[1]) == os.getpid()  # parent
        assert int(fields[2]) == child.pid  # its own group (a new session)
        assert table[os.getpid()][0] in "RS"  # this process, running or sleeping
    finally:
        child.communicate(b"")
