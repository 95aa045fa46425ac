"""Server side of one STOMP connection as a sans-I/O state machine.

The adapter feeds received WebSocket payloads to :meth:`StompSession.receive_data`, drains
typed events with :meth:`~StompSession.events_received`, answers the ones that need a decision
(:class:`ConnectRequested` → :meth:`~StompSession.accept_connect` or
:meth:`~StompSession.reject`; :class:`SubscribeRequested` →
:meth:`~StompSession.accept_subscription` or :meth:`~StompSession.reject`), writes every item of
:meth:`~StompSession.data_to_send` as one WebSocket message, and closes the socket with
:attr:`~StompSession.close_request` once it is set and the data is flushed. Timers go through
:meth:`~StompSession.next_deadline` / :meth:`~StompSession.on_timer`; times are seconds on
any monotonic clock, always passed in. This is the vocabulary of
:class:`~ordercast.protocols.session.ProtocolSession`, shared with the Pusher session.

Frames are processed one at a time: while a CONNECT or SUBSCRIBE awaits the adapter's
decision, later frames stay buffered (bounded by ``max_pending_bytes``), so receipts and
events keep the client's order and the adapter never sees a SUBSCRIBE before CONNECTED.

Every protocol violation produces an ERROR frame (``message``, ``content-type: text/plain``,
``content-length``, ``receipt-id`` when the offending frame carried ``receipt``) followed by
closing with the WebSocket close code of its :class:`ErrorReason`;
:meth:`~StompSession.receive_data` never raises. The close frame carries no reason text:
the ERROR frame says why.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from ordercast.errors import ProtocolError
from ordercast.protocols.session import CloseRequest, WebSocketCloseCode

from .frames import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_HEADER_LINE,
    DEFAULT_MAX_HEADERS,
    Frame,
    FrameParser,
    FrameTooLarge,
    serialize,
)
from .messages import EncodedMessage, subscription_prefix

if TYPE_CHECKING:
    from ordercast.protocols.session import ProtocolSession

__all__ = [
    "ACK_MODES",
    "HEARTBEAT_EOL",
    "SUPPORTED_VERSIONS",
    "AckReceived",
    "ConnectRequested",
    "DisconnectRequested",
    "ErrorReason",
    "ErrorSent",
    "Event",
    "NackReceived",
    "SessionConfig",
    "SessionState",
    "StompSession",
    "SubscribeRequested",
    "Subscription",
    "UnsubscribeRequested",
    "negotiate_heartbeat",
    "negotiate_version",
    "select_subprotocol",
]

SUPPORTED_VERSIONS: tuple[str, ...] = ("1.2", "1.1", "1.0")
ACK_MODES = frozenset({"auto", "client", "client-individual"})
HEARTBEAT_EOL = b"\n"

_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
_HEART_BEAT = re.compile(r"\s*(\d{1,9})\s*,\s*(\d{1,9})\s*")


# -- negotiation helpers ------------------------------------------------------------------------


def select_subprotocol(offered: Iterable[str]) -> str | None:
    """The WebSocket subprotocol to echo: the best of ``v12/v11/v10.stomp`` the client offered.

    ``offered`` may hold raw ``Sec-WebSocket-Protocol`` values (comma-separated). Returns None
    when the client offered none of them: then the response must carry no subprotocol header.
    """
    tokens = {token.strip() for value in offered for token in value.split(",")}
    for name in _SUBPROTOCOLS:
        if name in tokens:
            return name
    return None


def negotiate_version(
    accept_version: Iterable[str], supported: Iterable[str] = SUPPORTED_VERSIONS
) -> str | None:
    """The highest version both sides accept, or None."""
    common = set(accept_version) & set(supported)
    if not common:
        return None
    return max(common, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))


def negotiate_heartbeat(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """``(server_to_client_ms, client_to_server_ms)``; 0 means no heart-beats that way.

    Each side's ``(cx, cy)`` is "I can send every cx ms, I want to receive every cy ms".
    """
    cx, cy = client
    sx, sy = server
    outgoing = 0 if sx == 0 or cy == 0 else max(sx, cy)
    incoming = 0 if cx == 0 or sy == 0 else max(cx, sy)
    return outgoing, incoming


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """CONNECT or STOMP received; answer with ``accept_connect()`` or ``reject()``."""

    command: str
    login: str | None
    passcode: str | None
    host: str | None
    accept_version: tuple[str, ...]
    heart_beat: tuple[int, int]
    version: str
    """The version that will be used if accepted (already negotiated)."""
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SubscribeRequested:
    """SUBSCRIBE received; answer with ``accept_subscription(id)`` or ``reject()``.

    ``headers`` hold every header (first occurrence wins), custom ones such as ``x-since-seq``
    or ``x-venue`` included.
    """

    id: str
    destination: str
    ack: str
    headers: Mapping[str, str]
    receipt: str | None


@dataclass(frozen=True, slots=True)
class UnsubscribeRequested:
    """An accepted subscription was removed; the adapter drops it from its fan-out registry."""

    id: str
    destination: str
    receipt: str | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """ACK received. ``message_ids`` lists the messages it settled (empty when it matched
    nothing, e.g. an ACK on an ``auto`` subscription)."""

    id: str
    subscription: str | None
    message_ids: tuple[str, ...]
    receipt: str | None


@dataclass(frozen=True, slots=True)
class NackReceived:
    """NACK received; same fields as :class:`AckReceived`."""

    id: str
    subscription: str | None
    message_ids: tuple[str, ...]
    receipt: str | None


@dataclass(frozen=True, slots=True)
class DisconnectRequested:
    """DISCONNECT received; the RECEIPT (if asked for) is queued and the session is closing."""

    receipt: str | None


class ErrorReason(enum.StrEnum):
    """Why the session sent ERROR: a stable code for logs and metrics (its value), and the
    WebSocket close code that follows the ERROR frame (:attr:`close_code`)."""

    MALFORMED_FRAME = "malformed_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    NOT_CONNECTED = "not_connected"
    ALREADY_CONNECTED = "already_connected"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_HEADER = "invalid_header"
    MISSING_HEADER = "missing_header"
    BODY_NOT_ALLOWED = "body_not_allowed"
    SEND_NOT_SUPPORTED = "send_not_supported"
    TRANSACTIONS_NOT_SUPPORTED = "transactions_not_supported"
    UNKNOWN_COMMAND = "unknown_command"
    DUPLICATE_SUBSCRIPTION = "duplicate_subscription"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    TOO_MANY_UNACKED = "too_many_unacked"
    TOO_MUCH_PENDING_DATA = "too_much_pending_data"
    CONNECT_TIMEOUT = "connect_timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    EXPIRED = "expired"
    REJECTED = "rejected"
    """From :meth:`StompSession.reject`."""
    ERROR = "error"
    """From :meth:`StompSession.fail`, which names its own close code."""
    INTERNAL_ERROR = "internal_error"

    @property
    def close_code(self) -> WebSocketCloseCode:
        """1002 (protocol error) unless the reason is one of the few that say otherwise."""
        return _CLOSE_CODES.get(self, WebSocketCloseCode.PROTOCOL_ERROR)


_CLOSE_CODES = {
    ErrorReason.REJECTED: WebSocketCloseCode.POLICY_VIOLATION,
    ErrorReason.EXPIRED: WebSocketCloseCode.POLICY_VIOLATION,
    ErrorReason.ERROR: WebSocketCloseCode.POLICY_VIOLATION,
    ErrorReason.FRAME_TOO_LARGE: WebSocketCloseCode.MESSAGE_TOO_BIG,
    ErrorReason.HEARTBEAT_TIMEOUT: WebSocketCloseCode.GOING_AWAY,
    ErrorReason.CONNECT_TIMEOUT: WebSocketCloseCode.POLICY_VIOLATION,
    ErrorReason.INTERNAL_ERROR: WebSocketCloseCode.INTERNAL_ERROR,
}


@dataclass(frozen=True, slots=True)
class ErrorSent:
    """An ERROR frame was queued and the session is closing (see
    :attr:`StompSession.close_request` for the close code)."""

    reason: ErrorReason
    message: str
    detail: str


Event = (
    ConnectRequested
    | SubscribeRequested
    | UnsubscribeRequested
    | AckReceived
    | NackReceived
    | DisconnectRequested
    | ErrorSent
)


# -- session ------------------------------------------------------------------------------------


class SessionState(enum.Enum):
    AWAITING_CONNECT = "awaiting_connect"
    """Nothing but heart-beats received yet."""
    CONNECTING = "connecting"
    """CONNECT received; waiting for accept_connect() / reject()."""
    CONNECTED = "connected"
    CLOSING = "closing"
    """ERROR or DISCONNECT handled: flush data_to_send(), then perform close_request."""
    CLOSED = "closed"
    """connection_lost() was called."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    versions: tuple[str, ...] = SUPPORTED_VERSIONS
    heart_beat: tuple[int, int] = (10_000, 10_000)
    """The server's own ``(can send every ms, wants to receive every ms)``."""
    heartbeat_tolerance: float = 2.0
    """Close when the client is silent for this many negotiated intervals."""
    connect_timeout: float | None = 60.0
    """Seconds from construction (``now``) to the CONNECT frame."""
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_line: int = DEFAULT_MAX_HEADER_LINE
    max_subscriptions: int = 64
    max_unacked: int = 1024
    """Per session, across client-ack subscriptions."""
    max_pending_bytes: int = 256 * 1024
    """Data buffered while a decision (CONNECT, SUBSCRIBE) is pending."""
    server: str | None = "ordercast"


