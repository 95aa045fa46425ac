"""The one exception tree of ordercast.

Every error raised by ordercast code derives from :class:`OrdercastError` and carries a
stable, wire-independent ``code``. Nothing here knows about HTTP status codes, Pusher close
codes or STOMP frames: each edge (``api/``, ``gateway/``) maps these classes to its own wire
format in one table.

::

    OrdercastError
    ├── ValidationError            code=validation_error      input that can never be accepted
    ├── AuthError
    │   ├── Unauthorized           code=unauthorized          who are you?
    │   └── Forbidden              code=forbidden             not yours
    ├── NotFound                   code=not_found             unknown, or another tenant's
    ├── Conflict                   code=conflict              state does not allow it now
    │   ├── InvalidTransition      code=invalid_transition    lifecycle move not allowed
    │   ├── WrongPhase             code=wrong_phase           POS callback for another phase
    │   └── StaleVersion           code=stale_version         optimistic version is not current
    ├── RateLimited                code=rate_limited
    ├── ProtocolError              code=protocol_error        a wire peer broke the protocol
    ├── ConfigError                code=config_error          bad settings, fail fast
    └── StorageError               code=storage_error         the database failed a statement
        ├── IntegrityViolation     code=integrity_violation   a constraint refused a write
        ├── StorageBusy            code=storage_busy          locked by another process: retry
        └── StorageUnavailable     code=storage_unavailable   connection lost or refused

The storage errors are raised by the one translation function of each database driver
(``storage/connector.py``; the SQLAlchemy engine's connection failures go through it too).
The edges answer ``StorageUnavailable`` and ``StorageBusy`` (:data:`TRY_AGAIN_LATER`) as
"try again later", any other storage error as an internal error (HTTP 500, logged).
"""

from __future__ import annotations

from typing import Any


class OrdercastError(Exception):
    """Root of every ordercast error."""

    code: str = "error"
    title: str = "Error"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        # Structured, JSON-safe extra fields that edges may expose (e.g. current state).
        self.fields: dict[str, Any] = fields


class ValidationError(OrdercastError):
    code = "validation_error"
    title = "Invalid request"


class AuthError(OrdercastError):
    code = "auth_error"
    title = "Authentication failed"


class Unauthorized(AuthError):
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(AuthError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(OrdercastError):
    code = "not_found"
    title = "Not found"


class Conflict(OrdercastError):
    code = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Invalid transition"


class WrongPhase(Conflict):
    code = "wrong_phase"
    title = "Wrong phase"


class StaleVersion(Conflict):
    code = "stale_version"
    title = "Stale version"


class RateLimited(OrdercastError):
    code = "rate_limited"
    title = "Too many requests"

    @property
    def retry_after(self) -> int:
        """Seconds to wait before trying again: every edge's ``Retry-After``."""
        return int(self.fields.get("retry_after", 60))


class ProtocolError(OrdercastError):
    code = "protocol_error"
    title = "Protocol error"


class ConfigError(OrdercastError):
    code = "config_error"
    title = "Configuration error"


class StorageError(OrdercastError):
    code = "storage_error"
    title = "Storage error"


class IntegrityViolation(StorageError):
    """``table`` and ``constraint`` as the database names them: PostgreSQL names both;
    SQLite names the table and the columns (``constraint``: "events.order_id,
    events.seq"), and neither for a foreign key."""

    code = "integrity_violation"
    title = "Integrity violation"

    def __init__(
        self, detail: str, *, table: str | None = None, constraint: str | None = None
    ) -> None:
        super().__init__(detail)
        self.table = table
        self.constraint = constraint


class StorageBusy(StorageError):
    code = "storage_busy"
    title = "Storage busy"


class StorageUnavailable(StorageError):
    code = "storage_unavailable"
    title = "Storage unavailable"


#: The storage errors that say "try again later": the database could not be reached, or a
#: SQLite file stayed locked by another process. Nothing was written; every edge answers
#: them in its own way of saying so (HTTP 503 with Retry-After, a Pusher 4100 or a
#: subscription error, a STOMP ERROR and WebSocket close 1013).
TRY_AGAIN_LATER: tuple[type[StorageError], ...] = (StorageUnavailable, StorageBusy)


class OAuthError(OrdercastError):
    """An OAuth2 token request refused (RFC 6749 section 5.2). ``error`` is the RFC's code
    (``invalid_request``, ``invalid_client``, ``invalid_grant``, ``unauthorized_client``,
    ``unsupported_grant_type``, ``invalid_scope``); the token endpoint renders
    ``{"error", "error_description"}``, 401 for ``invalid_client``, else 400."""

    code = "oauth_error"
    title = "OAuth2 token request refused"

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail, error=error)
        self.error = error
