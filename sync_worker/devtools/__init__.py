"""Dev tooling, out of the product's import path: only ``sync-worker dev`` / ``try``, the tests and
the benches load it; the production processes (worker, beat, receiver, operator commands) never do
(``tests/unit/test_deployment.py`` checks it), so the production install leaves the ``sandbox``
extra's dependencies out.

- :mod:`.sandbox`: Intercom and platform stand-ins over real HTTP, the sample dataset;
- :mod:`.devstack`: the dev stack (Redis, sandboxes, web, worker, beat);
- :mod:`.localredis`: a private redis-server (dev, tests; ``noeviction``, as deployed);
- :mod:`.processes`: command lines of web, worker, beat; child process control; ``process_table``;
- :mod:`.cli`: the ``dev`` and ``try`` commands (``sync-worker`` loads them only when named).
"""
