"""Request limits at the edge, as pure ASGI: the body size, and no NUL characters.

**NUL characters** (``%00`` in the path or query, ``\\u0000`` in a JSON body) are refused
with 422: PostgreSQL's text type cannot hold them, so such a value would otherwise reach
the database and fail there (a 500). Nothing ordercast stores needs one.

**Body size**: ``ORDERCAST_MAX_BODY_BYTES`` (1 MiB by default).

A request announcing a larger ``Content-Length`` is answered 413 at once, before any of its
body is read (the connection is then closed: the unread body cannot be skipped). A body
without a length (chunked) is counted as it arrives; the chunk that crosses the limit
raises a 413 ``HTTPException`` out of ``receive``, which the app's handlers turn into
problem+json (FastAPI passes ``HTTPException`` from a body read through unchanged, as
the order-command endpoints of ``api/commands.py`` do), or which this middleware answers
itself if it comes out of the app before a response started.

Our own middleware rather than Starlette's ``max_body_size``: that one answers in
text/plain.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordercast.api.errors import problem

CODE = "payload_too_large"
NUL_IN_URL = "NUL characters (%00) are not allowed in the path or query"
NUL_IN_BODY = "NUL characters (\\u0000) are not allowed in request bodies"
_NUL_ESCAPE = b"\\u0000"


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (ORDERCAST_MAX_BODY_BYTES)"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            await problem(422, "validation_error", "Invalid request", NUL_IN_URL)(
                scope, receive, send
            )
            return
        limit = self.limit
        json_body = False
        for name, value in scope["headers"]:
            if name == b"content-type" and b"json" in value.lower():
                json_body = True
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    break  # the server refuses a malformed length before we see it
                if announced > limit:
                    response = problem(413, CODE, "Content too large", too_large(limit))
                    response.headers["connection"] = "close"
                    await response(scope, receive, send)
                    return
                break
        received = 0
        started = False
        tail = b""

        async def limited_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise HTTPException(413, too_large(limit))
                if json_body:
                    if _NUL_ESCAPE in tail + chunk[:5] or _NUL_ESCAPE in chunk:
                        raise HTTPException(422, NUL_IN_BODY)
                    tail = chunk[-5:]
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            response = problem(413, CODE, "Content too large", str(exc.detail))
            response.headers["connection"] = "close"
            await response(scope, receive, send)
