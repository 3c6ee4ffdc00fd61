"""The halt probe (beat, every ``SYNC_HALT_PROBE_SECONDS``): clears a halt once its upstream works.

Guarantees: for each halted upstream (:mod:`sync_worker.halts`) one cheap authenticated call:
- Intercom: the data attributes are listed afresh (the cached schema forgotten) and the names
  the sync writes ensured, so a restored token, an unarchived or renamed attribute, or room
  made under the cap all clear the halt, and a schema problem still there keeps it;
- the platform: for each integration that runs here and reads it, one read and one batched read
  (what a sync and a bulk chunk of it send: a ``contract`` halt is about the batch) of its
  :attr:`~sync_worker.integrations.base.Integration.probe_identity`, which nobody has; so the
  dealer users' probe reads ``/v1/users...`` and the clients' ``/v1/clients...``;
- the referral program: one page of one user (any answer but an error means the token works);
a probe that works clears the halt (the waiting work goes on at its next look); one that fails
notes its error on the halt (``probes``, ``last_probe_error``) and keeps it. An upstream without
a halt costs no call.
"""

from __future__ import annotations

from collections.abc import Callable

from sync_worker.celery_app import HALT_PROBE_TASK, app
from sync_worker.halts import INTERCOM, PLATFORM, REFERRAL
from sync_worker.runtime import Runtime, get_runtime


def probe_intercom(runtime: Runtime) -> None:
    """The data attributes of every integration that runs here listed and ensured again."""
    runtime.schema.forget()
    for name in runtime.integrations:
        runtime.pipeline(name).ensure_schema()


def probe_platform(runtime: Runtime) -> None:
    """The reads of every integration that runs here and reads the platform, for nobody."""
    for integration in runtime.integrations.values():
        if integration.probe_identity is not None:
            integration.read_one(runtime.platform, integration.probe_identity)
            integration.read_batch(runtime.platform, [integration.probe_identity])


def probe_referral(runtime: Runtime) -> None:
    runtime.referral.users_page(per_page=1)


PROBES: dict[str, Callable[[Runtime], None]] = {
    INTERCOM: probe_intercom,
    PLATFORM: probe_platform,
    REFERRAL: probe_referral,
}


@app.task(name=HALT_PROBE_TASK)
def probe_halts() -> dict[str, str]:
    """Probe every halted upstream; upstream -> ``cleared`` or ``halted``."""
    runtime = get_runtime()
    results: dict[str, str] = {}
    for halt in runtime.halts.all():
        try:
            PROBES[halt.upstream](runtime)
        except Exception as error:  # whatever stops the call, the halt stays and the next probe tries
            runtime.halts.probe_failed(halt.upstream, error)
            results[halt.upstream] = "halted"
            continue
        runtime.halts.clear(halt.upstream)
        results[halt.upstream] = "cleared"
    return results
