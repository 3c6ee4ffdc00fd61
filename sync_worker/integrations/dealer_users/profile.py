"""The dealer user profile: what one platform user shows in Intercom (``docs/integrations/dealer_users.md``).

Guarantees (pure: the record, the source label and the names are passed in):
- :func:`compute_user` gives every contact key of :data:`CONTACT_ATTRIBUTES` a value:
  ``external_id`` is the ``user_id`` as given; ``email`` trimmed and lower-cased; ``name`` is
  ``first_name + " " + last_name`` with every run of whitespace collapsed to one space, None when
  both are blank (the contact's own name is left as it is); ``source`` is the label given (``USERS_SOURCE_LABEL``);
  ``roles`` and ``companies`` are the names joined ``", "`` in the platform's order, each name
  trimmed and kept at its first occurrence only, ``-`` when there is none (cut to Intercom's 255
  characters when written, :func:`sync_worker.attributes.build_update`);
- its ``locations`` are the user's locations as Intercom companies, one per location id (the
  first occurrence kept, platform order): ``company_id`` = the location's id, ``name`` = its
  name (trimmed), and the company value ``dealer_company`` = the name of the location's dealer
  company as the user's ``companies`` name it (None when they do not: nothing is written for it);
- :func:`resolve_user_names` maps the profile's keys to Intercom names, the defaults being the
  seed's (``Source``, ``User_roles``, ``User_companies``; ``Dealer Company`` on companies), with
  overrides (``USERS_ATTRIBUTE_NAMES``) for the custom ones only, each checked as every custom
  name is (:func:`sync_worker.attributes.resolve_names`); ``external_id``, ``email`` and ``name``
  are Intercom's standard fields and cannot be renamed;
- :func:`contact_update` and :func:`company_update` are the write payloads, truncated as
  written, so a fingerprint of them (:mod:`.fingerprints`) changes exactly when what Intercom
  shows would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_worker.attributes import InvalidAttributeName, build_update, resolve_names
from sync_worker.profiles.base import AttributeSpec

NONE = "-"
SEPARATOR = ", "
#: Bumped when these rules change what is written: every user is written again once.
VERSION = "1"

CONTACT_ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec("external_id", "external_id", standard_field="external_id"),
    AttributeSpec("email", "email", standard_field="email"),
    AttributeSpec("name", "name", standard_field="name"),
    AttributeSpec("source", "Source"),
    AttributeSpec("roles", "User_roles", custom_fallback=NONE),
    AttributeSpec("companies", "User_companies", custom_fallback=NONE),
)
COMPANY_ATTRIBUTES: tuple[AttributeSpec, ...] = (AttributeSpec("dealer_company", "Dealer Company"),)
#: The setting that renames them.
NAMES_SETTING = "USERS_ATTRIBUTE_NAMES"
#: The keys ``USERS_ATTRIBUTE_NAMES`` may rename (the custom ones).
RENAMEABLE = frozenset(
    spec.key for spec in CONTACT_ATTRIBUTES + COMPANY_ATTRIBUTES if spec.standard_field is None
)

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class LocationCompany:
    """One location of a user, as the Intercom company that stands for it."""

    company_id: str
    name: str
    dealer_company: str | None

    @property
    def values(self) -> dict[str, str | None]:
        return {"dealer_company": self.dealer_company}


@dataclass(frozen=True)
class UserValues:
    """What one platform user shows: the contact's values by key and its location companies."""

    user_id: str
    values: dict[str, str | None]
    locations: tuple[LocationCompany, ...]

    @property
    def email(self) -> str:
        return self.values["email"] or ""

    @property
    def location_ids(self) -> frozenset[str]:
        return frozenset(location.company_id for location in self.locations)


def unique_in_order(names: Iterable[Any]) -> list[str]:
    """The trimmed, non-blank strings of ``names``, each at its first occurrence only."""
    return list(dict.fromkeys(name.strip() for name in names if isinstance(name, str) and name.strip()))


def joined(names: Iterable[Any]) -> str:
    """``names`` (:func:`unique_in_order`) joined with ``", "``; ``-`` when there is none."""
    return SEPARATOR.join(unique_in_order(names)) or NONE