@dataclass(slots=True)
class Subscription:
    """An accepted subscription (read it; the session owns it).

    Hot path for ``ack == "auto"``: ``sub.prefix + message.tail`` (``raw_tail`` if not
    ``sub.escape``) is the MESSAGE frame; client-ack modes go through
    :meth:`StompSession.message_frame`.
    """

    id: str
    destination: str
    ack: str
    headers: Mapping[str, str]
    prefix: bytes
    escape: bool
    unacked: dict[str, str] = field(default_factory=dict)
    """ack id → message id, oldest first (client-ack modes only)."""


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class StompSession:
    """One server-side STOMP session. See the module docstring for the adapter's loop."""

    def __init__(self, config: SessionConfig | None = None, *, now: float | None = None) -> None:
        self.config = config = config or SessionConfig()
        self._state = SessionState.AWAITING_CONNECT
        self._close_request: CloseRequest | None = None
        self._parser = FrameParser(
            max_frame_size=config.max_frame_size,
            max_headers=config.max_headers,
            max_header_line=config.max_header_line,
        )
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._awaiting: ConnectRequested | SubscribeRequested | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._ack_owner: dict[str, str] = {}  # ack id → subscription id
        self._ack_counter = 0
        self._escape = False  # header escaping for outgoing non-CONNECTED frames
        self._version: str | None = None
        self._tx_interval = 0.0  # seconds; 0 = no heart-beats
        self._rx_interval = 0.0
        self._last_tx = 0.0
        self._last_rx = 0.0
        self._rx_unstamped = False
        self._expires_at: float | None = None
        self._expiry_message = "session expired"
        self._connect_deadline: float | None = None
        if now is not None and config.connect_timeout is not None:
            self._connect_deadline = now + config.connect_timeout
        self._handlers: dict[str, Callable[[Frame], None]] = {
            "SUBSCRIBE": self._on_subscribe,
            "UNSUBSCRIBE": self._on_unsubscribe,
            "ACK": self._on_ack,
            "NACK": self._on_ack,
            "DISCONNECT": self._on_disconnect,
        }

    # -- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def close_request(self) -> CloseRequest | None:
        """None while open; after ERROR or DISCONNECT, the close to perform once
        :meth:`data_to_send` is flushed (its reason is empty: the ERROR frame says why)."""
        return self._close_request

    @property
    def _finished(self) -> bool:
        """Closing or closed: nothing more is read or sent."""
        return self._state in (SessionState.CLOSING, SessionState.CLOSED)

    @property
    def version(self) -> str | None:
        """The negotiated STOMP version once connected."""
        return self._version

    @property
    def heartbeat(self) -> tuple[int, int]:
        """Negotiated ``(server_to_client_ms, client_to_server_ms)``; 0 = none."""
        return round(self._tx_interval * 1000), round(self._rx_interval * 1000)

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """Accepted subscriptions by id (read-only view)."""
        return MappingProxyType(self._subscriptions)

    @property
    def awaiting(self) -> ConnectRequested | SubscribeRequested | None:
        """The request waiting for the adapter's decision, if any."""
        return self._awaiting

    # -- input ----------------------------------------------------------------------------------

    def receive_data(
        self, data: bytes | bytearray | memoryview | str, now: float | None = None
    ) -> None:
        """Feed one received chunk (a WebSocket message, text or binary). Never raises.

        ``now`` stamps the client's liveness precisely; without it liveness is stamped at the
        next :meth:`on_timer` (which can only delay, never hasten, a heart-beat timeout).
        """
        if now is not None:
            self._last_rx = max(self._last_rx, now)
            self._rx_unstamped = False
        else:
            self._rx_unstamped = True
        if self._finished:
            return
        self._parser.feed(data)
        self._process()

    def events_received(self) -> list[Event]:
        """Drain the events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Drain outgoing data: each item is one STOMP frame (or a heart-beat EOL), suitable
        for one WebSocket message. Send UTF-8 payloads as text messages."""
        out, self._out = self._out, []
        return out

    def connection_lost(self) -> None:
        """The socket is gone; the session becomes CLOSED and ignores everything (with no
        :attr:`close_request`: there is no socket left to close)."""
        self._state = SessionState.CLOSED
        self._awaiting = None

    # -- decisions ------------------------------------------------------------------------------

    def accept_connect(
        self,
        *,
        now: float,
        session_id: str | None = None,
        heart_beat: tuple[int, int] | None = None,
        server: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        expires_at: float | None = None,
        expiry_message: str = "session expired",
    ) -> None:
        """Answer the pending CONNECT with CONNECTED.

        ``heart_beat`` overrides the config's server pair; ``server`` the config's server
        header. ``headers`` are extra CONNECTED headers (e.g. ``user-name``). At ``expires_at``
        (e.g. the token's ``exp``) the session sends ERROR ``expiry_message`` and closes.
        A no-op if the session is already closing; RuntimeError if no CONNECT is pending.
        """
        if self._finished:
            return
        pending = self._awaiting
        if self._state is not SessionState.CONNECTING or not isinstance(pending, ConnectRequested):
            raise RuntimeError("accept_connect() without a pending CONNECT")
        server_hb = heart_beat if heart_beat is not None else self.config.heart_beat
        tx_ms, rx_ms = negotiate_heartbeat(pending.heart_beat, server_hb)
        response = [("version", pending.version), ("heart-beat", f"{server_hb[0]},{server_hb[1]}")]
        if session_id is not None:
            response.append(("session", session_id))
        server_name = server if server is not None else self.config.server
        if server_name is not None:
            response.append(("server", server_name))
        response.extend(headers)
        encoded = serialize(Frame("CONNECTED", response))  # ValueError on CR/LF in a value
        self._out.append(encoded)
        self._state = SessionState.CONNECTED
        self._awaiting = None
        self._version = pending.version
        self._escape = pending.version != "1.0"
        self._parser.unescape = self._escape
        self._tx_interval = tx_ms / 1000
        self._rx_interval = rx_ms / 1000
        self._last_tx = now
        self._last_rx = max(self._last_rx, now)
        self._rx_unstamped = False
        self._expires_at = expires_at
        self._expiry_message = expiry_message
        self._process()

    def accept_subscription(self, id: str) -> Subscription | None:
        """Register the pending SUBSCRIBE ``id``; sends its RECEIPT if one was asked for.

        Returns the :class:`Subscription` (None if the session is already closing);
        RuntimeError if ``id`` is not the pending SUBSCRIBE.
        """
        if self._finished:
            return None
        pending = self._awaiting
        if not isinstance(pending, SubscribeRequested) or pending.id != id:
            raise RuntimeError(f"accept_subscription({id!r}) without that SUBSCRIBE pending")
        subscription = Subscription(
            id=pending.id,
            destination=pending.destination,
            ack=pending.ack,
            headers=pending.headers,
            prefix=subscription_prefix(pending.id, escape=self._escape),
            escape=self._escape,
        )
        self._subscriptions[pending.id] = subscription
        self._awaiting = None
        if pending.receipt is not None:
            self._send_receipt(pending.receipt)
        self._process()
        return subscription

    def reject(self, message: str, detail: str = "") -> None:
        """Refuse the pending CONNECT or SUBSCRIBE: ERROR (with its ``receipt-id``), closing.

        Without anything pending it is :meth:`fail` with 1008 (policy violation).
        """
        pending = self._awaiting
        receipt = pending.receipt if isinstance(pending, SubscribeRequested) else None
        self._fail(ErrorReason.REJECTED, message, detail, receipt_id=receipt)

    def fail(
        self,
        code: int,
        message: str,
        detail: str = "",
        *,
        receipt_id: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send an ERROR frame and ask for a close with ``code`` (e.g. server shutdown,
        lost authorization). A no-op once the session is closing."""
        self._fail(
            ErrorReason.ERROR, message, detail, receipt_id=receipt_id, headers=headers, code=code
        )

    # -- fan-out --------------------------------------------------------------------------------

    def message_frame(self, subscription_id: str, message: EncodedMessage) -> bytes | None:
        """The MESSAGE bytes for one of this session's subscriptions, or None when the
        subscription is unknown or the session is closing.

        For client-ack modes an ``ack`` header is added and the message is tracked until
        ACK/NACK; more than ``max_unacked`` outstanding messages fail the session (ERROR).
        """
        if self._state is not SessionState.CONNECTED:
            return None
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            return None
        if sub.ack == "auto":
            return sub.prefix + (message.tail if sub.escape else message.raw_tail)
        if len(self._ack_owner) >= self.config.max_unacked:
            self._fail(
                ErrorReason.TOO_MANY_UNACKED,
                "too many unacknowledged messages",
                f"more than {self.config.max_unacked} messages are waiting for ACK/NACK",
            )
            return None
        self._ack_counter += 1
        ack_id = str(self._ack_counter)
        sub.unacked[ack_id] = message.message_id
        self._ack_owner[ack_id] = sub.id
        return message.splice(sub.prefix, ack_id, escape=sub.escape)

    def unacked_count(self, subscription_id: str | None = None) -> int:
        """Messages awaiting ACK/NACK, for one subscription or the whole session."""
        if subscription_id is None:
            return len(self._ack_owner)
        sub = self._subscriptions.get(subscription_id)
        return len(sub.unacked) if sub is not None else 0

    # -- timers ---------------------------------------------------------------------------------

    def mark_sent(self, now: float) -> None:
        """Optional: tell the session data went out at ``now`` (e.g. fan-out MESSAGE frames
        written directly), which postpones the next outgoing heart-beat."""
        self._last_tx = max(self._last_tx, now)

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called, or None if no timer is needed."""
        deadlines: list[float] = []
        if self._state is SessionState.AWAITING_CONNECT:
            if self._connect_deadline is not None:
                deadlines.append(self._connect_deadline)
        elif self._state is SessionState.CONNECTED:
            if self._tx_interval:
                deadlines.append(self._last_tx + self._tx_interval)
            if self._rx_interval:
                deadlines.append(
                    self._last_rx + self._rx_interval * self.config.heartbeat_tolerance
                )
            if self._expires_at is not None:
                deadlines.append(self._expires_at)
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> None:
        """Run due timers: connect timeout, expiry, client silence, outgoing heart-beat."""
        if self._state is SessionState.AWAITING_CONNECT:
            if self._connect_deadline is not None and now >= self._connect_deadline:
                self._fail(
                    ErrorReason.CONNECT_TIMEOUT,
                    "no CONNECT frame received in time",
                    f"a CONNECT frame is expected within {self.config.connect_timeout} s",
                )
            return
        if self._state is not SessionState.CONNECTED:
            return
        if self._expires_at is not None and now >= self._expires_at:
            self._fail(
                ErrorReason.EXPIRED, self._expiry_message, "reconnect with fresh credentials"
            )
            return
        if self._rx_interval:
            if self._rx_unstamped:
                self._last_rx = max(self._last_rx, now)
                self._rx_unstamped = False
            limit = self._rx_interval * self.config.heartbeat_tolerance
            if now - self._last_rx >= limit:
                self._fail(
                    ErrorReason.HEARTBEAT_TIMEOUT,
                    "heart-beat timeout",
                    f"nothing received for {now - self._last_rx:.1f} s "
                    f"(negotiated client heart-beat {self._rx_interval:g} s)",
                )
                return
        if self._tx_interval and now >= self._last_tx + self._tx_interval:
            self._out.append(HEARTBEAT_EOL)
            self._last_tx = now

    # -- frame processing -----------------------------------------------------------------------

    def _process(self) -> None:
        try:
            self._process_frames()
        except Exception:  # receive_data() never raises; a bug must not kill the event loop
            self._fail(ErrorReason.INTERNAL_ERROR, "internal server error", "")

    def _process_frames(self) -> None:
        while self._awaiting is None and self._state in (
            SessionState.AWAITING_CONNECT,
            SessionState.CONNECTED,
        ):
            try:
                frame = self._parser.next_frame()
            except FrameTooLarge as exc:
                self._fail(ErrorReason.FRAME_TOO_LARGE, "frame too large", exc.detail)
                return
            except ProtocolError as exc:
                self._fail(ErrorReason.MALFORMED_FRAME, "malformed frame", exc.detail)
                return
            if frame is None:
                return
            self._handle(frame)
        if self._awaiting is not None and self._parser.buffered > self.config.max_pending_bytes:
            self._fail(
                ErrorReason.TOO_MUCH_PENDING_DATA,
                "too much data while a request is pending",
                f"more than {self.config.max_pending_bytes} octets sent before a reply",
            )

    def _handle(self, frame: Frame) -> None:
        command = frame.command
        receipt = frame.get("receipt")
        if self._state is SessionState.AWAITING_CONNECT:
            if command in ("CONNECT", "STOMP"):
                self._on_connect(frame)
            else:
                self._fail(
                    ErrorReason.NOT_CONNECTED,
                    "expected a CONNECT frame",
                    f"received {command[:40]} before CONNECT",
                    receipt_id=receipt,
                )
            return
        handler = self._handlers.get(command)
        if handler is None:
            self._on_unsupported(frame, receipt)
            return
        if frame.body:
            self._fail(
                ErrorReason.BODY_NOT_ALLOWED,
                f"{command} frames must not have a body",
                f"{command} frame carried {len(frame.body)} body octets",
                receipt_id=receipt,
            )
            return
        handler(frame)

    def _on_unsupported(self, frame: Frame, receipt: str | None) -> None:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            self._fail(ErrorReason.ALREADY_CONNECTED, "already connected", "", receipt_id=receipt)
        elif command == "SEND":
            destination = frame.get("destination") or ""
            self._fail(
                ErrorReason.SEND_NOT_SUPPORTED,
                "SEND is not supported",
                f"this server only delivers messages; clients cannot publish to "
                f"{destination[:200]!r}",
                receipt_id=receipt,
            )
        elif command in ("BEGIN", "COMMIT", "ABORT"):
            self._fail(
                ErrorReason.TRANSACTIONS_NOT_SUPPORTED,
                "transactions are not supported",
                f"{command} is not supported by this server",
                receipt_id=receipt,
            )
        else:
            self._fail(
                ErrorReason.UNKNOWN_COMMAND,
                "unknown command",
                f"{command[:40]!r} is not a STOMP client command",
                receipt_id=receipt,
            )

    def _on_connect(self, frame: Frame) -> None:
        if frame.body:
            self._fail(
                ErrorReason.BODY_NOT_ALLOWED, f"{frame.command} frames must not have a body", ""
            )
            return
        raw_versions = frame.get("accept-version")
        if raw_versions is None:
            accept: tuple[str, ...] = ("1.0",)
        else:
            accept = tuple(v.strip() for v in raw_versions.split(",") if v.strip())
        version = negotiate_version(accept, self.config.versions)
        if version is None:
            supported = ",".join(self.config.versions)
            self._fail(
                ErrorReason.UNSUPPORTED_VERSION,
                "unsupported STOMP version",
                f"supported protocol versions are {supported}",
                headers=[("version", supported)],
            )
            return
        raw_hb = frame.get("heart-beat")
        heart_beat = (0, 0)
        if raw_hb is not None:
            match = _HEART_BEAT.fullmatch(raw_hb)
            if match is None:
                self._fail(
                    ErrorReason.INVALID_HEADER,
                    "invalid heart-beat header",
                    f"heart-beat must be '<ms>,<ms>', got {raw_hb[:40]!r}",
                )
                return
            heart_beat = (int(match.group(1)), int(match.group(2)))
        self._connect_deadline = None
        event = ConnectRequested(
            command=frame.command,
            login=frame.get("login"),
            passcode=frame.get("passcode"),
            host=frame.get("host"),
            accept_version=accept,
            heart_beat=heart_beat,
            version=version,
            headers=MappingProxyType(frame.header_map()),
        )
        self._state = SessionState.CONNECTING
        self._awaiting = event
        self._events.append(event)

    def _require(self, frame: Frame, name: str, receipt: str | None) -> str | None:
        value = frame.get(name)
        if value is None or value == "":
            self._fail(
                ErrorReason.MISSING_HEADER,
                f"missing {name} header",
                f"a {frame.command} frame requires a non-empty {name!r} header",
                receipt_id=receipt,
            )
            return None
        return value

    def _on_subscribe(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        sub_id = self._require(frame, "id", receipt)
        if sub_id is None:
            return
        destination = self._require(frame, "destination", receipt)
        if destination is None:
            return
        ack = frame.get("ack") or "auto"
        if ack not in ACK_MODES:
            self._fail(
                ErrorReason.INVALID_HEADER,
                "invalid ack mode",
                f"ack must be auto, client or client-individual, got {ack[:40]!r}",
                receipt_id=receipt,
            )
            return
        if sub_id in self._subscriptions:
            self._fail(
                ErrorReason.DUPLICATE_SUBSCRIPTION,
                "duplicate subscription id",
                f"subscription id {sub_id[:100]!r} is already in use on this connection",
                receipt_id=receipt,
            )
            return
        if len(self._subscriptions) >= self.config.max_subscriptions:
            self._fail(
                ErrorReason.TOO_MANY_SUBSCRIPTIONS,
                "too many subscriptions",
                f"at most {self.config.max_subscriptions} subscriptions per connection",
                receipt_id=receipt,
            )
            return
        event = SubscribeRequested(
            id=sub_id,
            destination=destination,
            ack=ack,
            headers=MappingProxyType(frame.header_map()),
            receipt=receipt,
        )
        self._awaiting = event
        self._events.append(event)

    def _on_unsubscribe(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        sub_id = self._require(frame, "id", receipt)
        if sub_id is None:
            return
        sub = self._subscriptions.pop(sub_id, None)
        if sub is not None:
            for ack_id in sub.unacked:
                self._ack_owner.pop(ack_id, None)
            self._events.append(UnsubscribeRequested(sub_id, sub.destination, receipt))
        if receipt is not None:
            self._send_receipt(receipt)

    def _on_ack(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        # 1.2: id = the MESSAGE's ack header; 1.0/1.1: message-id (+ subscription).
        ack_id = frame.get("id") or frame.get("message-id")
        if not ack_id:
            self._fail(
                ErrorReason.MISSING_HEADER,
                "missing id header",
                f"a {frame.command} frame requires an 'id' header",
                receipt_id=receipt,
            )
            return
        sub_name = frame.get("subscription")
        settled = self._settle(ack_id, sub_name)
        event_type = AckReceived if frame.command == "ACK" else NackReceived
        self._events.append(event_type(ack_id, sub_name, settled, receipt))
        if receipt is not None:
            self._send_receipt(receipt)

    def _settle(self, ack_id: str, sub_name: str | None) -> tuple[str, ...]:
        owner = self._ack_owner.get(ack_id)
        sub = self._subscriptions.get(owner if owner is not None else sub_name or "")
        if sub is None:
            return ()
        key: str | None = ack_id if ack_id in sub.unacked else None
        if key is None:  # a 1.0/1.1 client acknowledging by message-id
            key = next((k for k, mid in sub.unacked.items() if mid == ack_id), None)
            if key is None:
                return ()
        if sub.ack == "client-individual":
            keys = [key]
        else:  # "client": cumulative, everything up to and including this one
            keys = []
            for k in sub.unacked:
                keys.append(k)
                if k == key:
                    break
        settled = tuple(sub.unacked.pop(k) for k in keys)
        for k in keys:
            self._ack_owner.pop(k, None)
        return settled

    def _on_disconnect(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        if receipt is not None:
            self._send_receipt(receipt)
        self._state = SessionState.CLOSING
        self._close_request = CloseRequest(WebSocketCloseCode.NORMAL_CLOSURE)
        self._events.append(DisconnectRequested(receipt))

    # -- output ---------------------------------------------------------------------------------

    def _send_receipt(self, receipt: str) -> None:
        headers = [("receipt-id", receipt if self._escape else _one_line(receipt))]
        self._out.append(serialize(Frame("RECEIPT", headers), escape=self._escape))

    def _fail(
        self,
        reason: ErrorReason,
        message: str,
        detail: str,
        *,
        receipt_id: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        code: int | None = None,
    ) -> None:
        if self._finished:
            return
        body = detail.encode("utf-8")
        frame_headers = [
            ("message", _one_line(message)),
            ("content-type", "text/plain"),
            ("content-length", str(len(body))),
        ]
        if receipt_id is not None:
            frame_headers.append(("receipt-id", receipt_id))
        frame_headers.extend(headers)
        if not self._escape:
            frame_headers = [(k, _one_line(v)) for k, v in frame_headers]
        self._out.append(serialize(Frame("ERROR", frame_headers, body), escape=self._escape))
        self._state = SessionState.CLOSING
        self._close_request = CloseRequest(int(reason.close_code if code is None else code))
        self._awaiting = None
        self._events.append(ErrorSent(reason, message, detail))


if TYPE_CHECKING:

    def _speaks_the_shared_vocabulary(
        session: StompSession,
    ) -> ProtocolSession[bytes | bytearray | memoryview | str, Event, bytes]:
        return session  # mypy checks that StompSession satisfies ProtocolSession
