"""The clients integration: a client's platform accounts, as 22 attributes on its Intercom contact.

Guarantees: what it writes is ``docs/integrations/clients.md`` (:mod:`.profile`, pure); a
contact is read by its email (``GET /v1/clients?email=``), a bulk re-sync walks Intercom's
contacts and reads them 100 at a time (``POST /v1/clients/lookup``); a failed read is stale
(:class:`~sync_worker.platform.PlatformUnavailable`); it adds the data connector's route
(``web/connector.py``); its sandbox data is :mod:`sync_worker.devtools.sandbox.dataset`. It is the
legacy integration: its per-contact Redis keys keep the names they had before integrations
had names (:data:`sync_worker.keys.LEGACY_INTEGRATION`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sync_worker.integrations.base import ContactAttributes
from sync_worker.integrations.clients.profile import ClientProfile
from sync_worker.platform import PlatformClient


class ClientsIntegration(ContactAttributes):
    name = "clients"
    routes = ("web.connector:bp",)
    sandbox_dataset = "sync_worker.devtools.sandbox.dataset"

    def profile(self, **options: Any) -> ClientProfile:
        return ClientProfile(**options)

    probe_identity = "halt-probe@example.invalid"  # a reserved domain (RFC 2606): nobody's

    def read_one(self, platform: PlatformClient, identity: str, **options: Any) -> list[dict[str, Any]]:
        return platform.clients_by_email(identity, **options)

    def read_batch(
        self, platform: PlatformClient, identities: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        return platform.lookup(identities)


__all__ = ["ClientProfile", "ClientsIntegration"]
