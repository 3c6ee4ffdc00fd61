"""What an integration is: one vertical slice, from a trigger's identity to what Intercom shows.

Guarantees: an integration declares everything that differs between kinds of sync, and nothing
else; the core (the request and its fold-in, delivery, the upstream clients, the shared limiter
and circuit, last known values, dead letters and re-sync runs) never names one. An integration
declares:

- ``name``: its registry name, carried by every request and every per-contact key
  (:func:`sync_worker.keys.contact_key`);
- :meth:`Integration.profile`: its pure compute (attribute specs, ``compute``, ``stale``);
- its pipeline: how the source is read for one contact (:meth:`Integration.read_one`), what a
  failed read means (:attr:`Integration.unreadable`: those errors mean "stale", never "no
  account"), and what is written to Intercom (:meth:`Integration.pipeline`);
- what a bulk re-sync walks (:attr:`Integration.resync_walks`, a walk of
  :mod:`sync_worker.resync.walks`), how it reads in batches (:meth:`Integration.read_batch`, for a
  walk whose chunks read), and the setting holding its schedule (:attr:`Integration.resync_cron`);
- the fields of its ``POST /v1/sync`` body (:attr:`Integration.trigger_fields`, the ones that name
  the contact: :attr:`Integration.trigger_identity`) and the sync a body asks for
  (:meth:`Integration.trigger_request`, pure);
- the Intercom webhook topics about a contact it acts on (:attr:`Integration.webhook_topics`) and
  the sync each such notification asks of it (:meth:`Integration.webhook_request`, pure: the
  receiver calls it, one stored sync per integration that subscribes);
- the routes it adds to the receiver (:attr:`Integration.routes`, ``module:attribute`` names of
  Flask blueprints, loaded by ``web`` only: the worker never imports the receiver);
- its sandbox data (:attr:`Integration.sandbox_dataset`, a module name loaded by the dev
  tooling only);
- what the platform's halt probe reads for it (:attr:`Integration.probe_identity`: the reads a
  sync and a bulk chunk of it make, for an identity nobody has).

:class:`ContactAttributes` is the shared base of the integrations that write attributes onto
an Intercom contact found by its id or email (as most kombu transports share
``kombu/transport/virtual/base.py``): their pipeline is :class:`sync_worker.sync.ContactSync`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sync_worker.platform import PlatformClient, PlatformUnavailable
from sync_worker.profiles.base import Profile

if TYPE_CHECKING:
    from sync_worker.dispatch import SyncRequest
    from sync_worker.runtime import Runtime
    from sync_worker.sync import ContactSync


class Integration:
    """One kind of sync (subclass it and register it in :mod:`sync_worker.integrations`)."""

    #: registry name, in every request and per-contact key
    name: ClassVar[str]
    #: what a bulk re-sync walks (:mod:`sync_worker.resync.walks`): ``intercom_contacts`` (Intercom's
    #: ``GET /contacts``, chunks read the source in batches) or ``platform_users`` (the platform's
    #: ``GET /v1/users``, each page carrying whole records, applied by the pipeline's ``apply``)
    resync_walks: ClassVar[str] = "intercom_contacts"
    #: the :class:`~sync_worker.config.Settings` field holding its nightly re-sync's cron
    resync_cron: ClassVar[str] = "resync_cron"
    #: whether its re-sync can be a dry run (its chunks' entries preview: compute, compare, write nothing)
    resync_dry_run: ClassVar[bool] = True
    #: Intercom webhook topics about a contact (``contact.user.created``) this integration acts on
    webhook_topics: ClassVar[frozenset[str]] = frozenset()
    #: the fields a ``POST /v1/sync`` body may give for this integration, and those that name the
    #: contact (at least one is required)
    trigger_fields: ClassVar[tuple[str, ...]] = ("email", "contact_id", "reply_to")
    trigger_identity: ClassVar[tuple[str, ...]] = ("email", "contact_id")
    #: Flask blueprints the receiver adds for this integration (``module:attribute``)
    routes: ClassVar[tuple[str, ...]] = ()
    #: the module of its sandbox data (dev tooling, tests and benches only)
    sandbox_dataset: ClassVar[str | None] = None
    #: errors of a source read that mean "the source cannot be read now" (stale, never "none")
    unreadable: ClassVar[tuple[type[Exception], ...]] = (PlatformUnavailable,)
    #: an identity nobody has, read by the platform's halt probe (:mod:`sync_worker.haltprobe`)
    #: with :meth:`read_one` and :meth:`read_batch`; None: the integration reads no platform
    probe_identity: ClassVar[str | None] = None

    def profile(self, **options: Any) -> Profile:
        """A new instance of its pure compute, built with ``options`` (``display_timezone``)."""
        raise NotImplementedError

    def read_one(self, platform: PlatformClient, identity: str, **options: Any) -> list[dict[str, Any]]:
        """The source's records for one contact (``identity``: what the pipeline reads it by)."""
        raise NotImplementedError

    def read_batch(
        self, platform: PlatformClient, identities: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The source's records for many contacts in as few calls as the source allows, keyed by
        the normalised identity (``[]``: none)."""
        raise NotImplementedError

    def pipeline(self, runtime: Runtime) -> Any:
        """What runs one request of this integration in ``runtime``: its ``run(request)`` (a list of
        :class:`~sync_worker.sync.SyncOutcome`) and ``intercom_calls(request)`` (the Intercom calls
        the run reserves together, :func:`sync_worker.ratelimit.reserving`)."""
        raise NotImplementedError

    def trigger_request(self, fields: Mapping[str, Any], *, trigger: str) -> SyncRequest:
        """The sync a ``POST /v1/sync`` body asks for (``fields``: its :attr:`trigger_fields`, already
        validated; pure). The default names the contact by its Intercom id and/or email."""
        from sync_worker.dispatch import SyncRequest

        return SyncRequest(
            contact_id=fields.get("contact_id"),
            email=fields.get("email"),
            trigger=trigger,
            reply_to=fields.get("reply_to"),
            integration=self.name,
        )

    def webhook_request(self, topic: str, contact: Mapping[str, Any]) -> SyncRequest | None:
        """The sync an Intercom notification of ``topic`` (one of :attr:`webhook_topics`) about
        ``contact`` (its ``data.item``: the whole contact) asks of this integration, with the trigger
        ``webhook``; None: nothing to do. Pure: the receiver calls it before answering."""
        return None


class ContactAttributes(Integration):
    """Attributes computed from the source's records for one email, written onto the contact."""

    def pipeline(self, runtime: Runtime) -> ContactSync:
        from sync_worker.attributes import resolve_names
        from sync_worker.sync import ContactSync

        settings = runtime.settings
        profile = self.profile(display_timezone=settings.display_timezone)
        resolve_names(profile.attributes, settings.attribute_names)  # a bad name fails here, once
        return ContactSync(
            intercom=runtime.intercom,
            platform=runtime.platform,
            profile=profile,
            schema=runtime.schema,
            cache=runtime.cache_for(self.name),
            circuit=runtime.circuit,
            excluded_emails=tuple(settings.excluded_emails),
            attribute_names=settings.attribute_names,
            integration=self,
        )
