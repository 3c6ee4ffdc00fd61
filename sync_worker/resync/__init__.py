"""The bulk re-sync: everything an integration syncs refreshed on a schedule, fast and gently.

One concept a module:

- :mod:`.settings`: the re-sync's knobs (``SYNC_RESYNC_*``);
- :mod:`.keys`: the Redis keys it keeps (all under ``intercom-sync:resync:``; a lock and an
  active run per integration);
- :mod:`.lock`: the one-run-at-a-time lock (expiring, refreshed while the run lives);
- :mod:`.walks`: what a run walks, chosen per integration (Intercom's contacts, the platform's
  users), and :mod:`.entries`: what its chunks' entries are and how each is applied;
- :mod:`.runs`: the run record (options, checkpoint, counters) and the chunks in flight,
  changed only by Lua scripts so every step is atomic;
- :mod:`.progress`: pure summaries (rate, ETA) and the progress line;
- :mod:`.starter`: start a run, or resume a stalled one, or report the one running;
- :mod:`.walk` / :mod:`.chunks`: one walk step (a page into chunks) and one chunk (a batched
  platform read where the walk needs one, then each entry's write-if-changed);
- :mod:`.tasks`: the Celery tasks (``sync_worker.resync.tasks.*``) around them.
"""
