"""Logged exceptions carry their traceback, with client data scrubbed from every message in it.

Issue 12 item 14: the old formatter logged only the exception's type.
"""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator

import pytest
import requests

from sync_worker.compute import PlatformDataError
from sync_worker.formatting import parse_utc
from sync_worker.logs import JsonFormatter, log_event
from sync_worker.scrub import scrub_text, scrubbed_traceback

EMAIL = "olivia.brandt@example.com"
#: What the platform sent (built here: a frame's source line is code, shown as it is).
SENT = f"{EMAIL} +1 416 555 0100"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.log_tracebacks")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def read_created_at(value: str) -> None:
    try:
        parse_utc(value)
    except ValueError as exc:
        raise PlatformDataError("records[0]: created_at is not a date-time") from exc


def test_a_logged_exception_carries_its_traceback_and_chain_without_the_values(logged):
    logger, stream = logged
    try:
        read_created_at(SENT)
    except PlatformDataError as exc:
        log_event(logger, "contact_dead_lettered", logging.ERROR, contact_id="c1", exc_info=exc)
    [line] = lines(stream)
    assert (line["event"], line["contact_id"], line["exc_type"]) == (
        "contact_dead_lettered",
        "c1",
        "PlatformDataError",
    )
    trace = line["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "in read_created_at" in trace and "in parse_utc" in trace  # the frames, ours and the library's
    assert "ValueError: " in trace and "The above exception was the direct cause" in trace
    assert "sync_worker.compute.PlatformDataError: platform_data_invalid: records[0]: created_at" in trace
    text = stream.getvalue()
    assert EMAIL not in text and "416 555 0100" not in text and "olivia" not in text


def test_a_librarys_error_naming_a_url_with_an_email_is_scrubbed(logged):
    logger, stream = logged
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    try:
        requests.get(f"http://127.0.0.1:{port}/v1/clients", params={"email": EMAIL}, timeout=2)
    except requests.ConnectionError as exc:
        logger.warning("platform_call_failed", exc_info=exc)
    [line] = lines(stream)
    assert "/v1/clients?<query>" in line["traceback"]
    assert "olivia" not in stream.getvalue()


def test_a_celery_style_record_is_scrubbed_and_loses_its_own_traceback(logged):
    logger, stream = logged
    logger.error(
        "Task %(name)s[%(id)s] raised unexpected: %(exc)s",
        {"name": "sync_worker.tasks.sync_contact", "id": "t1", "exc": f"KeyError('{EMAIL}')"},
        extra={
            "data": {
                "id": "t1",
                "exc": f"KeyError('{EMAIL}')",
                "traceback": f"... {EMAIL} ...",
                "args": [EMAIL],
            }
        },
    )
    [line] = lines(stream)
    assert line["event"] == "Task sync_worker.tasks.sync_contact[t1] raised unexpected: KeyError('<value>')"
    assert line["data"] == {"id": "t1", "exc": "KeyError('<value>')"}
    assert "olivia" not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"no contact for {EMAIL}", "no contact for <email>"),
        ("GET /v1/clients?email=olivia.brandt%40example.com failed", "GET /v1/clients?<query> failed"),
        ("Authorization: Bearer s3cr3t-t0ken refused", "Authorization: Bearer <secret> refused"),
        (
            "invalid literal for int() with base 10: 'Olivia'",
            "invalid literal for int() with base 10: '<value>'",
        ),
        ('unexpected "Brandt" here', 'unexpected "<value>" here'),
        ("phone +1 (416) 555-0100 refused", "phone <number> refused"),
        (
            "records[1]: invoices[0].balance is not a decimal string",
            "records[1]: invoices[0].balance is not a decimal string",
        ),
        (
            "Error 111 connecting to 127.0.0.1:6379. Connection refused.",
            "Error 111 connecting to 127.0.0.1:6379. Connection refused.",
        ),
    ],
)
def test_scrub_text(text, scrubbed):
    assert scrub_text(text) == scrubbed


def test_a_long_message_is_capped_and_a_context_is_shown():
    try:
        try:
            raise KeyError(EMAIL)
        except KeyError:
            raise RuntimeError("y" * 2000)  # noqa: B904 (the context is what is shown)
    except RuntimeError as exc:
        trace = scrubbed_traceback(exc)
    assert "During handling of the above exception" in trace
    assert "KeyError: '<value>'" in trace and "olivia" not in trace
    assert max(len(line) for line in trace.splitlines()) < 600
