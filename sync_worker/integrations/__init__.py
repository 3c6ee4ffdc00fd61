"""The registry of integrations: which kinds of sync this service can run, by name.

Guarantees: an integration is registered here by name as the ``module:Class`` that implements
it (:mod:`.base`), imported only when first used (kombu's transport registry, with its own
``symbol_by_name``); :func:`get` answers one instance per name and raises
:class:`UnknownIntegration` naming the known ones for any other; :func:`enabled` parses
``SYNC_INTEGRATIONS`` (comma-separated, default :data:`DEFAULT`) and refuses an unknown name, so
a process started with one stops at start with that line. Adding an integration is one package
under ``integrations/`` and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from functools import cache

from kombu.utils.imports import symbol_by_name

from sync_worker.integrations.base import ContactAttributes, Integration

#: name -> ``module:Class``
REGISTRY: dict[str, str] = {
    "clients": "sync_worker.integrations.clients:ClientsIntegration",
    "dealer_users": "sync_worker.integrations.dealer_users:DealerUsersIntegration",
    "referral_leads": "sync_worker.integrations.referral_leads:ReferralLeadsIntegration",
}
#: what runs when ``SYNC_INTEGRATIONS`` is not set, and what a request without a name is
DEFAULT = "clients"


class UnknownIntegration(ValueError):
    """No integration is registered under that name."""


@cache
def get(name: str) -> Integration:
    """The integration registered as ``name``."""
    try:
        path = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownIntegration(f"unknown integration {name!r} (known: {known})") from None
    integration = symbol_by_name(path)()
    if integration.name != name:
        raise UnknownIntegration(f"{path} is registered as {name!r} but names itself {integration.name!r}")
    return integration


def parse(value: str | None) -> tuple[str, ...]:
    """The names of a ``SYNC_INTEGRATIONS`` value, in order, without blanks or repeats (empty: the default)."""
    names = tuple(dict.fromkeys(part.strip() for part in (value or "").split(",") if part.strip()))
    return names or (DEFAULT,)


@cache  # the receiver asks for every webhook: one parse per distinct value
def enabled(value: str | None) -> tuple[Integration, ...]:
    """The integrations ``SYNC_INTEGRATIONS`` names (:class:`UnknownIntegration` for a name not registered)."""
    return tuple(get(name) for name in parse(value))


__all__ = [
    "DEFAULT",
    "REGISTRY",
    "ContactAttributes",
    "Integration",
    "UnknownIntegration",
    "enabled",
    "get",
    "parse",
]
