"""Structured logs (structlog over the standard library's logging).

One line per HTTP request (:class:`RequestLog`), per WebSocket connection opened and closed
(:func:`ws_opened`, :func:`ws_closed`) and per webhook delivery attempt (the delivery
worker), each with the request id, tenant and app where known. ``--log-json`` (or
``ORDERCAST_LOG_JSON=1``) renders each line as one JSON object; otherwise ``key=value``
text. Every other module keeps using ``logging.getLogger(__name__)``: those records go
through the same renderer.

Secrets never reach a log line: request paths are logged without their query string (the
Open Dining auth endpoint takes ``secret`` and ``access_token`` there), webhook URLs
without theirs, headers are never logged, and :func:`redact` masks any field whose name
says it holds a secret and any value that looks like an ordercast credential.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordercast.domain.access import Admin, AppPrincipal, Principal
from ordercast.services.common import new_id

__all__ = [
    "REQUEST",
    "RequestLog",
    "bind_principal",
    "configure_logging",
    "logger",
    "redact",
    "safe_url",
    "ws_closed",
    "ws_opened",
]

#: Fields of the HTTP request being served (request id, then tenant and app once the
#: caller is authenticated). A mutable dict so that what the authentication dependency
#: adds is seen by the middleware's closing log line.
REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("ordercast_request", default=None)

_SECRET_NAMES = re.compile(r"secret|token|password|passcode|authorization|signature", re.I)
# ordercast's credentials: admin token, app secret, user access token, webhook secret.
_SECRET_VALUES = re.compile(r"\b(oca_|ocs_|oct_|whsec_)[A-Za-z0-9_\-.]{6,}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def _merge_request(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    fields = REQUEST.get()
    if fields:
        for key, value in fields.items():
            event.setdefault(key, value)
    return event


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secret-named fields and credential-looking values (a processor)."""
    for key, value in event.items():
        if key != "event" and _SECRET_NAMES.search(key):
            event[key] = "[redacted]"
        elif isinstance(value, str) and _SECRET_VALUES.search(value):
            event[key] = _SECRET_VALUES.sub(lambda m: m.group(1) + "[redacted]", value)
    return event


def configure_logging(level: str = "info", *, json_lines: bool = False) -> None:
    """Route every log record (ordercast's, uvicorn's, libraries') through structlog's
    renderer on stderr: JSON lines or readable ``key=value`` text."""
    shared: list[Any] = [
        structlog.stdlib.filter_by_level,  # first: a filtered line costs almost nothing
        structlog.contextvars.merge_contextvars,
        _merge_request,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # ``logger`` keeps its own, reset below
    )
    _LOGGERS.clear()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared[1:],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ordercast", False):
            root.removeHandler(old)
    handler._ordercast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("picows").setLevel(logging.WARNING)  # one line per socket otherwise


def _default_config() -> None:
    """Until ``configure_logging`` runs (tests, library use), structlog lines go to the
    standard library's logging as ``key=value`` text, at its levels (so they are quiet
    unless logging is set up), never straight to stdout."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            _merge_request,
            redact,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


_default_config()


_LOGGERS: dict[str, Any] = {}


def logger(name: str) -> Any:
    """A structlog logger (``log.info("event", key=value, ...)``) bound to the current
    configuration; call it where you log (a dict lookup), not once at import time."""
    found = _LOGGERS.get(name)
    if found is None:
        found = _LOGGERS[name] = structlog.stdlib.get_logger(name).bind()
    return found


def safe_url(url: str) -> str:
    """``url`` without its query string, fragment and user info (they may hold secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[unparseable url]"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def bind_principal(principal: Principal) -> None:
    """Record who the current HTTP request is from (called by authentication)."""
    fields = REQUEST.get()
    if fields is None:
        return
    if isinstance(principal, Admin):
        fields["principal"] = "admin"
        return
    fields["tenant"] = principal.tenant_id
    fields["app"] = principal.app_id
    fields["principal"] = "app" if isinstance(principal, AppPrincipal) else "user"


class RequestLog:
    """Pure ASGI middleware: one log line per HTTP request, with a request id (the
    client's ``X-Request-Id`` if it is a plain token, else a new one, echoed in the
    response), method, path (no query string), route template, status, duration, and the
    tenant and app of an authenticated caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.fullmatch(text):
                    request_id = text
                break
        if request_id is None:
            request_id = new_id().upper()  # a ULID, as python-ulid spells it
        fields: dict[str, Any] = {"request_id": request_id}
        token = REQUEST.set(fields)
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log = logger("ordercast.http")
            if log.isEnabledFor(logging.INFO):  # else not even the line's fields are made
                route = getattr(scope.get("route"), "path", None) or scope.get("ordercast.route")
                # (HttpMetrics, inside this middleware, resolved plain routes and mounts.)
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=route or "unmatched",
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            REQUEST.reset(token)


def ws_opened(protocol: str, conn_id: str, *, app: str | None, tenant: str | None) -> None:
    logger("ordercast.ws").info("ws.open", protocol=protocol, conn=conn_id, app=app, tenant=tenant)


def ws_closed(
    protocol: str,
    conn_id: str,
    *,
    app: str | None,
    tenant: str | None,
    seconds: float,
    subscriptions: int,
    reason: str | None = None,
) -> None:
    logger("ordercast.ws").info(
        "ws.close",
        protocol=protocol,
        conn=conn_id,
        app=app,
        tenant=tenant,
        duration_s=round(seconds, 3),
        subscriptions=subscriptions,
        reason=reason,
    )
