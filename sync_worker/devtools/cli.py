"""``sync-worker dev`` (run everything locally) and ``sync-worker try`` (sync one contact, show it).

``dev`` prints where each part listens and a copy-paste ``try`` command; Ctrl-C
stops every child. A part that exits, during start-up or later, stops the whole
stack within a second or two: ``dev`` prints which part, its exit code and the
last lines of its log, and exits 1 (a start-up that times out exits 1 too, with
one line, never a traceback). ``try`` triggers a sync through the running web app's
``/v1/sync``, waits for the worker's result and prints the contact's attributes
as Intercom now holds them.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import click
import redis as redis_lib
import requests

from sync_worker import integrations, keys, stackfile
from sync_worker.attributes import resolve_names
from sync_worker.config import get_settings
from sync_worker.devtools.devstack import DevStack, sample_contacts
from sync_worker.devtools.localredis import RedisExited
from sync_worker.devtools.processes import ExitedDuringStart, tail
from sync_worker.intercom import IntercomClient


@click.command()
@click.option("--port", default=8000, show_default=True, help="Port of the web receiver.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where logs, the embedded Redis's files and stack.json go "
    "(default: $SYNC_DEV_STATE_DIR, else var/dev).",
)
def dev(port: int, state_dir: Path | None) -> None:
    """Run Redis (embedded if REDIS_URL is unset), the sandboxes (if INTERCOM_ACCESS_TOKEN is unset),
    web, worker and beat, until Ctrl-C."""
    state_dir = state_dir or stackfile.default_state_dir()
    stack = DevStack(state_dir=state_dir.resolve(), web_port=port)
    stopping = threading.Event()
    # Both stop it, set explicitly: a process started in the background by a shell inherits
    # SIGINT ignored, and Ctrl-C (or a supervisor's SIGINT) must still stop every child.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    failed = False
    try:
        click.echo("starting intercom-sync (this takes a few seconds) ...")
        try:
            info = stack.start()
        except ExitedDuringStart as exited:
            _report_exit(exited.name, exited.returncode, exited.log_path, exited.log_tail)
            failed = True
            return
        except (RedisExited, TimeoutError) as problem:
            click.echo(f"intercom-sync did not start: {problem}", err=True)
            failed = True
            return
        _print_banner(info)
        while not stopping.is_set():
            dead = next((child for child in stack.children if not child.alive()), None)
            if dead is not None:
                returncode = dead.process.returncode if dead.process else None
                _report_exit(dead.name, returncode, dead.log_path, tail(dead.log_path), during="running")
                failed = True
                break
            stopping.wait(1.0)
    finally:
        click.echo("stopping ...")
        stack.stop()
        click.echo("stopped.")
        if failed:
            sys.exit(1)


def _report_exit(
    name: str, returncode: int | None, log_path: Path | None, lines: list[str], during: str = "start-up"
) -> None:
    where = f" ({log_path})" if log_path else ""
    click.echo(
        f"{name} exited during {during} (exit code {returncode}); the last lines of its log{where}:", err=True
    )
    for line in lines or ["(its log is empty)"]:
        click.echo(f"  {line}", err=True)


def _print_banner(info: dict) -> None:
    example = sample_contacts()[0]["email"] if info["sandboxed"] else "someone@yourcompany.com"
    # A generated token is shown as it is; one the user chose stays in their environment.
    bearer = info["sync_trigger_token"] if info.get("generated_trigger_token") else "$SYNC_TRIGGER_TOKEN"
    lines = [
        "",
        "intercom-sync is running:",
        f"  web receiver     {info['web_url']}   (POST /v1/sync, /webhooks/intercom; GET /healthz /readyz /metrics)",
        f"  redis            {info['redis_url']}",
        f"  intercom API     {info['intercom_api_url']}" + ("   (sandbox)" if info["sandboxed"] else ""),
        f"  platform API     {info['platform_api_url']}" + ("   (sandbox)" if info["sandboxed"] else ""),
        "  worker, beat     running; logs in " + str(info["logs"]),
        "  trigger token    "
        + (
            f"{info['sync_trigger_token']}   (generated for this run; set SYNC_TRIGGER_TOKEN to choose one)"
            if info.get("generated_trigger_token")
            else "from SYNC_TRIGGER_TOKEN"
        ),
        "  connector token  "
        + (
            f"{info['sync_connector_token']}   (POST /v1/connector/client-attributes; generated for this run,"
            " set SYNC_CONNECTOR_TOKEN to choose one)"
            if info.get("generated_connector_token")
            else "from SYNC_CONNECTOR_TOKEN"
        ),
        "",
        "Sync a sample contact and show what Intercom now holds (in another terminal):",
        "",
        f"  .venv/bin/sync-worker try {example}",
        *(
            ["  .venv/bin/sync-worker try --integration dealer_users user123   (a sample dealer user)"]
            if info["sandboxed"] and "dealer_users" in info.get("integrations", ())
            else []
        ),
        "",
        "or by hand:",
        "",
        f'  curl -s -X POST {info["web_url"]}/v1/sync -H "Authorization: Bearer {bearer}" '
        f"-H 'Content-Type: application/json' -d '{{\"email\": \"{example}\"}}'",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    click.echo("\n".join(lines))


@click.command(name="try")
@click.argument("identity", metavar="EMAIL_OR_USER_ID")
@click.option(
    "--integration",
    default=integrations.DEFAULT,
    show_default=True,
    help="The integration to sync with: clients (give an email) or dealer_users (give a user id).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The dev stack's directory (default: var/dev here, then in this checkout).",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the worker.")
def try_contact(identity: str, integration: str, state_dir: Path | None, timeout: float) -> None:
    """Sync one contact through the running `sync-worker dev` stack and print what Intercom now holds:
    a client by its EMAIL, or (``--integration dealer_users``) a dealer user by its USER_ID."""
    try:
        chosen = integrations.get(integration)
    except integrations.UnknownIntegration as unknown:
        raise click.BadParameter(str(unknown), param_hint="--integration") from None
    stack = stackfile.find(state_dir)
    if stack is None:
        looked = ", ".join(str(path) for path in stackfile.candidates(state_dir))
        raise click.ClickException(f"no `sync-worker dev` stack found ({looked}): start scripts/dev first")
    info = stack.info
    client = redis_lib.Redis.from_url(info["redis_url"], decode_responses=True)
    fields = {chosen.trigger_identity[0]: identity}
    body = fields if chosen.name == integrations.DEFAULT else {"integration": chosen.name, **fields}
    result_key = keys.last_result(chosen.trigger_request(fields, trigger="manual").contact_key)
    started = time.time()
    response = requests.post(
        f"{info['web_url']}/v1/sync",
        json=body,
        headers={"Authorization": f"Bearer {info['sync_trigger_token']}"},
        timeout=10,
    )
    click.echo(f"POST /v1/sync -> {response.status_code} {response.text.strip()}")
    if response.status_code != 202:
        raise SystemExit(1)
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        raw = client.get(result_key)
        if raw and json.loads(raw).get("finished_at", 0) >= started:
            result = json.loads(raw)
            break
        time.sleep(0.2)
    if result is None:
        raise click.ClickException(
            f"no result within {timeout}s: is the worker running? (see {info['logs']})"
        )
    click.echo(f"worker result: {result['status']}")
    contact_id = next((o.get("contact_id") for o in result.get("outcomes", []) if o.get("contact_id")), None)
    if not contact_id:
        click.echo(json.dumps(result, indent=2))
        return
    if not info.get("sandboxed"):
        click.echo(f"contact {contact_id} updated")
        return
    from sync_worker.devtools.devstack import SANDBOX_INTERCOM_TOKEN

    intercom = IntercomClient(info["intercom_api_url"], SANDBOX_INTERCOM_TOKEN)
    contact = intercom.get_contact(contact_id)
    click.echo(f"\nIntercom contact {contact_id}:")
    shown = _in_display_order(contact) if chosen.name == integrations.DEFAULT else _dealer_user_shown(contact)
    for name, value in shown:
        click.echo(f"  {name.ljust(26)}  {value}")
    if chosen.name != integrations.DEFAULT:
        for company in intercom.list_contact_companies(contact_id):
            click.echo(f"  {'company'.ljust(26)}  {company.get('company_id')}  {company.get('name')}")


def _dealer_user_shown(contact: dict) -> list[tuple[str, str]]:
    """A dealer user's contact: its standard fields, then its custom attributes as written."""
    from sync_worker.integrations.dealer_users.profile import resolve_user_names

    names = resolve_user_names(get_settings().users_attribute_names)
    shown = [
        (field, str(contact[field]))
        for field in ("role", "external_id", "email", "name")
        if contact.get(field)
    ]
    custom = contact.get("custom_attributes", {})
    return shown + [
        (name, str(custom[name])) for name in names.contact_custom if custom.get(name) is not None
    ]


def _in_display_order(contact: dict) -> list[tuple[str, str]]:
    """The contact's synced values in the profile's display order (standard fields included)."""
    profile = integrations.get("clients").profile()  # `try` syncs a client (the clients integration)
    targets = resolve_names(profile.attributes, get_settings().attribute_names)
    shown = []
    for spec in profile.attributes:
        target, is_custom = targets[spec.key]
        value = contact.get("custom_attributes", {}).get(target) if is_custom else contact.get(target)
        if value is not None:
            shown.append((spec.default_name if not is_custom else target, str(value)))
    return shown
