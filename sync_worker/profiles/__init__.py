"""What a profile is (:mod:`.base`): an integration's pure compute.

Each integration's profile lives in its package (``sync_worker/integrations/<name>/``); the
registry of integrations is :mod:`sync_worker.integrations`.
"""

from __future__ import annotations

from sync_worker.profiles.base import AttributeSpec, Profile

__all__ = ["AttributeSpec", "Profile"]