def full_name(first: Any, last: Any) -> str | None:
    """``first last`` with whitespace collapsed; None when both are blank."""
    parts = " ".join(part for part in (first, last) if isinstance(part, str))
    collapsed = _WHITESPACE.sub(" ", parts).strip()
    return collapsed or None


def normalised_email(email: Any) -> str:
    return email.strip().lower() if isinstance(email, str) else ""


def location_companies(user: Mapping[str, Any]) -> tuple[LocationCompany, ...]:
    """The user's locations as companies (see the module's guarantees)."""
    dealer_names = {}
    for company in user.get("companies") or ():
        if isinstance(company, Mapping) and isinstance(company.get("name"), str):
            dealer_names.setdefault(company.get("id"), company["name"].strip() or None)
    found: dict[str, LocationCompany] = {}
    for location in user.get("locations") or ():
        if not isinstance(location, Mapping):
            continue
        location_id = location.get("id")
        if not isinstance(location_id, str) or not location_id.strip() or location_id in found:
            continue
        found[location_id] = LocationCompany(
            company_id=location_id,
            name=str(location.get("name") or "").strip() or location_id,
            dealer_company=dealer_names.get(location.get("company_id")),
        )
    return tuple(found.values())


def compute_user(user: Mapping[str, Any], *, source_label: str) -> UserValues:
    """The contact's values and location companies of one platform ``User`` record."""
    values: dict[str, str | None] = {
        "external_id": str(user["user_id"]),
        "email": normalised_email(user.get("email")),
        "name": full_name(user.get("first_name"), user.get("last_name")),
        "source": source_label,
        "roles": joined(role.get("name") for role in user.get("roles") or () if isinstance(role, Mapping)),
        "companies": joined(
            company.get("name") for company in user.get("companies") or () if isinstance(company, Mapping)
        ),
    }
    return UserValues(str(user["user_id"]), values, location_companies(user))


@dataclass(frozen=True)
class UserNames:
    """Where each key is written: the contact's (:data:`CONTACT_ATTRIBUTES`) and the companies'."""

    contact: dict[str, str]
    company: dict[str, str]

    @property
    def contact_custom(self) -> list[str]:
        """The contact's custom attribute names (the data attributes to ensure)."""
        return [self.contact[spec.key] for spec in CONTACT_ATTRIBUTES if spec.standard_field is None]

    @property
    def company_custom(self) -> list[str]:
        return [self.company[spec.key] for spec in COMPANY_ATTRIBUTES]


def resolve_user_names(override: Mapping[str, str] | None = None) -> UserNames:
    """The Intercom names of every key with ``override`` applied (:class:`InvalidAttributeName`
    for an override of a key that is not a custom one, or a name Intercom would refuse)."""
    override = dict(override or {})
    try:
        for key, name in override.items():
            if key not in RENAMEABLE:
                raise InvalidAttributeName(
                    str(name),
                    f"no custom attribute {key!r} to rename (known: {', '.join(sorted(RENAMEABLE))})",
                )
        contact_keys = {spec.key for spec in CONTACT_ATTRIBUTES}
        contact = resolve_names(CONTACT_ATTRIBUTES, {k: v for k, v in override.items() if k in contact_keys})
        company = resolve_names(
            COMPANY_ATTRIBUTES, {k: v for k, v in override.items() if k not in contact_keys}
        )
    except InvalidAttributeName as refused:
        refused.setting = NAMES_SETTING
        raise
    return UserNames(
        contact={key: target for key, (target, _) in contact.items()},
        company={key: target for key, (target, _) in company.items()},
    )


def _override(specs: tuple[AttributeSpec, ...], targets: Mapping[str, str]) -> dict[str, str]:
    return {spec.key: targets[spec.key] for spec in specs if spec.standard_field is None}


def contact_update(user: UserValues, names: UserNames) -> tuple[dict[str, str], dict[str, str]]:
    """``(custom_attributes, standard)`` of the contact's write, truncated as written."""
    return build_update(user.values, CONTACT_ATTRIBUTES, _override(CONTACT_ATTRIBUTES, names.contact))


def company_update(location: LocationCompany, names: UserNames) -> dict[str, str]:
    """The company's custom attributes as written (a None value is not written)."""
    custom, _ = build_update(
        location.values, COMPANY_ATTRIBUTES, _override(COMPANY_ATTRIBUTES, names.company)
    )
    return custom
