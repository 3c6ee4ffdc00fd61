"""A referral user's place in the program's order: newest ``signed_up_at`` first, then higher id.

Guarantees (pure): :func:`mark_of` reads a contract ``User``'s place as a :class:`Mark` (Unix
seconds and id), comparable in the program's order (a larger mark is newer); a mark round-trips
through :meth:`Mark.to_text` / :meth:`Mark.from_text` (what Redis keeps); an unreadable time is a
``ValueError`` (the client only hands out users that passed the contract's checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, order=True)
class Mark:
    """A place in the order: compare marks to compare users (larger: newer)."""

    signed_up_at: float
    id: int

    def to_text(self) -> str:
        return f"{self.signed_up_at!r}:{self.id}"

    @classmethod
    def from_text(cls, text: str | bytes | None) -> Mark | None:
        if text is None:
            return None
        raw = text.decode() if isinstance(text, bytes) else text
        seconds, _, user_id = raw.rpartition(":")
        return cls(float(seconds), int(user_id))


def epoch_of(timestamp: str) -> float:
    """Unix seconds of an ISO 8601 time (``Z`` or an offset; a naive one is UTC)."""
    parsed = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def mark_of(user: Mapping[str, Any]) -> Mark:
    """The place of a contract ``User`` in the program's newest-first order."""
    return Mark(epoch_of(str(user["signed_up_at"])), int(user["id"]))
