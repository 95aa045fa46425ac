"""Settings: parsed once at the edge from flags and ``ORDERCAST_*`` variables, then frozen."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ordercast.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERCAST_", frozen=True, extra="ignore")

    mode: Literal["dev", "production"] = "dev"
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    ws_port: int = Field(6001, ge=0, le=65535)
    database_url: str = "sqlite:///./ordercast.db"
    bus_url: str = "memory://"
    # Admin bearer token. Dev mode generates one on first start and keeps it in the database.
    admin_token: str | None = None
    # Key that signs user access tokens; dev mode generates and keeps one.
    secret_key: str | None = None
    # Public base URL used in resource links (``uri``/``log``); defaults to the HTTP address.
    public_url: str | None = None
    access_token_ttl: int = Field(3600, ge=60, le=30 * 24 * 3600)
    demo: bool = True  # create the demo tenant on an empty database (dev mode only)
    log_level: str = "info"
    log_json: bool = False
    webhook_allow_cidrs: str = ""
    # Webhook delivery (see docs: durable, signed delivery).
    webhook_timeout: float = Field(15.0, gt=0, le=120)  # seconds per attempt
    webhook_lease_seconds: float = Field(30.0, gt=0, le=3600)  # claim lease, renewed while alive
    webhook_poll_seconds: float = Field(0.5, gt=0, le=60)
    webhook_max_in_flight: int = Field(512, ge=1, le=100_000)  # per worker process
    # Retry delays in seconds, comma-separated; empty = Svix's (5s 5m 30m 2h 5h 10h 10h).
    webhook_retry_schedule: str = ""
    webhook_worker: bool = True  # `ordercast run` delivers webhooks in-process
    # POS flow (price → commit → fire): how long a POS has to answer each webhook on its
    # callback before the order fails with TIMEOUT, and how often timers are looked for.
    pos_callback_timeout: float = Field(30.0, gt=0, le=24 * 3600)
    pos_timer_poll_seconds: float = Field(1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.mode == "production":
            missing = [
                name
                for name, value in (
                    ("ORDERCAST_ADMIN_TOKEN", self.admin_token),
                    ("ORDERCAST_SECRET_KEY", self.secret_key),
                )
                if not value or len(value) < 16
            ]
            if missing:
                raise ValueError(
                    "production mode needs " + " and ".join(missing) + " (at least 16 characters)"
                )
        return self

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.http_port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides (CLI flags)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc
