"""Our own OpenAPI 3.1 description of the receiver, served at ``GET /openapi.json``.

Guarantees: :func:`build_spec` (pure) describes every route the receiver serves,
their security schemes, request bodies and every status each can answer, with the JSON error envelope and the
``X-Request-Id`` header on every response. The webhook and trigger bodies come
from the same pydantic models that validate them, so the description cannot
drift from the checks.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint
from pydantic.json_schema import models_json_schema

from sync_worker import integrations
from sync_worker.config import Settings
from sync_worker.dispatch import SOURCE_ID_PATTERN
from web.connector import DATA_STATUS, STALE_KEY
from web.context import web_context
from web.notifications import Conversation, Notification, NotificationData
from web.referrals import INTEGRATION as REFERRAL_INTEGRATION
from web.referrals import ROUTE as REFERRAL_ROUTE
from web.referrals import TOKEN_HEADER as REFERRAL_TOKEN_HEADER
from web.referrals import ReferralWebhook
from web.triggers import INTEGRATION_PATTERN, MAX_ADDRESS_LENGTH, MAX_BODY_BYTES

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
JSON = "application/json"
SCHEMA_VERSION = "0.1.0"

_STATUS_TEXT = {
    400: "Malformed JSON, or a body or parameter that does not have the documented shape.",
    401: "Credential missing or wrong.",
    403: "The route's secret is not configured: every call is refused.",
    404: "No such entry.",
    413: "The body is over the size limit.",
    415: "The body is not application/json.",
    503: "Redis cannot be reached: nothing was stored. Retry later.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _response(description: str, schema: dict[str, Any] | None = None, media: str = JSON) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
    }
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _response(_STATUS_TEXT[status], _ref("Error")) for status in statuses}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _model_schemas(settings: Settings) -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(Notification, "validation"), (Conversation, "validation"), (NotificationData, "validation")],
        ref_template=REF,
    )
    schemas = copy.deepcopy(definitions["$defs"])
    topic = schemas["Notification"]["properties"]["topic"]
    schemas["Notification"]["properties"]["topic"] = {
        "anyOf": [{"enum": [*settings.webhook_topics, "ping"]}, topic],
        "description": "The subscribed topics queue a sync; ping and any other topic are acknowledged.",
    }
    schemas["NotificationData"]["properties"]["item"] = {
        "anyOf": [_ref("Conversation"), {"type": "object"}],
        "description": "A conversation for conversation.* topics; another object for other topics.",
    }
    return schemas


def _address(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_ADDRESS_LENGTH, "description": description}


def _client_attributes() -> dict[str, Any]:
    attributes = integrations.get("clients").profile().attributes
    properties: dict[str, Any] = {
        spec.key: {"type": ["string", "null"], "description": spec.default_name} for spec in attributes
    }
    properties[DATA_STATUS] = {
        "type": "string",
        "description": "Live, or Stale - platform unavailable since <date-time>.",
    }
    properties[STALE_KEY] = {
        "type": "boolean",
        "description": "false: read from the platform now; true: the last known values (or none).",
    }
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
        "description": (
            "Flat: each attribute of the client profile under its key, formatted as written to the "
            "contact, plus stale. With stale true and no last known values, every attribute but "
            "data_status is null. name is null when the email has no platform account."
        ),
    }


def _referrals_run(settings: Settings) -> bool:
    """The referral program's route is served (its integration runs)."""
    return REFERRAL_INTEGRATION in integrations.parse(settings.integrations)


def _referral_schemas(skipped: dict[str, Any]) -> dict[str, Any]:
    body = ReferralWebhook.model_json_schema(ref_template=REF)
    body["description"] = (
        "What the program's webhook may carry that is read; other fields are ignored. It names the "
        "user by id, else code, else email (one of them is required: 400 no_user otherwise)."
    )
    answer = {
        "type": "object",
        "required": ["status", "source_id"],
        "properties": {
            "status": {"enum": ["queued", "folded", "duplicate"]},
            "task_id": {"type": ["string", "null"]},
            "source_id": {
                "type": ["string", "null"],
                "description": "The user's id, or code:<code>; null when only an email names the user.",
            },
        },
    }
    return {"ReferralWebhook": body, "ReferralAnswer": {"anyOf": [answer, skipped]}}


