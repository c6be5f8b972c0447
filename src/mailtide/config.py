"""Settings: one object, built from a TOML file plus MAILTIDE_* environment overrides.

This is the only module that reads the environment; everything else receives a `Settings`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

GOOGLE_API_URL = "https://gmail.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"  # signs Pub/Sub push OIDC tokens
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
ENV_PREFIX = "MAILTIDE_"
MIN_API_TOKEN_CHARS = 16
HOUR = 3600.0

logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("mailtide", appauthor=False))


def default_database_url() -> str:
    """Where the database is when neither database_url nor data_dir is set."""
    return f"sqlite:///{default_data_dir() / 'mailtide.db'}"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key."""


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _list_from_text(value: Any) -> Any:
    """An environment value for a list: JSON (`["a", "b"]`) or comma-separated (`a,b`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc})") from None
    return [item.strip() for item in text.split(",") if item.strip()]


def _table_from_text(value: Any) -> Any:
    """An environment value for a table: JSON (`{"threads.get": 10}`) or `threads.get=10,messages.get=20`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object ({exc})") from None
    table: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, number = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f'{item!r}: expected key=value pairs separated by commas, or JSON ({{"key": 1}})')
        table[key.strip()] = number.strip()
    return table


# NoDecode: list and table values from the environment reach the validators above as text,
# instead of pydantic-settings' JSON decoding, whose failure is a traceback rather than a key.
TextList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    # allow_inf_nan=False: `inf` or `nan` for a number of seconds is always a mistake (a heartbeat
    # of inf seconds would never let a stuck job be rescued).
    model_config = SettingsConfigDict(env_prefix="MAILTIDE_", extra="forbid", allow_inf_nan=False)

    database_url: str = Field(default_factory=default_database_url)
    gmail_api_url: str = GOOGLE_API_URL
    token_url: str = GOOGLE_TOKEN_URL

    worker_concurrency: int = Field(default=4, ge=1, le=256)
    # Slots kept for real-time jobs, so that backfills can never fill them all; never all the slots:
    # at most worker_concurrency - 1 take effect (none with concurrency 1). 0 = no reservation.
    worker_reserved_slots: int = Field(default=1, ge=0, le=255)
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=HOUR)
    poll_seconds: float = Field(default=1.0, gt=0, le=HOUR)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=HOUR)

    # Periodic jobs, scheduled by every `mailtide worker` (each run enqueued once however many run)
    history_poll_seconds: float = Field(default=300.0, ge=0)  # history sync after this long without news; 0 = off
    labels_sync_seconds: float = Field(default=3600.0, ge=0)  # 0 = off
    prune_hour_utc: int = Field(default=3, ge=0, le=23)  # daily retention pruning of finished jobs
    retain_completed_seconds: float = Field(default=86_400.0, gt=0)
    retain_failed_seconds: float = Field(default=604_800.0, gt=0)  # failed and canceled jobs

    # Gmail client behaviour
    http_timeout_seconds: float = Field(default=30.0, gt=0, le=HOUR)
    gmail_concurrency: int = Field(default=8, ge=1, le=100)
    ingest_batch_size: int = Field(default=50, ge=1, le=500)
    list_page_size: int = Field(default=500, ge=1, le=500)
    gmail_max_retries: int = Field(default=3, ge=0, le=10)  # 5xx / connection errors, inside the client

    # Gmail quota, shared by the client's limiter and the emulator (gmail/quota.py): a named profile,
    # optional custom numbers on top, and a time scale for tests and benchmarks (a quota minute
    # lasts 60/scale seconds; keep 1 against Google).
    quota_profile: Literal["gmail-2026", "gmail-legacy", "unlimited"] = "gmail-2026"
    quota_user_units_per_minute: int | None = Field(default=None, ge=1)
    quota_project_units_per_minute: int | None = Field(default=None, ge=1)
    quota_costs: Annotated[dict[str, Annotated[int, Field(ge=0)]], NoDecode] = Field(default_factory=dict)
    quota_time_scale: float = Field(default=1.0, ge=0.001, le=1_000_000)

    # Real-time sync: Gmail watch, Pub/Sub push and pull, polling fallback (docs/configuration.md).
    pubsub_topic: str | None = Field(default=None, pattern=r"^projects/[^/\s]+/topics/[^/\s]+$")  # for users.watch
    pubsub_subscriptions: TextList = Field(default_factory=list)  # pull: projects/<p>/subscriptions/<s>
    pubsub_emulator_host: str | None = None  # host:port of a Pub/Sub emulator (plain gRPC, no credentials)
    pubsub_credentials_file: Path | None = None  # service account JSON for pull; else application default
    pubsub_max_outstanding_messages: int = Field(default=100, ge=1, le=10_000)
    pubsub_push_audience: str | None = None  # push: the `aud` the OIDC token must carry
    pubsub_push_service_account: str | None = None  # push: the `email` the OIDC token must carry
    pubsub_certs_url: str = GOOGLE_CERTS_URL
    watch_label_ids: TextList = Field(default_factory=list)
    watch_label_filter_behavior: Literal["include", "exclude"] = "include"
    watch_renew_seconds: float = Field(default=86_400, gt=0)
    realtime_check_seconds: float = Field(default=60, gt=0)  # how often the poll fallback and watches are checked

    _lists_from_text = field_validator("pubsub_subscriptions", "watch_label_ids", mode="before")(_list_from_text)
    _tables_from_text = field_validator("quota_costs", mode="before")(_table_from_text)

    @field_validator("pubsub_subscriptions")
    @classmethod
    def _subscription_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"projects/[^/\s]+/subscriptions/[^/\s]+", name):
                raise ValueError(f"{name!r} is not projects/<project>/subscriptions/<name>")
        return value

    @model_validator(mode="after")
    def _push_auth_complete(self) -> Settings:
        if (self.pubsub_push_audience is None) != (self.pubsub_push_service_account is None):
            raise ValueError("pubsub_push_audience and pubsub_push_service_account are set together (push auth)")
        return self

    # The service (`mailtide serve`): HTTP API, secrets at rest, observability, OAuth for `accounts add`.
    data_dir: Path = Field(default_factory=default_data_dir)
    secret_key: SecretStr | None = None  # Fernet key; else a key file in data_dir, created on first use
    secret_key_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8787, ge=0, le=65535)
    api_token: SecretStr | None = None  # bearer token; required when api_host is not loopback
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] | None = None  # None: warning, info for serve
    otlp_endpoint: str | None = None  # e.g. http://localhost:4318; traces go to {endpoint}/v1/traces
    otel_service_name: str = "mailtide"
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_auth_url: str = GOOGLE_AUTH_URL

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_API_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_API_TOKEN_CHARS} characters")
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from cryptography.fernet import Fernet

            try:
                Fernet(value.get_secret_value().encode())
            except ValueError:
                raise ValueError("must be a Fernet key (32 url-safe base64-encoded bytes)") from None
        return value

    @field_validator("otlp_endpoint", "oauth_auth_url", "gmail_api_url", "token_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _token_when_exposed(self) -> Settings:
        if self.api_token is None and not is_loopback_host(self.api_host):
            raise ValueError(
                f"api_token ({ENV_PREFIX}API_TOKEN) is required when api_host ({self.api_host!r}) "
                "is not a loopback address"
            )
        return self

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        """Unless given, the database is `<data_dir>/mailtide.db`: moving data_dir moves it too."""
        if "database_url" not in self.model_fields_set:
            self.database_url = f"sqlite:///{self.data_dir / 'mailtide.db'}"
        return self

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        from mailtide.db.engine import checked_async_url  # SQLAlchemy loads only when settings are built

        checked_async_url(value)  # InvalidDatabaseURL is a ValueError: reported with the key
        return value


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, then the environment, then explicit overrides."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    # Precedence: defaults < file < MAILTIDE_* variables < explicit overrides (command-line options).
    # Values passed to Settings() beat the environment, so file keys the environment sets are dropped.
    in_environment = {name.lower() for name in os.environ if name.upper().startswith(ENV_PREFIX)}
    file_values = {k: v for k, v in file_values.items() if f"{ENV_PREFIX}{k}".lower() not in in_environment}
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    warn_unknown_environment_variables(os.environ)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
    except SettingsError as exc:  # an environment value pydantic-settings could not even parse
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _describe(err: Any) -> str:
    """One validation problem, naming the key as written in TOML and in the environment."""
    if not err["loc"]:
        return str(err["msg"]).removeprefix("Value error, ")
    key, *inside = (str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":  # only a file can hold an unknown key: the environment's are ignored
        close = difflib.get_close_matches(key, list(Settings.model_fields), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{key}: not a mailtide setting{hint}; docs/configuration.md lists them"
    message = str(err["msg"]).removeprefix("Value error, ")
    where = f" at {'.'.join(inside)}" if inside else ""  # a list item or a table entry
    return f"{key} ({ENV_PREFIX}{key.upper()}){where}: {message}"


_warned_variables: set[str] = set()
# MAILTIDE_* variables that are not settings but mean something to mailtide's own tests.
_NOT_SETTINGS = {"MAILTIDE_CORPUS_DIR", "MAILTIDE_TEST_POSTGRES_URL"}


def warn_unknown_environment_variables(environ: Any) -> list[str]:
    """Log one warning per MAILTIDE_* variable that is no setting (a typo is otherwise silently ignored).

    Only a warning: other tools may use the prefix too. Returns the names warned about now.
    """
    known = [name.upper() for name in Settings.model_fields]
    unknown = sorted(
        name for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper().removeprefix(ENV_PREFIX) not in known
        and name not in _warned_variables
        and name.upper() not in _NOT_SETTINGS
    )
    for name in unknown:
        _warned_variables.add(name)
        # Compared without the shared prefix, which would make every name look close.
        close = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), known, n=1, cutoff=0.75)
        hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
        logger.warning("config.unknown_variable %s is not a mailtide setting%s; ignored", name, hint)
    return unknown
