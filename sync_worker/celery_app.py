"""The Celery application: queues, delivery guarantees, beat schedule.

Guarantees:
- two queues: ``sync.realtime`` (webhooks, manual triggers, connector, replays)
  and ``sync.bulk`` (scheduled re-sync); a worker consuming both always takes
  realtime work first (the Redis transport's ``priority`` queue order), so a
  flood of bulk work delays a realtime sync by at most one running task;
- at-least-once delivery: late acks, a message whose pool child dies is
  requeued at once, prefetch of one, and a visibility timeout longer than the
  longest countdown the code schedules plus the hard time limit (checked here,
  at import, so a misconfiguration stops the process at start);
- a message whose whole worker died without returning it (SIGKILL, OOM, host
  lost) is put back on its queue by any live worker once it is older than the
  visibility timeout: the transport's sweep for such messages runs every
  :func:`restore_interval` seconds (a tenth of the timeout, 1 to 10 s), so the
  message is back within the timeout plus that interval;
- a bulk re-sync's lock outlives the longest wait of one of its chunks: the lock's ttl
  (``SYNC_RESYNC_LOCK_TTL_SECONDS``) must exceed a re-sync message's longest countdown
  (``SYNC_MAX_RESCHEDULE_SECONDS``) plus the chunk's time budget
  (``SYNC_RESYNC_CHUNK_TIME_BUDGET_SECONDS``), checked here too, so the
  watchdog does not re-publish a run whose chunk is only waiting out a reschedule
  (not counting time a chunk waits in ``sync.bulk`` behind realtime work, or a chunk that
  runs past its budget, up to the hard time limit: then a re-publish is a no-op by the
  chunk's version);
- the time limits and the reschedule cap are settings
  (``SYNC_TASK_TIME_LIMIT_SECONDS``, ``SYNC_TASK_SOFT_TIME_LIMIT_SECONDS``,
  ``SYNC_MAX_RESCHEDULE_SECONDS``), so the visibility timeout can be short
  where the countdowns are;
- publishing does not hang a web request on kombu's connection retries: a
  ``send_task`` to a broker that refuses connections fails within half a
  second (``task_publish_retry_policy``), one to a broker that accepts but does
  not answer after ``socket_timeout`` (5 s); triggers do not go through
  ``send_task`` (:mod:`sync_worker.taskmessage` builds their messages, failing
  within two seconds either way), so the receiver can answer 503 in time.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_init, celeryd_init
from kombu import Exchange, Queue

from sync_worker import integrations, redis_policy
from sync_worker.config import Settings, get_settings
from sync_worker.cron import parse_cron
from sync_worker.referral_intake import schedule as referral_intake_schedule
from sync_worker.resync.settings import ResyncSettings, get_resync_settings

REALTIME_QUEUE = "sync.realtime"
BULK_QUEUE = "sync.bulk"
SYNC_TASK = "sync_worker.tasks.sync_contact"
REPLAY_DEAD_LETTERS_TASK = "sync_worker.tasks.replay_dead_letters"
HALT_PROBE_TASK = "sync_worker.haltprobe.probe_halts"

#: The longest a wait is served by rescheduling (seconds): this process's
#: ``SYNC_MAX_RESCHEDULE_SECONDS``, read once at import like the app below.
MAX_RESCHEDULE_SECONDS = get_settings().max_reschedule_seconds
#: Bounds of the transport's sweep for messages of dead workers (seconds).
MIN_RESTORE_INTERVAL_SECONDS = 1.0
MAX_RESTORE_INTERVAL_SECONDS = 10.0


class DeliveryMisconfigured(RuntimeError):
    """A timeout would redeliver (or re-publish) a message that is still legitimately pending."""


def longest_countdown(settings: Settings) -> float:
    """The longest countdown any code path schedules a message with."""
    return max(settings.retry_backoff_max_seconds, settings.max_reschedule_seconds)


def _refuse_unless_longer(
    name: str, value: float, wait: tuple[str, float], plus: tuple[str, float], otherwise: str
) -> None:
    """Raise :class:`DeliveryMisconfigured` unless ``value`` (setting ``name``) exceeds a wait
    (``wait``: what it is, in words naming its settings, and its seconds) plus another setting
    (``plus``: name, seconds); the message names every variable, the minimum and ``otherwise``,
    what would go wrong."""
    (wait_text, wait_seconds), (plus_name, plus_seconds) = wait, plus
    needed = wait_seconds + plus_seconds
    if value <= needed:
        raise DeliveryMisconfigured(
            f"{name}={value:.12g} must exceed {wait_text} plus {plus_name} ({needed:.12g}s), or {otherwise}"
        )


def check_visibility_timeout(settings: Settings) -> None:
    """Refuse a visibility timeout not longer than the longest countdown plus the hard time limit."""
    _refuse_unless_longer(
        "SYNC_VISIBILITY_TIMEOUT_SECONDS",
        settings.visibility_timeout_seconds,
        (
            "the longest countdown (SYNC_RETRY_BACKOFF_MAX_SECONDS, SYNC_MAX_RESCHEDULE_SECONDS)",
            longest_countdown(settings),
        ),
        ("SYNC_TASK_TIME_LIMIT_SECONDS", settings.task_time_limit_seconds),
        "pending retries would be delivered twice",
    )


def check_resync_lock_ttl(settings: Settings, resync: ResyncSettings) -> None:
    """Refuse a re-sync lock ttl not longer than a re-sync message's longest countdown plus a
    chunk's time budget.

    Every re-sync countdown is capped at ``SYNC_MAX_RESCHEDULE_SECONDS``
    (:mod:`sync_worker.resync.messages`), and only progress refreshes the lock, so a chunk
    rescheduled for that long and then running for its whole budget must find the lock still
    held, or the watchdog re-publishes the run meanwhile (a no-op by the chunk's version, but
    spare work).
    """
    _refuse_unless_longer(
        "SYNC_RESYNC_LOCK_TTL_SECONDS",
        resync.lock_ttl_seconds,
        (
            "a re-sync message's longest countdown (SYNC_MAX_RESCHEDULE_SECONDS)",
            settings.max_reschedule_seconds,
        ),
        ("SYNC_RESYNC_CHUNK_TIME_BUDGET_SECONDS", resync.chunk_time_budget_seconds),
        "the watchdog would re-publish a run whose chunk is waiting out a reschedule",
    )


def restore_interval(settings: Settings) -> float:
    """Seconds between two sweeps returning dead workers' messages: a tenth of the visibility timeout, 1 to 10."""
    tenth = settings.visibility_timeout_seconds / 10
    return min(MAX_RESTORE_INTERVAL_SECONDS, max(MIN_RESTORE_INTERVAL_SECONDS, tenth))


