"""The order commands (transition, confirmation, notification, note, cancellation, a
courier job and its statuses): the trigger of every fan-out, served as plain Starlette
endpoints.

Why not FastAPI routes: on these routes FastAPI's routing and dependency solving are a
large share of the event loop's CPU per command (measured in process: the figures are in
docs/benchmarks.md, "Figures behind code comments" and the 2026-12-03 dinner-rush write
path). So :func:`routes` gives
Starlette ``Route`` objects that ``create_app`` puts before FastAPI's routes; each does, in
the open, what the FastAPI route does: read the body and parse it as JSON when the content
type says JSON (FastAPI's rules: ``application/json`` or ``application/*+json``; invalid
JSON is a 422 before authentication), authenticate the ``Authorization`` header
(:func:`ordercast.api.deps.authenticate`, as the ``PrincipalDep`` dependency does), validate
the body with the route's pydantic model, run the command and write the response JSON.
Errors are raised, and the app's exception handlers answer them as for any route.

The same routes are declared in ``api/orders.py`` as FastAPI routes calling the same
:data:`COMMANDS`: they give the OpenAPI document its operations and are the reference that
``tests/integration/test_api_commands.py`` compares these endpoints with, request for
request. FastAPI's ``dependency_overrides`` do not apply here: these endpoints have no dependencies.
"""

from __future__ import annotations

import email.message
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ordercast.api.deps import authenticate, runtime_of
from ordercast.api.schemas import (
    CancellationIn,
    ConfirmationIn,
    CourierStatusIn,
    DeliveryIn,
    NoteIn,
    NotificationIn,
    TransitionIn,
    iso_or_none,
)
from ordercast.domain.access import Principal
from ordercast.fastjson import dumps
from ordercast.runtime import Runtime
from ordercast.services.orders import CommandResult, order_resource

Run = Callable[[Runtime, Principal, str, Any], Awaitable[CommandResult]]
# (runtime, principal, the path's id, the validated body) -> the response document
Answer = Callable[[Runtime, Principal, str, Any], Awaitable[dict[str, Any]]]


def command_body(rt: Runtime, result: CommandResult) -> dict[str, Any]:
    """The response of every order command. Serialized at once, so the resources need not
    be deep copies (``copy=False``)."""
    body: dict[str, Any] = {
        "applied": result.applied,
        "outcome": result.outcome.value,
        "order": order_resource(result.order, rt.settings.base_url, copy=False),
        "events": [e.to_dict() for e in result.events],
    }
    if result.detail:
        body["detail"] = result.detail
    return body


async def transition(
    rt: Runtime, who: Principal, order_id: str, body: TransitionIn
) -> CommandResult:
    return await rt.orders.transition(
        who,
        order_id,
        to=body.to,
        reason=body.reason,
        how=body.how,
        errors=[e.model_dump() for e in body.errors] if body.errors else None,
        occurred_at=iso_or_none(body.occurred_at),
    )


async def confirm(
    rt: Runtime, who: Principal, order_id: str, body: ConfirmationIn
) -> CommandResult:
    return await rt.orders.confirm(
        who,
        order_id,
        confirmation=body.confirmation,
        reason=body.reason,
        adjustment=body.adjustment.model_dump(exclude_none=True) if body.adjustment else None,
    )


async def notify(rt: Runtime, who: Principal, order_id: str, body: NotificationIn) -> CommandResult:
    return await rt.orders.notify(who, order_id, type=body.type, message=body.message)


async def note(rt: Runtime, who: Principal, order_id: str, body: NoteIn) -> CommandResult:
    return await rt.orders.note(who, order_id, text=body.text)


async def cancel(rt: Runtime, who: Principal, order_id: str, body: CancellationIn) -> CommandResult:
    return await rt.orders.cancel(
        who, order_id, reason=body.reason, by=body.by, request_only=body.request_only
    )


async def start_delivery(
    rt: Runtime, who: Principal, order_id: str, body: DeliveryIn | None
) -> dict[str, Any]:
    """A courier job for the order: the new delivery, with the order and its events."""
    result, delivery_id = await rt.orders.start_delivery(
        who, order_id, provider=body.provider if body else None
    )
    resource = order_resource(result.order, rt.settings.base_url, copy=False)
    found = next(x for x in resource["deliveries"] if x["id"] == delivery_id)
    return {**found, "order": resource, "events": [e.to_dict() for e in result.events]}