def _referral_paths(settings: Settings) -> dict[str, Any]:
    return {
        REFERRAL_ROUTE: {
            "post": {
                "operationId": "receiveReferralWebhook",
                "summary": "Receive the referral program's webhook (a user joined, a lead was created).",
                "description": (
                    f"Carries {REFERRAL_TOKEN_HEADER}: <REFERRAL_WEBHOOK_TOKEN>. The body only names the "
                    "user; the worker reads it through the program's API. One sync per event and user: "
                    f"a redelivery answers duplicate. Body limit {settings.webhook_max_body_bytes} bytes."
                ),
                "security": [{"referralToken": []}],
                "requestBody": _body(_ref("ReferralWebhook")),
                "responses": {
                    "200": _response(
                        "Stored (queued or folded), duplicate, or skipped with the reason.",
                        _ref("ReferralAnswer"),
                    ),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            }
        }
    }


def _component_schemas(settings: Settings) -> dict[str, Any]:
    error = {
        "type": "object",
        "required": ["error", "request_id"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "request_id": {"type": ["string", "null"]},
        },
    }
    contact_id = {
        "type": "string",
        "pattern": r"^[A-Za-z0-9_.:-]{1,128}$",
        "description": "Intercom contact id.",
    }
    trigger = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "integration": {
                "type": "string",
                "pattern": INTEGRATION_PATTERN,
                "default": integrations.DEFAULT,
                "description": "The integration to sync with (a registry name, running here).",
            },
            "email": _address("The contact's email address (clients)."),
            "contact_id": contact_id,
            "reply_to": _address(
                "A reply-to address carried by the trigger; screened for exclusion (clients)."
            ),
            "user_id": {
                "type": "string",
                "pattern": SOURCE_ID_PATTERN,
                "description": "The dealer user's platform id (dealer_users).",
            },
        },
        "anyOf": [{"required": ["email"]}, {"required": ["contact_id"]}, {"required": ["user_id"]}],
        "description": (
            "clients (the default): at least one of email and contact_id, optionally reply_to; "
            "dealer_users: user_id alone. A field another integration takes, or an integration that "
            f"does not run here, is 400. At most {MAX_BODY_BYTES} bytes."
        ),
    }
    skipped = {
        "type": "object",
        "required": ["status", "reason", "message"],
        "properties": {
            "status": {"const": "skipped"},
            "reason": {"type": "string", "description": "excluded, invalid_email, no_contact"},
            "message": {"type": "string"},
        },
    }
    queued = {
        "type": "object",
        "required": ["status", "contact_key", "task_id", "expected_delay_seconds"],
        "properties": {
            "status": {"enum": ["queued", "folded"]},
            "contact_key": {"type": "string"},
            "task_id": {"type": ["string", "null"]},
            "expected_delay_seconds": {"type": ["number", "null"], "minimum": 0},
        },
    }
    webhook_answer = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "ignored", "duplicate", "skipped", "queued", "folded"]},
            "topic": {"type": "string"},
            "task_id": {"type": ["string", "null"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "notification_id": {"type": "string"},
        },
    }
    dead_letter = {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}, "integration": {"type": "string"}},
        "additionalProperties": True,
        "description": "A contact whose sync failed for good: its integration, ids, error and the trigger to replay.",
    }
    referral = _referral_schemas(skipped) if _referrals_run(settings) else {}
    return {
        **referral,
        "Error": error,
        "TriggerBody": trigger,
        "SyncQueued": queued,
        "Skipped": skipped,
        "WebhookAnswer": webhook_answer,
        "DeadLetter": dead_letter,
        "DeadLetterPage": {
            "type": "object",
            "required": ["count", "offset", "limit", "items"],
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1},
                "items": {"type": "array", "items": _ref("DeadLetter")},
            },
        },
        "Replayed": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["queued", "folded"]},
                "contact_key": {"type": "string"},
                "task_id": {"type": ["string", "null"]},
            },
        },
        "ReplayRun": {
            "type": "object",
            "description": "A replay of every dead letter parked when it started, carried out by the workers.",
            "required": ["id", "status", "total", "replayed", "failed", "done"],
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": ["queued", "running", "finished", "failed"]},
                "trigger": {"type": "string"},
                "total": {"type": "integer", "minimum": 0, "description": "Entries parked at the start."},
                "replayed": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0, "description": "Not stored: still parked."},
                "done": {"type": "integer", "minimum": 0},
                "step": {"type": "integer", "minimum": 0},
                "created_at": {"type": "number"},
                "updated_at": {"type": "number"},
                "finished_at": {"type": ["number", "null"]},
                "error": {"type": ["string", "null"]},
                "links": {"type": "object"},
            },
        },
        "Halts": {
            "type": "object",
            "required": ["halts", "alerts"],
            "properties": {
                "halts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["upstream", "reason", "code", "message", "since", "probes"],
                        "properties": {
                            "upstream": {"enum": ["intercom", "platform"]},
                            "reason": {"enum": ["auth", "schema"]},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "since": {"type": "number"},
                            "probes": {"type": "integer"},
                            "last_probe_at": {"type": ["number", "null"]},
                            "last_probe_error": {"type": ["string", "null"]},
                        },
                    },
                },
                "alerts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "Removed": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["removed", "purged"]}, "removed": {"type": "integer"}},
        },
        "ConnectorRequest": {
            "type": "object",
            "required": ["email"],
            "additionalProperties": False,
            "properties": {"email": _address("The contact's email."), "contact_id": contact_id},
            "description": f"Whose values: the email (required) and the Intercom id; at most {MAX_BODY_BYTES} bytes.",
        },
        "ClientAttributes": _client_attributes(),
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        **_model_schemas(settings),
    }