#: A halt probe expires after this many of its periods, at least :data:`HALT_PROBE_MIN_EXPIRES_SECONDS`.
HALT_PROBE_EXPIRY_PERIODS = 10
HALT_PROBE_MIN_EXPIRES_SECONDS = 600.0


def halt_probe_expires(settings: Settings) -> float:
    """How long a queued halt probe stays worth running (pure): far beyond a realtime backlog, yet
    bounded so a stopped worker does not find a pile of probes."""
    return max(HALT_PROBE_MIN_EXPIRES_SECONDS, HALT_PROBE_EXPIRY_PERIODS * settings.halt_probe_seconds)


def resync_schedules(settings: Settings) -> dict[str, dict[str, Any]]:
    """One nightly re-sync per integration that runs (``SYNC_INTEGRATIONS``), each on its own cron
    (the :class:`~sync_worker.config.Settings` field its ``Integration.resync_cron`` names: the
    clients' ``SYNC_RESYNC_CRON``, dealer users' ``USERS_RESYNC_CRON``). The clients' entry keeps
    its name and its message (no argument: a run of ``clients``)."""
    schedule: dict[str, dict[str, Any]] = {}
    # Built as the app is imported: a name not registered is left to the start checks, which
    # refuse it in one line (workerprocess), not a traceback here.
    known = [name for name in integrations.parse(settings.integrations) if name in integrations.REGISTRY]
    for integration in map(integrations.get, known):
        entry: dict[str, Any] = {
            "task": "sync_worker.resync.tasks.start_resync",
            "schedule": parse_cron(getattr(settings, integration.resync_cron)),
            "options": {"queue": BULK_QUEUE},
        }
        if integration.name == integrations.DEFAULT:
            schedule["nightly-resync"] = entry
        else:
            schedule[f"nightly-resync-{integration.name}"] = {
                **entry,
                "kwargs": {"integration": integration.name},
            }
    return schedule


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """What beat runs: each integration's nightly re-sync (:func:`resync_schedules`), their watchdog,
    the halt probe (``SYNC_HALT_PROBE_SECONDS``), the referral program's walk and qualification
    backstop when ``referral_leads`` runs (:mod:`sync_worker.referral_intake.schedule`), and the
    dead-letter replay when it has a cron."""
    schedule: dict[str, dict[str, Any]] = {
        **resync_schedules(settings),
        "resync-watchdog": {
            "task": "sync_worker.resync.tasks.watchdog",
            "schedule": 60.0,
            "options": {"queue": BULK_QUEUE},
        },
        "halt-probe": {
            "task": HALT_PROBE_TASK,
            "schedule": settings.halt_probe_seconds,
            # Expires only after a long backlog: a probe behind 30 s of realtime work must still run,
            # or no halt ever clears (one more waits in the queue at most a few periods).
            "options": {"queue": REALTIME_QUEUE, "expires": halt_probe_expires(settings)},
        },
    }
    schedule.update(referral_intake_schedule.beat_entries(settings, queue=BULK_QUEUE))
    if settings.dead_letter_replay_cron:
        schedule["dead-letter-replay"] = {
            "task": REPLAY_DEAD_LETTERS_TASK,
            "schedule": parse_cron(settings.dead_letter_replay_cron),
            "options": {"queue": REALTIME_QUEUE},
        }
    return schedule


