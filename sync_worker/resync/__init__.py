"""The bulk re-sync: every Intercom contact refreshed on a schedule, fast and gently.

One concept a module:

- :mod:`.settings`: the re-sync's knobs (``SYNC_RESYNC_*``);
- :mod:`.keys`: the Redis keys it keeps (all under ``intercom-sync:resync:``);
- :mod:`.lock`: the one-run-at-a-time lock (expiring, refreshed while the run lives);
- :mod:`.runs`: the run record (options, checkpoint, counters) and the chunks in flight,
  changed only by Lua scripts so every step is atomic;
- :mod:`.progress`: pure summaries (rate, ETA) and the progress line;
- :mod:`.starter`: start a run, or resume a stalled one, or report the one running;
- :mod:`.walk` / :mod:`.chunks`: one walk step (a page of contacts into chunks) and one
  chunk (a batched platform read, then each contact's write-if-changed);
- :mod:`.tasks`: the Celery tasks (``sync_worker.resync.tasks.*``) around them.
"""
