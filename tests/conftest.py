"""Shared fixtures: each lives in a module of tests/fixtures/ and is registered here."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.sandboxes",
    "tests.fixtures.workers",
]
