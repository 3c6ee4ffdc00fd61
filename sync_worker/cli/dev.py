"""``sync-worker dev`` (run everything locally) and ``sync-worker try`` (sync one contact, show it).

``dev`` prints where each part listens and a copy-paste ``try`` command; Ctrl-C
stops every child. ``try`` triggers a sync through the running web app's
``/v1/sync``, waits for the worker's result and prints the contact's attributes
as Intercom now holds them.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import click
import redis as redis_lib
import requests

from sync_worker import keys
from sync_worker.attributes import resolve_names
from sync_worker.config import get_settings
from sync_worker.devstack import DevStack, sample_contacts
from sync_worker.intercom import IntercomClient
from sync_worker.profiles import get_profile

DEFAULT_STATE_DIR = Path("var/dev")


@click.command()
@click.option("--port", default=8000, show_default=True, help="Port of the web receiver.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where logs, the embedded Redis's files and stack.json go.",
)
def dev(port: int, state_dir: Path) -> None:
    """Run Redis (embedded if REDIS_URL is unset), the sandboxes (if INTERCOM_ACCESS_TOKEN is unset),
    web, worker and beat, until Ctrl-C."""
    stack = DevStack(state_dir=state_dir.resolve(), web_port=port)
    stopping = threading.Event()
    # Both stop it, set explicitly: a process started in the background by a shell inherits
    # SIGINT ignored, and Ctrl-C (or a supervisor's SIGINT) must still stop every child.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        click.echo("starting intercom-sync (this takes a few seconds) ...")
        info = stack.start()
        _print_banner(info)
        while not stopping.is_set():
            dead = [child.name for child in stack.children if not child.alive()]
            if dead:
                click.echo(f"stopped unexpectedly: {', '.join(dead)} (see {state_dir}/<name>.log)", err=True)
                break
            stopping.wait(1.0)
    finally:
        click.echo("stopping ...")
        stack.stop()
        click.echo("stopped.")


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
        "",
        "Sync a sample contact and show what Intercom now holds (in another terminal):",
        "",
        f"  .venv/bin/sync-worker try {example}",
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
@click.argument("email")
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR, show_default=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the worker.")
def try_contact(email: str, state_dir: Path, timeout: float) -> None:
    """Sync EMAIL through the running `sync-worker dev` stack and print the contact's attributes."""
    stack_file = state_dir / "stack.json"
    if not stack_file.exists():
        raise click.ClickException(f"{stack_file} not found: start `sync-worker dev` first")
    info = json.loads(stack_file.read_text())
    client = redis_lib.Redis.from_url(info["redis_url"], decode_responses=True)
    result_key = keys.last_result(keys.contact_key(None, email))
    started = time.time()
    response = requests.post(
        f"{info['web_url']}/v1/sync",
        json={"email": email},
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
    from sync_worker.devstack import SANDBOX_INTERCOM_TOKEN

    contact = IntercomClient(info["intercom_api_url"], SANDBOX_INTERCOM_TOKEN).get_contact(contact_id)
    click.echo(f"\nIntercom contact {contact_id}:")
    for name, value in _in_display_order(contact):
        click.echo(f"  {name.ljust(26)}  {value}")


def _in_display_order(contact: dict) -> list[tuple[str, str]]:
    """The contact's synced values in the profile's display order (standard fields included)."""
    profile = get_profile("clients")
    targets = resolve_names(profile.attributes, get_settings().attribute_names)
    shown = []
    for spec in profile.attributes:
        target, is_custom = targets[spec.key]
        value = contact.get("custom_attributes", {}).get(target) if is_custom else contact.get(target)
        if value is not None:
            shown.append((spec.default_name if not is_custom else target, str(value)))
    return shown
