"""The referral-leads settings as the pipeline uses them, read once from :class:`~sync_worker.config.Settings`.

Guarantees (pure): :func:`lead_options` builds one frozen :class:`LeadOptions` from the settings,
or raises :class:`~sync_worker.config.InvalidSetting` naming the variable that cannot work: a
``REFERRAL_USER_TYPES`` other than ``referred``/``direct``/``all``, a ``REFERRAL_CAMPAIGNS`` entry
that is not an integer, a ``REFERRAL_FIELD_MAP`` refused by :mod:`.fieldmap` (an unknown field,
``email`` unmapped, ...), a ``REFERRAL_QUALIFY_ON`` other than ``signed_up``/``property``, and with
``property`` an empty ``REFERRAL_QUALIFY_VALUES``, a ``REFERRAL_QUALIFY_PROPERTY`` Intercom would
refuse, or a ``REFERRAL_QUALIFY_INITIAL`` that is itself a qualifying value. The pipeline is
built with them at a worker's start (``workerprocess``), so a worker with such a setting stops
with that one line and a run never meets it. :data:`USER_TYPES` is what each
``REFERRAL_USER_TYPES`` value sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync_worker.attributes import InvalidAttributeName, check_attribute_name
from sync_worker.config import InvalidSetting
from sync_worker.integrations.referral_leads.fieldmap import FieldMap, FieldMapError, parse_field_map

if TYPE_CHECKING:
    from sync_worker.config import Settings

REFERRED = "person_invited"
DIRECT = "person_referring"
#: ``REFERRAL_USER_TYPES`` -> the program's user types it sends.
USER_TYPES: dict[str, frozenset[str]] = {
    "referred": frozenset({REFERRED}),
    "direct": frozenset({DIRECT}),
    "all": frozenset({REFERRED, DIRECT}),
}
SIGNED_UP = "signed_up"
PROPERTY = "property"


@dataclass(frozen=True)
class LeadOptions:
    """What is sent and how a lead qualifies (see the README's referral settings)."""

    user_types: frozenset[str]
    campaigns: frozenset[int]  # empty: every campaign
    field_map: FieldMap
    qualify_on: str  # SIGNED_UP or PROPERTY
    qualify_property: str
    qualify_initial: str
    qualify_values: tuple[str, ...]
    display_timezone: str
    excluded_emails: tuple[str, ...] = ()

    @property
    def by_property(self) -> bool:
        return self.qualify_on == PROPERTY


def _campaigns(values: list[str]) -> frozenset[int]:
    ids = set()
    for value in values:
        try:
            ids.add(int(value))
        except ValueError:
            raise InvalidSetting(f"REFERRAL_CAMPAIGNS: {value!r} is not a campaign id (an integer)") from None
    return frozenset(ids)


def lead_options(settings: Settings) -> LeadOptions:
    """The options ``settings`` ask for (see the module's guarantees for what is refused)."""
    user_types = settings.referral_user_types.strip().lower()
    if user_types not in USER_TYPES:
        raise InvalidSetting(
            f"REFERRAL_USER_TYPES: {settings.referral_user_types!r} is not one of {', '.join(USER_TYPES)}"
        )
    qualify_on = settings.referral_qualify_on.strip().lower()
    if qualify_on not in (SIGNED_UP, PROPERTY):
        raise InvalidSetting(
            f"REFERRAL_QUALIFY_ON: {settings.referral_qualify_on!r} is not {SIGNED_UP} or {PROPERTY}"
        )
    values = tuple(value for value in settings.referral_qualify_values if value.strip())
    prop = settings.referral_qualify_property
    if qualify_on == PROPERTY:
        if not values:
            raise InvalidSetting(
                "REFERRAL_QUALIFY_VALUES is empty: REFERRAL_QUALIFY_ON=property needs the values that qualify"
            )
        try:
            check_attribute_name(prop)
        except InvalidAttributeName as bad:
            raise InvalidSetting(f"REFERRAL_QUALIFY_PROPERTY: {bad.message}") from None
        initial = settings.referral_qualify_initial.strip().casefold()
        if initial and initial in {value.strip().casefold() for value in values}:
            raise InvalidSetting(
                "REFERRAL_QUALIFY_INITIAL: a new lead's value cannot be one that qualifies "
                f"({settings.referral_qualify_initial!r} is in REFERRAL_QUALIFY_VALUES)"
            )
    try:
        field_map = parse_field_map(
            settings.referral_field_map, reserved=(prop,) if qualify_on == PROPERTY else ()
        )
    except FieldMapError as bad:
        raise InvalidSetting(f"REFERRAL_FIELD_MAP: {bad}") from None
    return LeadOptions(
        user_types=USER_TYPES[user_types],
        campaigns=_campaigns(settings.referral_campaigns),
        field_map=field_map,
        qualify_on=qualify_on,
        qualify_property=prop,
        qualify_initial=settings.referral_qualify_initial,
        qualify_values=values,
        display_timezone=settings.display_timezone,
        excluded_emails=tuple(settings.excluded_emails),
    )
