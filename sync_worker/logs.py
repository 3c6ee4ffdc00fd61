"""Structured log lines: one JSON object a line.

Guarantees: :func:`configure_logging` makes every record of the process a single
JSON line (``ts``, ``level``, ``logger``, ``event`` and the fields passed with
:func:`log_event`); fields are ids, counts, codes and durations: callers pass no
client data (emails, names, attribute values) and no secrets.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        data = line.get("data")
        if isinstance(data, dict):  # Celery's task records carry the task's args and kwargs: drop them
            line["data"] = {k: v for k, v in data.items() if k not in ("args", "kwargs", "return_value")}
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


#: Loggers that would print task arguments or return values (client data): kept to warnings.
QUIET_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.worker.request")


def configure_logging(level: str | int = "INFO") -> None:
    """Send the root logger's records to stderr as JSON lines (idempotent)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    *,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log ``event`` with ``fields`` as structured keys (and ``exc_info``'s traceback, scrubbed)."""
    logger.log(level, event, exc_info=exc_info, extra=fields)
