"""Settings from the environment.

Guarantees:
- every setting has one environment name (the design's table for the shared ones,
  ``SYNC_*`` / ``INTERCOM_*`` / ``PLATFORM_*`` / ``REFERRAL_*`` for the rest) and a typed value;
- a missing required setting fails at start with one line naming the variable
  (:func:`require`), never with a traceback deep in a task;
- secrets are ``SecretStr``: their ``repr`` and log lines show ``**********``.

Read settings through :func:`get_settings` (cached per process); tests and the
``dev`` command set environment variables before the processes they start read them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sync_worker.cron import crontab_of, parse_cron


class MissingSetting(RuntimeError):
    """A required environment variable is not set; the message names it."""


class InvalidSetting(ValueError):
    """A setting's value cannot work; the message starts with the variable's name (a worker's start
    refuses with it, one line)."""


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    # --- shared names (DESIGN.md) -------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    intercom_access_token: SecretStr | None = Field(None, validation_alias="INTERCOM_ACCESS_TOKEN")
    intercom_api_url: str = Field("https://api.intercom.io", validation_alias="INTERCOM_API_URL")
    intercom_api_version: str = Field("2.14", validation_alias="INTERCOM_API_VERSION")
    intercom_client_secret: SecretStr | None = Field(None, validation_alias="INTERCOM_CLIENT_SECRET")
    platform_api_url: str | None = Field(None, validation_alias="PLATFORM_API_URL")
    platform_api_token: SecretStr | None = Field(None, validation_alias="PLATFORM_API_TOKEN")
    sync_trigger_token: SecretStr | None = Field(None, validation_alias="SYNC_TRIGGER_TOKEN")
    #: The data connector's own bearer (it answers client data): never the trigger token.
    sync_connector_token: SecretStr | None = Field(None, validation_alias="SYNC_CONNECTOR_TOKEN")
    sync_admin_token: SecretStr | None = Field(None, validation_alias="SYNC_ADMIN_TOKEN")
    excluded_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="SYNC_EXCLUDED_EMAILS"
    )
    display_timezone: str = Field("America/Toronto", validation_alias="SYNC_DISPLAY_TIMEZONE")
    #: Which integrations run (comma-separated registry names, :mod:`sync_worker.integrations`).
    integrations: str = Field("clients", validation_alias="SYNC_INTEGRATIONS")

    # --- HTTP clients ---------------------------------------------------------------
    http_timeout_seconds: float = Field(10.0, validation_alias="SYNC_HTTP_TIMEOUT_SECONDS")
    platform_timeout_seconds: float = Field(5.0, validation_alias="PLATFORM_TIMEOUT_SECONDS")

    # --- the referral program (docs/contracts/referral-api.yaml) ----------------------
    referral_api_url: str | None = Field(None, validation_alias="REFERRAL_API_URL")
    referral_api_token: SecretStr | None = Field(None, validation_alias="REFERRAL_API_TOKEN")
    #: Every worker together; the program allows 600 a minute and blocks an IP that goes over.
    referral_calls_per_minute: int = Field(540, ge=1, validation_alias="REFERRAL_CALLS_PER_MINUTE")
    referral_timeout_seconds: float = Field(10.0, gt=0, validation_alias="REFERRAL_TIMEOUT_SECONDS")

    # --- attribute names: JSON object {key: "Intercom name"} overriding the defaults -
    attribute_names: dict[str, str] = Field(default_factory=dict, validation_alias="SYNC_ATTRIBUTE_NAMES")

    # --- dealer users (docs/integrations/dealer_users.md) -------------------------------
    #: What the contact's ``Source`` says.
    users_source_label: str = Field(
        "Billing Center Dealer App", min_length=1, validation_alias="USERS_SOURCE_LABEL"
    )
    #: JSON object {key: "Intercom name"} renaming the dealer users' custom attributes (``source``,
    #: ``roles``, ``companies``; ``dealer_company`` on companies).
    users_attribute_names: dict[str, str] = Field(
        default_factory=dict, validation_alias="USERS_ATTRIBUTE_NAMES"
    )

    # --- webhooks -------------------------------------------------------------------
    webhook_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["conversation.user.created", "conversation.user.replied"],
        validation_alias="SYNC_WEBHOOK_TOPICS",
    )
    webhook_max_body_bytes: int = Field(256 * 1024, validation_alias="SYNC_WEBHOOK_MAX_BODY_BYTES")

    # --- data connector -------------------------------------------------------------
    connector_deadline_seconds: float = Field(2.5, gt=0, validation_alias="SYNC_CONNECTOR_DEADLINE_SECONDS")

    # --- the receiver's server (web/serve.py) and its threads -----------------------------
    web_threads: int = Field(8, ge=2, validation_alias="SYNC_WEB_THREADS")
    web_client_timeout_seconds: int = Field(10, ge=1, validation_alias="SYNC_WEB_CLIENT_TIMEOUT_SECONDS")
    web_max_connections: int = Field(1000, ge=10, validation_alias="SYNC_WEB_MAX_CONNECTIONS")
    #: Connector requests reading the platform at once per receiver; beyond it they answer stale at once.
    connector_max_reads: int = Field(4, ge=1, validation_alias="SYNC_CONNECTOR_MAX_READS")

    # --- Redis ------------------------------------------------------------------------
    #: Start even when Redis may evict keys (``maxmemory-policy`` other than ``noeviction``).
    allow_eviction: bool = Field(False, validation_alias="SYNC_ALLOW_EVICTION")

    # --- rate limits (starting budgets; Intercom's headers take over once seen) ------
    intercom_calls_per_window: int = Field(1666, validation_alias="INTERCOM_CALLS_PER_WINDOW")
    intercom_window_seconds: int = Field(10, validation_alias="INTERCOM_WINDOW_SECONDS")
    platform_calls_per_second: int = Field(20, validation_alias="PLATFORM_CALLS_PER_SECOND")

    # --- platform circuit breaker (shared by every worker) ------------------------------
    circuit_failure_threshold: int = Field(5, ge=1, validation_alias="SYNC_CIRCUIT_FAILURE_THRESHOLD")
    circuit_window_seconds: float = Field(30.0, gt=0, validation_alias="SYNC_CIRCUIT_WINDOW_SECONDS")
    circuit_open_seconds: float = Field(30.0, gt=0, validation_alias="SYNC_CIRCUIT_OPEN_SECONDS")

    # --- retries ----------------------------------------------------------------------
    task_max_retries: int = Field(6, validation_alias="SYNC_TASK_MAX_RETRIES")
    retry_backoff_base_seconds: float = Field(2.0, validation_alias="SYNC_RETRY_BACKOFF_BASE_SECONDS")
    retry_backoff_max_seconds: float = Field(600.0, validation_alias="SYNC_RETRY_BACKOFF_MAX_SECONDS")
    #: Rate-limit waits never spend the retries; a contact still waiting for a token after this
    #: long in all (an upstream that keeps refusing) is parked.
    rate_limit_max_wait_seconds: float = Field(
        6 * 3600.0, gt=0, validation_alias="SYNC_RATE_LIMIT_MAX_WAIT_SECONDS"
    )

    #: An email-only trigger whose contact is not in Intercom's search yet (new contacts take
    #: "a few minutes") searches again, with backoff and no error retry spent, this long.
    contact_search_wait_seconds: float = Field(
        600.0, ge=0, validation_alias="SYNC_CONTACT_SEARCH_WAIT_SECONDS"
    )

    # --- delivery ---------------------------------------------------------------------
    visibility_timeout_seconds: int = Field(3600, validation_alias="SYNC_VISIBILITY_TIMEOUT_SECONDS")
    #: Hard limit of one task run (the pool child is killed past it) and the soft one
    #: (the task is told to stop; unset = 80% of the hard limit).
    task_time_limit_seconds: float = Field(150.0, gt=0, validation_alias="SYNC_TASK_TIME_LIMIT_SECONDS")
    task_soft_time_limit_seconds: float | None = Field(
        None, gt=0, validation_alias="SYNC_TASK_SOFT_TIME_LIMIT_SECONDS"
    )
    #: The longest wait (rate limit, upstream Retry-After) served by rescheduling a task.
    max_reschedule_seconds: float = Field(300.0, gt=0, validation_alias="SYNC_MAX_RESCHEDULE_SECONDS")

    # --- workspace-wide halts (halts.py) --------------------------------------------------
    #: How often beat probes a halted upstream; work that finds a halt waits this long (at most
    #: SYNC_MAX_RESCHEDULE_SECONDS) before looking again.
    halt_probe_seconds: float = Field(30.0, gt=0, validation_alias="SYNC_HALT_PROBE_SECONDS")

    # --- schedule (each cron is checked at start: sync_worker.cron) --------------------------
    #: The clients integration's bulk re-sync (each integration names its own: Integration.resync_cron).
    resync_cron: str = Field("0 3 * * *", validation_alias="SYNC_RESYNC_CRON")
    #: The dealer users integration's bulk re-sync (nightly, after the clients').
    users_resync_cron: str = Field("0 4 * * *", validation_alias="USERS_RESYNC_CRON")
    #: When set, beat replays every dead letter on this cron (unset: only operators replay).
    dead_letter_replay_cron: str | None = Field(None, validation_alias="SYNC_DEAD_LETTER_REPLAY_CRON")

    # --- referral leads (docs/integrations/referral_leads.md) ---------------------------
    # Read as given; the integration checks them when its pipeline is built, at a worker's start
    # (sync_worker/integrations/referral_leads/options.py: InvalidSetting naming the variable).
    #: Which of the program's users are sent: referred (person_invited), direct, all.
    referral_user_types: str = Field("referred", validation_alias="REFERRAL_USER_TYPES")
    #: Campaign ids sent (comma-separated); empty: every campaign.
    referral_campaigns: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="REFERRAL_CAMPAIGNS"
    )
    #: JSON {"<referral field>": "<Intercom attribute>" or null} over the defaults.
    referral_field_map: str = Field("", validation_alias="REFERRAL_FIELD_MAP")
    #: signed_up (the lead becomes a user) or property (REFERRAL_QUALIFY_PROPERTY's value).
    referral_qualify_on: str = Field("signed_up", validation_alias="REFERRAL_QUALIFY_ON")
    referral_qualify_property: str = Field("Lead Status", validation_alias="REFERRAL_QUALIFY_PROPERTY")
    referral_qualify_initial: str = Field("New", validation_alias="REFERRAL_QUALIFY_INITIAL")
    referral_qualify_values: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="REFERRAL_QUALIFY_VALUES"
    )
    #: The program's webhook must carry it in X-Referral-Token.
    referral_webhook_token: SecretStr | None = Field(None, validation_alias="REFERRAL_WEBHOOK_TOKEN")
    #: Beat walks the program's users newest first on this cron (the reconciliation walk).
    referral_poll_cron: str = Field("*/5 * * * *", validation_alias="REFERRAL_POLL_CRON")
    #: Beat searches Intercom for pending referral contacts that qualify on this cron (the backstop).
    referral_qualify_poll_cron: str = Field("*/15 * * * *", validation_alias="REFERRAL_QUALIFY_POLL_CRON")

    @property
    def soft_time_limit_seconds(self) -> float:
        """The soft time limit in force: the one set, else 80% of the hard limit."""
        if self.task_soft_time_limit_seconds is not None:
            return self.task_soft_time_limit_seconds
        return 0.8 * self.task_time_limit_seconds

    @model_validator(mode="after")
    def _soft_limit_below_hard(self) -> Settings:
        if self.soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError("SYNC_TASK_SOFT_TIME_LIMIT_SECONDS must be below SYNC_TASK_TIME_LIMIT_SECONDS")
        return self

    @field_validator("referral_poll_cron", "referral_qualify_poll_cron")
    @classmethod
    def _a_cron(cls, value: str, info: ValidationInfo) -> str:
        field = cls.model_fields[info.field_name or ""]
        crontab_of(value, str(field.validation_alias))  # BadCron (a ValueError) names the setting
        return value

    @field_validator("resync_cron", "users_resync_cron", "dead_letter_replay_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)  # ValueError: what is wrong with it, under the setting's name
        return value

    @field_validator(
        "excluded_emails", "webhook_topics", "referral_campaigns", "referral_qualify_values", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return _csv(value)

    @field_validator("excluded_emails")
    @classmethod
    def _normalise_emails(cls, value: list[str]) -> list[str]:
        return [email.strip().lower() for email in value]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (for a process that changed its environment)."""
    get_settings.cache_clear()


