"""Intercom's limits on attribute names and values, and the shape of one contact update.

Guarantees (pure, the same for every profile):
- :func:`truncate`: a value longer than 255 characters (Intercom's limit for a
  string attribute) becomes its first 254 characters plus ``…``; shorter values
  are unchanged;
- :func:`check_attribute_name` raises :class:`InvalidAttributeName`, naming the
  attribute, for a name Intercom would refuse: empty, surrounded by spaces, with
  a character Intercom rejects in custom attribute names (``.``, ``$``, ``[``,
  ``]``, ``~ ` ! @ # % ^ & * ' " { } | \\``, control characters) or named like one
  of Intercom's standard contact attributes (``Name``, ``Email``, ``signed_up_at`` ...);
- :func:`resolve_names` maps each attribute key to where it is written, checks
  every custom name and refuses two keys on one name or an override for a key
  the profile does not have, so a bad setting fails before any call;
- :func:`build_update` splits computed values into ``(custom_attributes, standard)``
  by those names, truncated, following the value conventions of
  :mod:`sync_worker.profiles.base` (None: standard field untouched / custom fallback;
  absent: not written).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sync_worker.errors import PermanentError
from sync_worker.profiles.base import AttributeSpec

MAX_VALUE_LENGTH = 255
ELLIPSIS = "…"

#: Characters Intercom refuses in a custom attribute name (its naming rules for custom data).
FORBIDDEN_NAME_CHARACTERS = frozenset(".$[]~`!@#%^&*'\"{}|\\")

#: Intercom's standard contact attributes (API names of the 2.14 contact model and their
#: labels in Intercom's UI), compared case-insensitively with ``_``/``-`` read as spaces.
STANDARD_CONTACT_ATTRIBUTES = frozenset(
    {
        "id", "type", "external_id", "user_id", "workspace_id", "role", "email", "email_domain",
        "phone", "name", "owner", "owner_id", "avatar", "has_hard_bounced", "marked_email_as_spam",
        "unsubscribed_from_emails", "created_at", "updated_at", "signed_up", "signed_up_at",
        "last_seen", "last_seen_at", "first_seen", "last_replied_at", "last_contacted",
        "last_contacted_at", "last_heard_from", "last_email_opened_at", "last_email_clicked_at",
        "language_override", "browser", "browser_version", "browser_language", "os",
        "city", "region", "country", "continent_code", "country_code",
        "android_app_name", "android_app_version", "android_device", "android_os_version",
        "android_sdk_version", "android_last_seen_at", "ios_app_name", "ios_app_version",
        "ios_device", "ios_os_version", "ios_sdk_version", "ios_last_seen_at",
        "custom_attributes", "location", "social_profiles", "companies", "notes",
        "session_count", "web_sessions",
    }
)  # fmt: skip


class InvalidAttributeName(PermanentError):
    """An attribute name Intercom would refuse (or a naming setting that cannot work)."""

    code = "invalid_attribute_name"
    #: the setting that names attributes (where a refused name came from)
    setting = "SYNC_ATTRIBUTE_NAMES"

    def __init__(self, name: str, problem: str, *, key: str | None = None):
        where = f" (attribute {key!r})" if key else ""
        super().__init__(f"invalid Intercom attribute name {name!r}{where}: {problem}")
        self.name = name
        self.key = key


def truncate(value: str) -> str:
    """``value`` cut to Intercom's 255 characters: 254 of them plus ``…`` when longer."""
    if len(value) <= MAX_VALUE_LENGTH:
        return value
    return value[: MAX_VALUE_LENGTH - 1] + ELLIPSIS


def _comparable(name: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


_STANDARD = frozenset(_comparable(name) for name in STANDARD_CONTACT_ATTRIBUTES)


def check_attribute_name(name: str, *, key: str | None = None) -> None:
    """Raise :class:`InvalidAttributeName` when Intercom would refuse ``name`` for a custom attribute."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidAttributeName(str(name), "a name cannot be empty", key=key)
    if name != name.strip():
        raise InvalidAttributeName(name, "a name cannot start or end with spaces", key=key)
    bad = sorted({character for character in name if character in FORBIDDEN_NAME_CHARACTERS})
    if bad:
        raise InvalidAttributeName(
            name, f"Intercom does not allow {' '.join(bad)} in attribute names", key=key
        )
    if any(not character.isprintable() for character in name):
        raise InvalidAttributeName(name, "a name cannot contain control characters", key=key)
    if _comparable(name) in _STANDARD:
        raise InvalidAttributeName(name, "it is the name of a standard Intercom contact attribute", key=key)


def resolve_names(
    specs: Sequence[AttributeSpec], names_override: Mapping[str, str]
) -> dict[str, tuple[str, bool]]:
    """Key -> ``(target, is_custom)``: the custom attribute name, or the standard field when not custom.

    Raises :class:`InvalidAttributeName` for a refused custom name, two keys on one
    name (case-insensitive) or an override of a key ``specs`` does not have.
    """
    known = {spec.key for spec in specs}
    for key in names_override:
        if key not in known:
            raise InvalidAttributeName(
                str(names_override[key]),
                f"no attribute {key!r} to rename (known: {', '.join(sorted(known))})",
            )
    targets: dict[str, tuple[str, bool]] = {}
    taken: dict[str, str] = {}
    for spec in specs:
        if spec.key in names_override:
            target, custom = names_override[spec.key], True
        elif spec.standard_field is not None:
            target, custom = spec.standard_field, False
        else:
            target, custom = spec.default_name, True
        if custom:
            check_attribute_name(target, key=spec.key)
            folded = target.casefold()
            if folded in taken:
                raise InvalidAttributeName(
                    target, f"also the name of attribute {taken[folded]!r}", key=spec.key
                )
            taken[folded] = spec.key
        targets[spec.key] = (target, custom)
    return targets


def build_update(
    values: Mapping[str, str | None],
    specs: Sequence[AttributeSpec],
    names_override: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """``(custom_attributes by Intercom name, standard fields)`` for one contact update.

    Keys of ``values`` that ``specs`` does not declare are ignored (a cache entry
    from an older profile may carry them); see the module docstring for None.
    """
    targets = resolve_names(specs, names_override)
    custom: dict[str, str] = {}
    standard: dict[str, str] = {}
    for spec in specs:
        if spec.key not in values:
            continue
        target, is_custom = targets[spec.key]
        value = values[spec.key]
        if value is None:
            if not is_custom or spec.custom_fallback is None:
                continue
            value = spec.custom_fallback
        (custom if is_custom else standard)[target] = truncate(value)
    return custom, standard
