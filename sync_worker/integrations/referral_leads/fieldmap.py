"""The referral field map: which referral field is written to which Intercom attribute.

Guarantees (pure, no I/O):
- :func:`parse_field_map` reads ``REFERRAL_FIELD_MAP`` (a JSON object, or its parsed mapping)
  over :data:`DEFAULT_MAP`: a field it names takes that target, the others keep their default;
- a target is an Intercom custom attribute name, :data:`STANDARD_NAME` (``"name"``: the standard
  ``name`` field) or ``None`` ("Do not send": nothing of that field is written, ever);
- refused with :class:`FieldMapError` naming the field: a field that is not a referral field
  (:data:`FIELDS` or ``meta.<label>``), ``email`` mapped anywhere but the standard ``email``
  (it cannot be unmapped), a custom name Intercom would refuse
  (:func:`sync_worker.attributes.check_attribute_name`), a name the service writes itself
  (:data:`RESERVED`), and two fields on one target (case-insensitive);
- the result is ordered: the fixed fields in :data:`FIELDS` order, then ``meta.*`` by label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_worker.attributes import InvalidAttributeName, check_attribute_name

#: The referral fields a map may name (``meta.<label>`` for any campaign form field besides).
FIELDS = (
    "first_name",
    "email",
    "code",
    "url",
    "source",
    "type",
    "campaign_id",
    "campaign_name",
    "referrer_name",
    "referrer_email",
    "signed_up_at",
)
META_PREFIX = "meta."
#: The standard fields a field can go to.
STANDARD_NAME = "name"
STANDARD_EMAIL = "email"
#: What the service writes on every referred contact, whatever the map says.
REFERRAL_ID = "Referral ID"
REFERRAL_STATUS = "Referral Status"
RESERVED = (REFERRAL_ID, REFERRAL_STATUS)

DEFAULT_MAP: dict[str, str | None] = {
    "first_name": STANDARD_NAME,
    "email": STANDARD_EMAIL,
    "code": "Referral Code",
    "url": None,
    "source": None,
    "type": None,
    "campaign_id": None,
    "campaign_name": "Referral Campaign",
    "referrer_name": "Referred By",
    "referrer_email": None,
    "signed_up_at": "Referred At",
}


class FieldMapError(ValueError):
    """``REFERRAL_FIELD_MAP`` cannot work; the message names the field and why."""


@dataclass(frozen=True)
class FieldMap:
    """Field -> target, in order (``None``: not sent)."""

    targets: tuple[tuple[str, str | None], ...]

    def sent(self) -> tuple[tuple[str, str], ...]:
        """The fields that are written, with their targets."""
        return tuple((field, target) for field, target in self.targets if target is not None)

    def custom_names(self) -> tuple[str, ...]:
        """Every custom attribute name the map writes (standard fields left out)."""
        return tuple(target for _, target in self.sent() if target not in (STANDARD_NAME, STANDARD_EMAIL))

    def target(self, field: str) -> str | None:
        return dict(self.targets).get(field)


def is_field(name: str) -> bool:
    return name in FIELDS or (name.startswith(META_PREFIX) and bool(name[len(META_PREFIX) :].strip()))


def _loaded(raw: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise FieldMapError(f"not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise FieldMapError('must be a JSON object {"<referral field>": "<Intercom attribute>" or null}')
    return raw


def _check_target(field: str, target: Any) -> str | None:
    if target is None:
        if field == "email":
            raise FieldMapError("email cannot be unmapped: Intercom needs it (it always goes to email)")
        return None
    if not isinstance(target, str):
        raise FieldMapError(f"{field}: the target must be an attribute name or null, not {target!r}")
    if field == "email":
        if target != STANDARD_EMAIL:
            raise FieldMapError(f"email always goes to the standard email field, not {target!r}")
        return target
    if target == STANDARD_EMAIL:
        raise FieldMapError(f"{field}: only email goes to the standard email field")
    if target == STANDARD_NAME:
        return target
    try:
        check_attribute_name(target, key=field)
    except InvalidAttributeName as bad:
        raise FieldMapError(f"{field}: {bad.message}") from None
    if target.casefold() in {name.casefold() for name in RESERVED}:
        raise FieldMapError(f"{field}: {target!r} is written by the service itself")
    return target


def parse_field_map(raw: str | Mapping[str, Any] | None, *, reserved: tuple[str, ...] = ()) -> FieldMap:
    """The map ``raw`` asks for over the defaults (see the module's guarantees); ``reserved``: more
    names no field may take (the qualifying property)."""
    given = _loaded(raw)
    unknown = [name for name in given if not isinstance(name, str) or not is_field(name)]
    if unknown:
        known = ", ".join(FIELDS)
        raise FieldMapError(f"unknown referral field {unknown[0]!r} (known: {known}, meta.<label>)")
    chosen: dict[str, str | None] = {**DEFAULT_MAP}
    chosen.update(
        {name.strip() if name.startswith(META_PREFIX) else name: value for name, value in given.items()}
    )
    ordered = [name for name in FIELDS] + sorted(name for name in chosen if name.startswith(META_PREFIX))
    targets: list[tuple[str, str | None]] = []
    taken: dict[str, str] = {name.casefold(): "the qualifying property" for name in reserved}
    for field in ordered:
        target = _check_target(field, chosen[field])
        if target is not None:
            folded = target.casefold()
            if folded in taken:
                raise FieldMapError(f"{field}: {target!r} is also the target of {taken[folded]}")
            taken[folded] = field
        targets.append((field, target))
    return FieldMap(tuple(targets))
