"""Who is not synced: excluded addresses and emails that are not addresses.

Guarantees (pure, no I/O):
- :func:`normalise_email` is the one way emails are compared everywhere
  (trimmed, lower-cased), for exclusion and for matching with the platform;
- :func:`screen` returns a :class:`Skip` when the contact's email, the
  conversation author's email or the trigger's reply-to address is in the
  excluded list (``reason_code="excluded"``), or when the contact's email is not
  a syntactically valid address (``reason_code="invalid_email"``, message
  ``Invalid email address: <email>``); otherwise None. Exclusion is checked
  first, so a skip never depends on the order of the checks. A skip is final:
  retrying the same trigger gives the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

EXCLUDED = "excluded"
INVALID_EMAIL = "invalid_email"

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64

# RFC 5322 dot-atom local part (non-ASCII letters allowed, RFC 6531); no quoted strings.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")


@dataclass(frozen=True)
class Skip:
    """Why a trigger is acknowledged without syncing: a machine code and a user-facing message."""

    reason_code: str
    message: str

    @property
    def reason(self) -> str:
        return self.reason_code


def normalise_email(email: str | None) -> str:
    """``email`` trimmed and lower-cased (``""`` for None)."""
    return (email or "").strip().lower()


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def is_valid_email(email: str | None) -> bool:
    """True when ``email`` (trimmed) is ``local@domain.tld`` with a dot-atom local part and a DNS domain."""
    address = (email or "").strip()
    if not address or len(address) > MAX_EMAIL_LENGTH or address.count("@") != 1:
        return False
    if not address.isprintable() or any(character.isspace() for character in address):
        return False
    local, domain = address.split("@")
    if len(local) > MAX_LOCAL_LENGTH or not _LOCAL.fullmatch(local):
        return False
    ascii_domain = _ascii_domain(domain)
    if not ascii_domain or len(ascii_domain) > 253:
        return False
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return bool(_TLD.fullmatch(labels[-1]))


def screen(
    email: str | None,
    *,
    author_email: str | None = None,
    reply_to: str | None = None,
    excluded: Iterable[str],
) -> Skip | None:
    """A :class:`Skip` when the trigger must not be synced, else None (see the module docstring)."""
    blocked = {normalise_email(address) for address in excluded} - {""}
    for label, address in (("contact email", email), ("author email", author_email), ("reply-to", reply_to)):
        if address is not None and normalise_email(address) in blocked:
            return Skip(EXCLUDED, f"Excluded email address ({label})")
    if not is_valid_email(email):
        shown = (email or "").strip() or "(empty)"
        return Skip(INVALID_EMAIL, f"Invalid email address: {shown}")
    return None
