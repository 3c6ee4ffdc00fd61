"""Structured log lines: one JSON object a line.

Guarantees: :func:`configure_logging` makes every record of the process a single
JSON line (``ts``, ``level``, ``logger``, ``event`` and the fields passed with
:func:`log_event`); fields are ids, counts, codes and durations: callers pass no
client data (emails, names, attribute values) and no secrets.

A record with an exception (``exc_info``, :func:`log_event`'s included) also carries
``exc_type``, ``exc_message`` and ``traceback``: the frames as Python prints them, every
exception message of the chain scrubbed by :mod:`sync_worker.scrub` (emails, query strings,
quoted values, long digit runs, credentials), since a message may quote the data it failed on.
A library's message formatted with arguments (Celery's "Task ... raised: <exception>") is
scrubbed the same way, and Celery's own ``data`` loses the task's arguments and its unscrubbed
traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from sync_worker.scrub import exception_message, scrub_text, scrubbed_traceback

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: Keys of Celery's ``data`` never logged: client data (the task's arguments, its result) and
#: Celery's own unscrubbed traceback (the record's ``traceback`` is the scrubbed one).
_DROPPED_DATA = frozenset({"args", "kwargs", "return_value", "traceback"})


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
        if record.args:  # a library's message with its arguments filled in (Celery quotes the exception)
            line["event"] = scrub_text(line["event"])
        data = line.get("data")
        if isinstance(data, dict):  # Celery's task records: the task's args and kwargs, its own traceback
            line["data"] = {
                k: scrub_text(v) if isinstance(v, str) else v
                for k, v in data.items()
                if k not in _DROPPED_DATA
            }
        if record.exc_info and record.exc_info[1] is not None:
            line["exc_type"] = type(record.exc_info[1]).__name__
            line["exc_message"] = exception_message(record.exc_info[1])
            line["traceback"] = scrubbed_traceback(record.exc_info[1])
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