_ENV_NAMES = {
    "intercom_access_token": "INTERCOM_ACCESS_TOKEN",
    "intercom_client_secret": "INTERCOM_CLIENT_SECRET",
    "platform_api_url": "PLATFORM_API_URL",
    "platform_api_token": "PLATFORM_API_TOKEN",
    "referral_api_url": "REFERRAL_API_URL",
    "referral_api_token": "REFERRAL_API_TOKEN",
    "sync_trigger_token": "SYNC_TRIGGER_TOKEN",
    "sync_connector_token": "SYNC_CONNECTOR_TOKEN",
    "sync_admin_token": "SYNC_ADMIN_TOKEN",
    "referral_webhook_token": "REFERRAL_WEBHOOK_TOKEN",
}


def require(settings: Settings, *names: str) -> None:
    """Raise :class:`MissingSetting` naming the first of ``names`` that is unset or blank.

    A secret set to an empty or all-blank string (``INTERCOM_ACCESS_TOKEN=``) counts as unset.

    ``names`` are field names of :class:`Settings`; the message gives the environment
    variable, e.g. ``INTERCOM_ACCESS_TOKEN is not set: the worker needs it to call Intercom``.
    """
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or (isinstance(value, str) and not value.strip()):
            env = _ENV_NAMES.get(name, name.upper())
            raise MissingSetting(f"{env} is not set")


def secret(value: SecretStr | None) -> str | None:
    """The plain text of a secret setting, or None."""
    return value.get_secret_value() if value is not None else None
