"""Delivery: what happens to a task's message after a run, one concept a module.

- :mod:`.redisloss`: which Redis errors mean "Redis cannot be used now" (the message goes back);
- :mod:`.poison`: the count of runs of one message that died with their worker;
- :mod:`.decision`: the retry decision every task shares (backoff with full jitter, the retry
  budget, an error's own ``retry_after``): ``sync_contact``, a re-sync's walk and its chunks;
- :mod:`.base`: :class:`~.base.DeliveryTask`, the Celery task base class that applies the
  hand-back and the poison count around every run of a task built on it (as dramatiq applies
  ``middleware/retries.py`` to every actor).
"""
