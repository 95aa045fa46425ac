"""Settings: parsed once at the edge from flags and ``ORDERCAST_*`` variables, then frozen."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ordercast.errors import ConfigError

#: The longest a dead node's presence members may stay listed (timeout + one heartbeat).
MAX_REAP_SECONDS = 30.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERCAST_", frozen=True, extra="ignore")

    mode: Literal["dev", "production"] = "dev"
    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    ws_port: int = Field(6001, ge=0, le=65535)
    database_url: str = "sqlite:///./ordercast.db"
    # PostgreSQL connections per node for order writes, claims and timers (plus a quarter of
    # that, twice in bursts, for the rest): 15 at most per node by default.
    database_pool_size: int = Field(10, ge=2, le=500)
    # Orders each node keeps as last committed, so that changing one skips reading back and
    # parsing its document: size it to the orders open at once (~4 KB each; 0 turns it off).
    order_cache_size: int = Field(20_000, ge=0, le=10_000_000)
    bus_url: str = "memory://"
    # Namespace of every Redis channel and key of this deployment (default: derived from the
    # Redis database number and the database URL, so the nodes of one deployment share it
    # and other deployments do not; see bus.default_prefix).
    bus_prefix: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$"
    )
    # Cluster mode (a redis:// bus): each node beats every cluster_heartbeat seconds; a node
    # silent for cluster_node_timeout seconds is reaped (its presence members removed).
    cluster_heartbeat: float = Field(2.0, gt=0, le=10)
    cluster_node_timeout: float = Field(10.0, gt=0, le=28)
    # Admin bearer token. Dev mode generates one on first start and keeps it in the database.
    admin_token: str | None = None
    # Key that signs user access tokens; dev mode generates and keeps one.
    secret_key: str | None = None
    # Public base URL used in resource links (``uri``/``log``); defaults to the HTTP address.
    public_url: str | None = None
    access_token_ttl: int = Field(3600, ge=60, le=30 * 24 * 3600)
    # OAuth2 refresh tokens (``POST /auth-oauth2/oauth/token``), default 30 days.
    refresh_token_ttl: int = Field(30 * 24 * 3600, ge=300, le=365 * 24 * 3600)
    # RSA private key (PEM) that signs JWT access tokens, inline or as a file path. Dev mode
    # generates one and keeps it in the database; production mode requires one.
    jwt_private_key: str | None = None
    jwt_private_key_file: str | None = None
    # argon2id cost for account passwords (argon2-cffi's defaults: 64 MiB, 3 passes).
    argon2_memory_kib: int = Field(65536, ge=8, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(3, ge=1, le=100)
    # TLS for both ports (HTTP API and WebSocket gateway): PEM certificate chain and key.
    tls_cert: str | None = None
    tls_key: str | None = None
    demo: bool = True  # create the demo tenant on an empty database (dev mode only)
    log_level: str = "info"
    log_json: bool = False
    webhook_allow_cidrs: str = ""
    # Proxies (comma-separated IPs or CIDRs) whose X-Forwarded-For is believed for the
    # client's address (the failed-login limits), on both ports. Loopback by default, as
    # uvicorn does: a balancer on this host (deploy/trial.py) passes the real client on.
    trusted_proxies: str = "127.0.0.1,::1"
    # Webhook delivery (see docs: durable, signed delivery).
    webhook_timeout: float = Field(15.0, gt=0, le=120)  # seconds per attempt
    webhook_lease_seconds: float = Field(30.0, gt=0, le=3600)  # claim lease, renewed while alive
    webhook_poll_seconds: float = Field(0.5, gt=0, le=60)
    # While busy, how long the worker lets freed room add up before its next claim (one
    # larger claim costs the database less than many small ones).
    webhook_coalesce_seconds: float = Field(0.02, ge=0, le=5)
    webhook_max_in_flight: int = Field(512, ge=1, le=100_000)  # per worker process
    # Retry delays in seconds, comma-separated; empty = Svix's (5s 5m 30m 2h 5h 10h 10h).
    webhook_retry_schedule: str = ""
    webhook_worker: bool = True  # `ordercast run` delivers webhooks in-process
    # Where an order change's webhook messages are rendered: "commit" in the order's own
    # transaction, or "worker": the transaction keeps the change (one row) and a delivery
    # worker renders it (SQL databases; the same on every node).
    outbox_render: Literal["commit", "worker"] = "commit"
    # `ordercast worker`'s /health and /metrics port (None: no port).
    worker_http_port: int | None = Field(None, ge=1, le=65535)
    # POS flow (price → commit → fire): how long a POS has to answer each webhook on its
    # callback before the order fails with TIMEOUT, and how often timers are looked for.
    pos_callback_timeout: float = Field(30.0, gt=0, le=24 * 3600)
    pos_timer_poll_seconds: float = Field(1.0, gt=0, le=60)
    # Hostile input (README "Security model"): request bodies past this are refused with
    # 413 before more is read; failed logins per (client address, credential) past
    # login_max_failures within login_window_seconds are refused with 429 / a STOMP ERROR.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # How long an idle keep-alive connection stays open on the HTTP port. Longer than the
    # pools of common clients (httpx and Node's agents expire idle connections after 4-5 s),
    # so a client never reuses a connection the server is closing at the same moment: a
    # POST on such a connection fails without an answer, and the client cannot know whether
    # it was applied. nginx's default is 75 s; uvicorn's own, 5 s, is that race.
    http_keep_alive_seconds: int = Field(75, ge=1, le=3600)
    login_max_failures: int = Field(10, ge=1, le=1_000_000)
    login_window_seconds: float = Field(60.0, gt=0, le=24 * 3600)

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
            if not (self.jwt_private_key or self.jwt_private_key_file):
                missing.append("ORDERCAST_JWT_PRIVATE_KEY (or ORDERCAST_JWT_PRIVATE_KEY_FILE)")
            if missing:
                raise ValueError(
                    "production mode needs " + " and ".join(missing) + " (at least 16 characters)"
                )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both ORDERCAST_TLS_CERT and ORDERCAST_TLS_KEY")
        return self

    @model_validator(mode="after")
    def _timeout_above_heartbeat(self) -> Settings:
        if self.cluster_node_timeout < 2 * self.cluster_heartbeat:
            raise ValueError(
                "ORDERCAST_CLUSTER_NODE_TIMEOUT must be at least twice ORDERCAST_CLUSTER_HEARTBEAT"
            )
        # A dead node's members are removed within timeout + one beat: keep that <= 30 s.
        if self.cluster_node_timeout + self.cluster_heartbeat > MAX_REAP_SECONDS:
            raise ValueError(
                "ORDERCAST_CLUSTER_NODE_TIMEOUT + ORDERCAST_CLUSTER_HEARTBEAT must be at most "
                f"{MAX_REAP_SECONDS:g} s (a dead node's presence members are removed within it)"
            )
        return self

    @property
    def prefix(self) -> str:
        """The namespace for Redis keys and channels, ending in ``:`` (see ``bus_prefix``)."""
        from ordercast.bus import default_prefix

        given = self.bus_prefix
        if given:
            return given if given.endswith(":") else given + ":"
        return default_prefix(self.bus_url, self.database_url)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket gateway's base URL (``ws://host:port``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.ws_port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides (CLI flags)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc
