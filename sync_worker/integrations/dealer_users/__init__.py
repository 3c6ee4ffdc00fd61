"""The dealer users integration: a Billing Center user as an Intercom ``user`` contact and its locations as companies.

Guarantees: what it writes is ``docs/integrations/dealer_users.md`` (:mod:`.profile` and
:mod:`.membership`, pure); a user is keyed by its platform ``user_id`` (``SyncRequest.source_id``,
the contact's ``external_id``) and read with ``GET /v1/users/{id}`` (by email for a contact a
webhook names without an external id); the run is :class:`.pipeline.DealerUserSync`, whose
per-user and per-company Redis state (:mod:`.state`) is shared by every trigger and the bulk
re-sync; a failed read is transient, never a write; it acts on Intercom's ``contact.user.created``
(:meth:`DealerUsersIntegration.webhook_request`); its sandbox data is
:mod:`sync_worker.devtools.sandbox.dealer_users_dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sync_worker.dispatch import SOURCE_ID_PATTERN, SyncRequest
from sync_worker.integrations.base import Integration
from sync_worker.integrations.dealer_users.pipeline import INTEGRATION, DealerUserSync
from sync_worker.integrations.dealer_users.profile import resolve_user_names
from sync_worker.integrations.dealer_users.state import CompanyStates, UserStates
from sync_worker.platform import PlatformClient

if TYPE_CHECKING:
    from sync_worker.runtime import Runtime

#: The Intercom topic that makes a Messenger-created user get its roles and locations at once.
USER_CREATED = "contact.user.created"
#: The trigger a dealer user's webhook is stored with.
WEBHOOK = "webhook"


class DealerUsersIntegration(Integration):
    name = INTEGRATION
    webhook_topics: ClassVar[frozenset[str]] = frozenset({USER_CREATED})
    sandbox_dataset = "sync_worker.devtools.sandbox.dealer_users_dataset"
    #: the bulk re-sync walks the platform's users (pages of whole records, each given to ``apply``)
    resync_walks: ClassVar[str] = "platform_users"
    resync_cron: ClassVar[str] = "users_resync_cron"
    resync_dry_run: ClassVar[bool] = True  # DealerUserSync.preview
    trigger_fields: ClassVar[tuple[str, ...]] = ("user_id",)
    trigger_identity: ClassVar[tuple[str, ...]] = ("user_id",)

    probe_identity = "halt-probe"  # no dealer user has it: a 404 and a lookup answering null

    def trigger_request(self, fields: Mapping[str, Any], *, trigger: str) -> SyncRequest:
        """A sync of the user ``user_id``; not forced (the platform calls on every change of a user,
        a role or a location: a call that changes nothing costs no Intercom call)."""
        return SyncRequest(
            source_id=fields["user_id"], trigger=trigger, integration=self.name, force_write=False
        )

    def read_one(self, platform: PlatformClient, identity: str, **options: Any) -> list[dict[str, Any]]:
        """The user ``identity`` (a ``user_id``) as a list of one, ``[]`` when the platform has none."""
        found = platform.user(identity, **options)
        return [found] if found is not None else []

    def read_batch(
        self, platform: PlatformClient, identities: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The users of ``identities`` (user ids), 100 a call, ``[]`` for one the platform does not have."""
        return {
            user_id: [user] if user is not None else []
            for user_id, user in platform.lookup_users(identities).items()
        }

    def pipeline(self, runtime: Runtime) -> DealerUserSync:
        from sync_worker.config import secret
        from sync_worker.schema import AttributeSchema, workspace_id

        settings = runtime.settings
        names = resolve_user_names(settings.users_attribute_names)  # a bad name fails here, once
        workspace = workspace_id(settings.intercom_api_url, secret(settings.intercom_access_token) or "")
        return DealerUserSync(
            intercom=runtime.intercom,
            platform=runtime.platform,
            circuit=runtime.circuit,
            contact_schema=runtime.schema,
            company_schema=AttributeSchema(runtime.intercom, runtime.redis, workspace, model="company"),
            users=UserStates(runtime.redis, self.name),
            companies=CompanyStates(runtime.redis, self.name),
            names=names,
            source_label=settings.users_source_label,
            excluded_emails=tuple(settings.excluded_emails),
            integration=self.name,
        )

    def webhook_request(self, topic: str, contact: Mapping[str, Any]) -> SyncRequest | None:
        """A sync of the user a new Intercom ``user`` contact stands for: by its external id when it
        has one, else by its email; its id names the contact to write. Not forced: a user already
        shown as the platform has it costs nothing."""
        if topic != USER_CREATED or contact.get("role", "user") != "user":
            return None
        contact_id = _id(contact.get("id"))
        external_id = _id(contact.get("external_id"))
        email = _text(contact.get("email"))
        if not external_id and not email:
            return None
        return SyncRequest(
            contact_id=contact_id,
            email=email,
            source_id=external_id,
            trigger=WEBHOOK,
            integration=self.name,
            force_write=False,
        )


#: What a webhook's contact id and external id may look like to be kept (ids, never free text).
_ID = re.compile(SOURCE_ID_PATTERN)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _id(value: Any) -> str | None:
    text = _text(value)
    return text if text and _ID.match(text) else None


__all__ = ["DealerUserSync", "DealerUsersIntegration"]
