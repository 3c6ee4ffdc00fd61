"""The project holds everything it needs: nothing outside the repository is read or named.

An installed package (here: a copy of it in a temporary folder, with no repository or
``shared`` folder anywhere above it) must serve the Intercom sandbox with the OpenAPI
description it ships, and no tracked file may point outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sync_worker.devtools.localredis import free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces, so this file does not name what it looks for.
OUTSIDE = ("../" + "shared", "shared" + "/spec", "shared" + "/seeds", "shared" + "/DESIGN")


@pytest.fixture(scope="module")
def package_copy() -> Iterator[Path]:
    """The package and the web app copied into a fresh temporary folder, as an install would have them."""
    folder = Path(tempfile.mkdtemp(prefix="intercom-sync-standalone-"))
    assert not any((parent / "shared").exists() for parent in [folder, *folder.parents])
    for package in ("sync_worker", "web"):
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_intercom_sandbox_validates_with_its_shipped_description_outside_the_repository(package_copy):
    env = {k: v for k, v in os.environ.items() if k not in ("INTERCOM_OPENAPI_SPEC", "PYTHONPATH")}
    env["PYTHONPATH"] = str(package_copy)
    where = subprocess.run(
        [sys.executable, "-c", "import sync_worker.devtools.sandbox.openapi as o; print(o.find_spec())"],
        cwd=package_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(package_copy), where.stdout
    port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sync_worker.devtools.sandbox.intercom", "--port", str(port), "--token", "t"],
        cwd=package_copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: sandbox.poll() is not None or requests.get(f"{url}/_sandbox/stats", timeout=1).ok,
            60,
            message="the copied Intercom sandbox",
        )
        assert sandbox.poll() is None, sandbox.stdout.read().decode() if sandbox.stdout else ""
        headers = {"Authorization": "Bearer t", "Intercom-Version": "2.14"}
        # A body the description refuses (custom_attributes must be an object): the validator is at work.
        refused = requests.post(
            f"{url}/contacts/search", json={"query": "not an object"}, headers=headers, timeout=10
        )
        assert refused.status_code == 400, refused.text
        assert "body query" in refused.text  # the description's own schema refused it
        accepted = requests.post(
            f"{url}/contacts/search",
            json={"query": {"field": "email", "operator": "=", "value": "nobody@example.com"}},
            headers=headers,
            timeout=10,
        )
        assert accepted.status_code == 200, accepted.text
    finally:
        sandbox.kill()
        sandbox.wait(10)


def test_no_tracked_file_points_outside_the_repository():
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    offenders = []
    for name in filter(None, tracked):
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert offenders == []


def test_the_contracts_and_integration_docs_are_the_projects_own():
    assert (ROOT / "docs" / "contracts" / "platform-api.yaml").is_file()
    assert (ROOT / "docs" / "integrations" / "clients.md").is_file()
    specs = ROOT / "sync_worker" / "devtools" / "sandbox" / "specs"
    for name in (
        "intercom-openapi-2.14.yaml",
        "intercom-openapi-preview.yaml",
        "LICENSE-INTERCOM-OPENAPI.txt",
    ):
        assert (specs / name).is_file(), name
    assert "MIT License" in (specs / "LICENSE-INTERCOM-OPENAPI.txt").read_text()
