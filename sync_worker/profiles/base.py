"""What a profile is: the attributes a sync computes and how it computes them.

Guarantees: a profile is pure (no I/O, no clock, no settings read: everything
is passed in) and declares its attributes once, in display order. The rest of
the worker (queue, limiter, cache, dead letters, writer) only sees this
interface, so a new integration is one new profile module and a registry entry.

Value conventions shared by every profile (the writer, :mod:`sync_worker.attributes`,
relies on them):
- a key present with a string: write that string;
- a key present with ``None``: the source has nothing to say; a standard field
  is left as it is, a custom attribute gets the spec's ``custom_fallback``
  (when it has none, nothing is written);
- a key absent: not written at all (e.g. the staleness write with no cache).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute a profile writes.

    ``key``: the profile's stable identifier (``client_id``); ``default_name``: the
    Intercom custom attribute name unless the settings map the key to another;
    ``standard_field``: when set, the value goes to that standard contact field
    instead (unless the settings map the key to a custom name); ``custom_fallback``:
    what a ``None`` value writes when the attribute is a custom one.
    """

    key: str
    default_name: str
    standard_field: str | None = None
    custom_fallback: str | None = None


@runtime_checkable
class Profile(Protocol):
    """A kind of sync: from the source's records for one email to the values to write."""

    #: registry name (``clients``)
    name: str
    #: bumped when the profile's rules change what it computes: every contact is written again once
    #: (:mod:`sync_worker.fingerprint`)
    version: str
    #: every attribute the profile writes, in display order
    attributes: tuple[AttributeSpec, ...]
    #: keys whose value changes on every read (timestamps): ignored by "write only what changed"
    volatile_keys: frozenset[str]

    def record_problems(self, record: Any) -> list[str]:
        """What keeps one source record from being computed (fields and positions, never values;
        ``[]``: nothing). :func:`sync_worker.compute.compute_values` checks every record with it
        before :meth:`compute`."""
        ...

    def compute(
        self, records: Sequence[Mapping[str, Any]], *, now: datetime, fetched_at: datetime
    ) -> dict[str, str | None]:
        """Key -> value for every key of ``attributes``; ``records`` are the source's
        records for one email (empty: none exists), each without :meth:`record_problems`."""
        ...

    def stale(
        self, last_known: Mapping[str, str | None] | None, *, unavailable_since: datetime
    ) -> dict[str, str | None]:
        """The values to write when the source cannot be read: the last known ones
        (or none) with the staleness flag."""
        ...