def create_celery(settings: Settings | None = None, resync: ResyncSettings | None = None) -> Celery:
    """The Celery app for ``settings`` (default: the environment's), after the delivery checks.

    ``resync`` (default: the environment's re-sync settings) is checked against ``settings``
    (:func:`check_resync_lock_ttl`); a misconfiguration raises :class:`DeliveryMisconfigured`.
    """
    settings = settings or get_settings()
    check_visibility_timeout(settings)
    check_resync_lock_ttl(settings, resync or get_resync_settings())
    app = Celery(
        "intercom_sync",
        broker=settings.redis_url,
        include=[
            "sync_worker.tasks",
            "sync_worker.resync.tasks",
            "sync_worker.haltprobe",
            "sync_worker.referral_intake.tasks",
        ],
    )
    exchange = Exchange("sync", type="direct")
    app.conf.update(
        task_queues=(
            Queue(REALTIME_QUEUE, exchange, routing_key=REALTIME_QUEUE),
            Queue(BULK_QUEUE, exchange, routing_key=BULK_QUEUE),
        ),
        task_default_queue=REALTIME_QUEUE,
        task_default_exchange="sync",
        task_default_routing_key=REALTIME_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_soft_time_limit=settings.soft_time_limit_seconds,
        task_time_limit=settings.task_time_limit_seconds,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            # kombu sweeps every interval x throttle seconds (default 10 x 10): sweep every interval.
            "unacked_restore_interval": restore_interval(settings),
            "unacked_restore_throttle": 1,
            # A sweeper that dies holding the sweep lock delays the next sweep by at most this
            # (kombu's default is 300 s); overlapping sweeps are harmless (each restore is a transaction).
            "unacked_mutex_expire": 30,
            "queue_order_strategy": "priority",
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
        },
        broker_connection_retry_on_startup=True,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    return app


app = create_celery()

# A Redis that may evict keys is refused before a worker or beat takes work (sync_worker.redis_policy).
celeryd_init.connect(redis_policy.refuse_worker_at_start, weak=False)
beat_init.connect(redis_policy.refuse_beat_at_start, weak=False)
