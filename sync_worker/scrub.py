"""What a log line may say about an exception: its traceback, with client data scrubbed.

Guarantees:
- :func:`scrubbed_traceback` is the exception's traceback as Python prints it (most recent
  call last, its causes and contexts first, at most :data:`MAX_CHAIN` exceptions): every frame's
  file, line, function and source line (code, not data: no frame locals are read), and each
  exception's type with its message passed through :func:`scrub_text`;
- :func:`scrub_text` is for text that may quote client data (an exception's message: ``str``
  of a ``KeyError`` on an email, a ``ValueError`` quoting the value it refused, a ``requests``
  error naming the URL with its ``?email=`` query, a body Intercom echoed). It replaces, in
  this order: ``Bearer`` credentials, URL query strings, emails (``@`` or URL-encoded ``%40``),
  quoted strings (``'...'``, ``"..."``: how Python's reprs quote values), and runs of seven or
  more digits with their separators (phones, amounts, ids of people), then caps the length
  at :data:`MAX_MESSAGE_CHARS`. Field names, codes, types and short numbers stay readable.

Why our own: ``traceback`` and ``logging`` print messages as they are, and no library we use
scrubs them. The rules are a net, not a proof: a message that spells data without quotes or
digits (a bare name) is not caught, which is why our own errors name fields, never values
(:mod:`sync_worker.errors`), and log lines carry ids and codes (:mod:`sync_worker.logs`).
"""

from __future__ import annotations

import re
import traceback

#: The most exceptions of one chain (causes and contexts) shown.
MAX_CHAIN = 5
#: The most characters kept of one scrubbed message.
MAX_MESSAGE_CHARS = 500

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+|=)[^\s,;'\"]+"), r"\1\2<secret>"),
    (re.compile(r"\?[^\s'\"<>]+"), "?<query>"),
    (re.compile(r"(?i)[\w.+\-]+(?:@|%40)[\w\-]+(?:\.[\w\-]+)+"), "<email>"),
    (re.compile(r"'(?:[^'\\]|\\.)*'"), "'<value>'"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"<value>"'),
    (re.compile(r"\+?\d(?:[\d\s()\-]*\d){6,}"), "<number>"),
)


def scrub_text(text: str) -> str:
    """``text`` with what may be client data replaced (see the module's guarantees)."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def exception_message(exc: BaseException) -> str:
    """The exception's message, scrubbed ("" when it has none)."""
    try:
        return scrub_text(str(exc))
    except Exception:  # an exception whose __str__ fails still gets its line
        return "<message unavailable>"


def exception_line(exc: BaseException) -> str:
    """``module.Type: scrubbed message`` (the type alone when the message is empty)."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    message = exception_message(exc)
    return f"{name}: {message}" if message else name


def _chain(exc: BaseException) -> list[tuple[BaseException, str | None]]:
    """The exceptions Python would print, oldest first, each with the sentence that links it to the next."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link: str | None = None
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = (
                current.__cause__,
                "The above exception was the direct cause of the following exception:",
            )
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = (
                current.__context__,
                "During handling of the above exception, another exception occurred:",
            )
        else:
            current = None
    return chain[::-1]


def scrubbed_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its chain, messages scrubbed (see the module's guarantees)."""
    lines: list[str] = []
    for error, link in _chain(exc):
        if error.__traceback__ is not None:
            lines.append("Traceback (most recent call last):")
            lines += [
                line.rstrip("\n")
                for line in traceback.StackSummary.extract(
                    traceback.walk_tb(error.__traceback__), capture_locals=False
                ).format()
            ]
        lines.append(exception_line(error))
        if link is not None:  # how this one leads to the next printed
            lines += ["", link, ""]
    return "\n".join(lines)
