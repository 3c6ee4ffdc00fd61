"""Local stand-ins for Intercom and the platform, served over real HTTP.

They exist for ``sync-worker dev`` and for the tests; nothing in the worker knows
it talks to a sandbox.
"""