def _paths(settings: Settings) -> dict[str, Any]:
    trigger_auth = [{"triggerToken": []}]
    connector_auth = [{"connectorToken": []}]
    admin_auth = [{"adminToken": []}]
    entry_id = {
        "name": "entry_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }
    pagination = [
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        },
    ]
    topics = ", ".join(settings.webhook_topics)
    return {
        "/webhooks/intercom": {
            "head": {
                "operationId": "checkWebhookUrl",
                "summary": "Intercom's URL check.",
                "responses": {"200": _response("The URL is served.")},
            },
            "post": {
                "operationId": "receiveIntercomWebhook",
                "summary": "Receive an Intercom webhook notification.",
                "description": (
                    "Signed with X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body with the app's client "
                    f"secret>. Subscribed topics ({topics}) queue one sync for the conversation's contact; "
                    "ping and other topics are acknowledged and ignored. A notification id already handled "
                    f"answers duplicate. Body limit {settings.webhook_max_body_bytes} bytes."
                ),
                "security": [{"intercomSignature": []}],
                "requestBody": _body(_ref("Notification")),
                "responses": {
                    "200": _response(
                        "Acknowledged: queued, folded, skipped, duplicate or ignored.", _ref("WebhookAnswer")
                    ),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            },
        },
        "/v1/sync": {
            "post": {
                "operationId": "triggerSync",
                "summary": "Queue a sync for one contact.",
                "security": trigger_auth,
                "requestBody": _body(_ref("TriggerBody")),
                "responses": {
                    "202": _response(
                        "Stored: queued, or folded into the contact's waiting sync.", _ref("SyncQueued")
                    ),
                    "200": _response("Not synced: the address is excluded or invalid.", _ref("Skipped")),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            },
        },
        "/v1/connector/client-attributes": {
            "post": {
                "operationId": "connectorClientAttributes",
                "summary": "The contact's attribute values for Intercom's data connector.",
                "description": (
                    f"Answers within SYNC_CONNECTOR_DEADLINE_SECONDS ({settings.connector_deadline_seconds} s here). "
                    "Always stores a sync for the contact first (the worker then writes its attributes), "
                    "then reads the platform once within the deadline: live values with stale false, "
                    "else (platform slow, down, rate-limited, circuit open) the last known values with "
                    "stale true. An excluded or invalid email answers skipped and stores nothing. A "
                    "platform problem is never a 5xx; 503 means Redis is unreachable. Takes "
                    "SYNC_CONNECTOR_TOKEN, never SYNC_TRIGGER_TOKEN; 403 not_configured while it is "
                    "unset (or the same as SYNC_TRIGGER_TOKEN)."
                ),
                "security": connector_auth,
                "requestBody": _body(_ref("ConnectorRequest")),
                "responses": {
                    "200": _response(
                        "The values and their freshness, or skipped (excluded or invalid email).",
                        {"oneOf": [_ref("ClientAttributes"), _ref("Skipped")]},
                    ),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            },
        },
        "/v1/admin/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "List parked contacts (of one integration with ?integration=).",
                "security": admin_auth,
                "parameters": [
                    *pagination,
                    {
                        "name": "integration",
                        "in": "query",
                        "schema": {"type": "string", "enum": sorted(integrations.REGISTRY)},
                    },
                ],
                "responses": {
                    "200": _response("A page of entries and the total count.", _ref("DeadLetterPage")),
                    **_errors(400, 401, 403, 503),
                },
            },
            "delete": {
                "operationId": "purgeDeadLetters",
                "summary": "Remove every entry (requires confirm=true).",
                "security": admin_auth,
                "parameters": [
                    {
                        "name": "confirm",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                ],
                "responses": {
                    "200": _response("Purged.", _ref("Removed")),
                    **_errors(400, 401, 403, 503),
                },
            },
        },
        "/v1/admin/halts": {
            "get": {
                "operationId": "listHalts",
                "summary": "Workspace-wide halts (a revoked token, a schema problem) and alerts raised so far.",
                "security": admin_auth,
                "responses": {
                    "200": _response("The halts set now (empty: none).", _ref("Halts")),
                    **_errors(401, 403, 503),
                },
            },
        },
        "/v1/admin/dead-letters/retry-all": {
            "post": {
                "operationId": "retryAllDeadLetters",
                "summary": "Start a replay run of every entry (each re-reads the platform).",
                "description": "Answers at once; the workers replay the entries. GET the run for its progress.",
                "security": admin_auth,
                "responses": {
                    "202": _response("The run, queued.", _ref("ReplayRun")),
                    **_errors(401, 403, 503),
                },
            },
            "get": {
                "operationId": "latestReplayRun",
                "summary": "The latest replay run's progress.",
                "security": admin_auth,
                "responses": {
                    "200": _response("The run.", _ref("ReplayRun")),
                    **_errors(401, 403, 404, 503),
                },
            },
        },
        "/v1/admin/dead-letters/retry-all/{run_id}": {
            "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getReplayRun",
                "summary": "A replay run's progress.",
                "security": admin_auth,
                "responses": {
                    "200": _response("The run.", _ref("ReplayRun")),
                    **_errors(401, 403, 404, 503),
                },
            },
        },
        "/v1/admin/dead-letters/{entry_id}": {
            "parameters": [entry_id],
            "get": {
                "operationId": "getDeadLetter",
                "security": admin_auth,
                "responses": {
                    "200": _response("The entry.", _ref("DeadLetter")),
                    **_errors(401, 403, 404, 503),
                },
            },
            "delete": {
                "operationId": "removeDeadLetter",
                "security": admin_auth,
                "responses": {"200": _response("Removed.", _ref("Removed")), **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/admin/dead-letters/{entry_id}/retry": {
            "parameters": [entry_id],
            "post": {
                "operationId": "retryDeadLetter",
                "security": admin_auth,
                "responses": {
                    "202": _response("Replay stored; the entry is removed.", _ref("Replayed")),
                    **_errors(401, 403, 404, 503),
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is up (no I/O).",
                "responses": {"200": _response("Up.", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Redis takes writes, so triggers can be stored; workers being down never fails it.",
                "responses": {
                    "200": _response("Ready; the body tells the workers' health too.", _ref("Health")),
                    "503": _response("Not ready; the error names the failed check.", _ref("Error")),
                },
            }
        },
        "/healthz/workers": {
            "get": {
                "operationId": "workersHealth",
                "summary": "Some worker's heartbeat is at most 30 s old (Redis's clock).",
                "responses": {
                    "200": _response("A worker is up.", _ref("Health")),
                    "503": _response("No fresh heartbeat, or Redis cannot be read.", _ref("Error")),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text format (prometheus_client): the receiver's and the workers' figures, read from Redis.",
                "responses": {
                    "200": _response("Metrics.", {"type": "string"}, media="text/plain"),
                    **_errors(503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description.",
                "responses": {"200": _response("OpenAPI 3.1 document.", {"type": "object"})},
            }
        },
    }


def build_spec(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a receiver configured with ``settings`` (pure)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "intercom-sync receiver",
            "version": SCHEMA_VERSION,
            "description": (
                "Verifies, validates and enqueues syncs of Intercom contacts. Every error answers "
                '{"error": {"code", "message"}, "request_id"}; every response carries X-Request-Id.'
            ),
        },
        # Each operation's own "security" names the one credential it takes; the rest take none.
        "security": [],
        "paths": {**_paths(settings), **(_referral_paths(settings) if _referrals_run(settings) else {})},
        "components": {
            "securitySchemes": {
                "triggerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SYNC_TRIGGER_TOKEN: POST /v1/sync only",
                },
                "connectorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SYNC_CONNECTOR_TOKEN: POST /v1/connector/client-attributes only",
                },
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SYNC_ADMIN_TOKEN: /v1/admin/* only",
                },
                "referralToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": REFERRAL_TOKEN_HEADER,
                    "description": "REFERRAL_WEBHOOK_TOKEN: POST /webhooks/referrals only",
                },
                "intercomSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Hub-Signature",
                    "description": "sha1=<hex HMAC-SHA1 of the raw body, keyed with INTERCOM_CLIENT_SECRET>",
                },
            },
            "headers": {
                "RequestId": {
                    "description": "The request id (the caller's X-Request-Id when sane, else a new one).",
                    "schema": {"type": "string"},
                }
            },
            "schemas": _component_schemas(settings),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return build_spec(web_context().settings)
