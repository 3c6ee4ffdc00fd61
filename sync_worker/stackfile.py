"""The ``stack.json`` a running ``sync-worker dev`` stack leaves for the commands that use it.

Guarantees:
- :func:`write` stores the stack's URLs and dev tokens readable by the owner only, and
  :func:`remove` deletes it when the stack stops, so a file present means a stack was started
  there and has not been stopped cleanly (a killed stack leaves it: :func:`find` callers check
  that its Redis answers before using it);
- :func:`candidates` lists where a stack started from here keeps it, in the order commands look:
  ``$SYNC_DEV_STATE_DIR`` alone when it is set; else ``var/dev/`` under the current directory,
  then ``var/dev/`` of the checkout this package runs from (an editable install), so an operator
  command finds the stack ``scripts/dev`` started whatever directory it is typed in;
- :func:`find` returns the first stack file that exists, read, or None.

It lives outside :mod:`sync_worker.devtools.devstack` so that operator commands can find a stack without
importing the dev tooling (sandboxes, process helpers).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("var/dev")
FILENAME = "stack.json"
STATE_DIR_ENV = "SYNC_DEV_STATE_DIR"


@dataclass(frozen=True)
class StackFile:
    path: Path
    info: dict[str, Any]

    @property
    def redis_url(self) -> str:
        return str(self.info["redis_url"])


def _checkout_root() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def candidates(state_dir: Path | None = None) -> list[Path]:
    """Stack files to look at: ``state_dir``'s alone when given, else the two default places."""
    if state_dir is not None:
        return [state_dir / FILENAME]
    if os.environ.get(STATE_DIR_ENV):
        return [Path(os.environ[STATE_DIR_ENV]) / FILENAME]
    places = [Path.cwd() / DEFAULT_STATE_DIR / FILENAME]
    root = _checkout_root()
    if root is not None:
        places.append(root / DEFAULT_STATE_DIR / FILENAME)
    unique: list[Path] = []
    for place in places:
        if place.resolve() not in [p.resolve() for p in unique]:
            unique.append(place)
    return unique


def default_state_dir() -> Path:
    """Where ``sync-worker dev`` keeps its state unless told: ``$SYNC_DEV_STATE_DIR``, else ``var/dev``."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def find(state_dir: Path | None = None) -> StackFile | None:
    for path in candidates(state_dir):
        if path.is_file():
            return StackFile(path, json.loads(path.read_text()))
    return None


def write(state_dir: Path, info: dict[str, Any]) -> Path:
    path = state_dir / FILENAME
    path.touch(mode=0o600)
    path.write_text(json.dumps(info, indent=2))
    return path


def remove(state_dir: Path) -> None:
    (state_dir / FILENAME).unlink(missing_ok=True)
