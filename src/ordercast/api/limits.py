"""Request body limit: ``ORDERCAST_MAX_BODY_BYTES`` (1 MiB by default), as pure ASGI.

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
        limit = self.limit
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

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large(limit))
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
