"""The registry of profiles: what kinds of sync this worker can run.

Guarantees: :func:`get_profile` builds a profile by its registry name with the
options it takes (``get_profile("clients", display_timezone="America/Toronto")``)
and raises :class:`UnknownProfile` naming the known ones for any other name.
A new integration adds one module under ``profiles/`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync_worker.profiles.base import AttributeSpec, Profile
from sync_worker.profiles.clients import ClientProfile

PROFILES: Mapping[str, Callable[..., Profile]] = {
    ClientProfile.name: ClientProfile,
}


class UnknownProfile(KeyError):
    """No profile is registered under that name."""


def get_profile(name: str, **options: Any) -> Profile:
    """A new instance of the profile registered as ``name``, built with ``options``."""
    try:
        factory = PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"unknown profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None
    return factory(**options)


__all__ = ["PROFILES", "AttributeSpec", "Profile", "UnknownProfile", "get_profile"]