async def courier_status(
    rt: Runtime, who: Principal, delivery_id: str, body: CourierStatusIn
) -> dict[str, Any]:
    """A courier's update: the command's answer, with the delivery."""
    result = await rt.orders.courier_update(
        who,
        delivery_id,
        status=body.status,
        occurred_at=iso_or_none(body.occurred_at),
        proof=body.proof if body.proof is not None else body.proof_delivery,
        refund=body.refund,
        location=body.location,
        eta=iso_or_none(body.eta),
    )
    answer = command_body(rt, result)
    answer["delivery"] = next(x for x in answer["order"]["deliveries"] if x["id"] == delivery_id)
    return answer


def _answered(run: Run) -> Answer:
    async def answer(rt: Runtime, who: Principal, target: str, body: Any) -> dict[str, Any]:
        return command_body(rt, await run(rt, who, target, body))

    return answer


@dataclass(frozen=True, slots=True)
class Command:
    path: str  # one path parameter: ``param``
    model: type[BaseModel]
    answer: Answer
    param: str = "order_id"
    status_code: int = 200
    # FastAPI's ``body: Model | None = None``: no body at all is None, not a 422.
    optional_body: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("/v1/orders/{order_id}/transitions", TransitionIn, _answered(transition)),
    Command("/v1/orders/{order_id}/confirmation", ConfirmationIn, _answered(confirm)),
    Command("/v1/orders/{order_id}/notifications", NotificationIn, _answered(notify)),
    Command("/v1/orders/{order_id}/notes", NoteIn, _answered(note)),
    Command("/v1/orders/{order_id}/cancellation", CancellationIn, _answered(cancel)),
    Command(
        "/v1/orders/{order_id}/deliveries",
        DeliveryIn,
        start_delivery,
        status_code=201,
        optional_body=True,
    ),
    Command(
        "/v1/deliveries/{delivery_id}/status",
        CourierStatusIn,
        courier_status,
        param="delivery_id",
    ),
)

_MISSING = object()


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct content types
def _is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _document(content_type: str | None, raw: bytes) -> Any:
    """The body as FastAPI hands it to validation: nothing, parsed JSON, or the raw bytes
    (a content type that is not JSON, or none: strict content types)."""
    if not raw:
        return _MISSING
    if not content_type or not _is_json(content_type):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from exc


def _validate(adapter: TypeAdapter[Any], document: Any) -> Any:
    if document is _MISSING:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return adapter.validate_python(document, from_attributes=True)  # as FastAPI validates
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        ) from exc


class CommandRoute(Route):
    """A Starlette route serving one :class:`Command` (POST only, no OpenAPI entry)."""

    def __init__(self, command: Command) -> None:
        model: Any = command.model | None if command.optional_body else command.model
        adapter: TypeAdapter[Any] = TypeAdapter(model)

        async def serve(request: Request) -> Response:
            try:
                raw = await request.body()
            except ClientDisconnect as exc:  # as FastAPI answers a body it could not read
                raise HTTPException(400, "There was an error parsing the body") from exc
            document = _document(request.headers.get("content-type"), raw)
            rt = runtime_of(request)
            client = request.client
            principal = await authenticate(
                rt,
                request.headers.get("authorization"),
                client.host if client is not None else "unknown",
            )
            if command.optional_body and document is _MISSING:
                body = None
            else:
                body = _validate(adapter, document)
            target = request.path_params[command.param]
            answer = await command.answer(rt, principal, target, body)
            # The answer is JSON data (an order resource, a result): orjson writes the same
            # compact JSON as pydantic's dump_json in under a quarter of the time (2 % of the
            # serving process in a rush: docs/benchmarks.md, session 13).
            content = dumps(answer)
            return Response(content, status_code=command.status_code, media_type="application/json")

        super().__init__(command.path, serve, methods=["POST"], include_in_schema=False)
        self.command = command

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's router records only its own routes in the scope; the request metrics
        # (and logs) label a request by the route template found there.
        scope["route"] = self
        await super().handle(scope, receive, send)


def routes() -> list[Route]:
    return [CommandRoute(c) for c in COMMANDS]
