"""Shared fixtures: each lives in a module of tests/fixtures/ and is registered here."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.intercom_sandbox",
    "tests.fixtures.intercom_agent",
    "tests.fixtures.platform_sandbox",
    "tests.fixtures.referral_sandbox",
    "tests.fixtures.workers",
    "tests.fixtures.web",
    "tests.fixtures.resilience",
]
