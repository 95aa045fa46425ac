"""Server side of one Pusher connection, sans I/O.

The adapter owns the socket and the clock; the session owns the protocol rules::

    session = PusherSession(socket_id, config, now=clock())   # queues connection_established
    send_all(session.data_to_send())
    ... on each text frame:
    session.receive_data(text, now=clock())                    # never raises
    for event in session.events_received():                    # typed, already validated
        ...decide, then call session.subscription_succeeded(...) / subscription_error(...)
    send_all(session.data_to_send())
    if session.close_request: close the socket with its code and reason
    ... on a timer at session.next_deadline():
    session.on_timer(now=clock())

This is the vocabulary of :class:`~ordercast.protocols.session.ProtocolSession`, shared with
the STOMP session. Errors the client may survive go out with :meth:`PusherSession.send_error`;
:meth:`PusherSession.fail` sends ``pusher:error`` with a 4xxx code and asks for the close.

What the session checks itself: message syntax, channel names, channel-authorization and
sign-in signatures (it knows the app key and secret), presence ``channel_data``, duplicate
subscriptions, ``#server-to-user-{id}`` only for that signed-in user, client-event rules
(``client-`` prefix, app toggle, private/presence channel the socket is subscribed to, size,
per-connection rate with code 4301), ping/pong and the activity timeout (4201).

What it leaves to the adapter: app lookup, presence rosters across sockets (see
:class:`~ordercast.protocols.pusher.presence.PresenceRoster`), capacity limits, cache
replay, and fan-out. Fan-out never goes through the session: the adapter encodes each
message once with :func:`~ordercast.protocols.pusher.messages.encode_event` and writes it
to every subscribed socket, and for :class:`ClientEventReceived` it must skip the sender
socket (client events are never echoed to their sender).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ordercast.errors import ProtocolError, Unauthorized, ValidationError
from ordercast.protocols.pusher import messages as m
from ordercast.protocols.pusher.auth import (
    MAX_USER_ID_LENGTH,
    MAX_USER_INFO_BYTES,
    PresenceMember,
    SignedInUser,
    parse_presence_channel_data,
    parse_user_data,
    verify_channel_auth,
    verify_user_auth,
)
from ordercast.protocols.pusher.codes import CloseCode
from ordercast.protocols.pusher.messages import ChannelKind
from ordercast.protocols.session import CloseRequest

if TYPE_CHECKING:
    from ordercast.protocols.session import ProtocolSession

__all__ = [
    "DEFAULT_ACTIVITY_TIMEOUT",
    "ClientEventReceived",
    "CloseRequest",
    "PusherSession",
    "SessionConfig",
    "SessionEvent",
    "SignedIn",
    "SubscribeRequested",
    "UnsubscribeRequested",
]

DEFAULT_ACTIVITY_TIMEOUT: Final = 120


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-app settings a session needs. Times are in seconds."""

    app_key: str
    app_secret: str
    #: Announced in connection_established (must be > 0); also the idle time before we ping.
    activity_timeout: int = DEFAULT_ACTIVITY_TIMEOUT
    #: How long to wait for any message after our ping before closing with 4201.
    pong_timeout: float = 30.0
    #: Client events are off by default, as on Pusher.
    client_events: bool = False
    #: Client events per second per connection (Pusher: 10); bursts up to the same number.
    client_event_rate: float = 10.0
    #: Maximum size of a client event's data, in UTF-8 bytes (Pusher: 10 KB).
    max_data_bytes: int = m.MAX_DATA_BYTES
    #: Larger text frames are refused with a pusher:error (characters).
    max_message_chars: int = 64 * 1024
    #: "Authorized connections": close with 4009 unless the socket signs in or subscribes to
    #: a private/presence channel within this many seconds. None disables it.
    user_auth_timeout: float | None = None
    max_user_id_length: int = MAX_USER_ID_LENGTH
    max_user_info_bytes: int = MAX_USER_INFO_BYTES

    def __post_init__(self) -> None:
        if self.activity_timeout <= 0:
            raise ValueError("activity_timeout must be positive (pusher-js requires it)")
        if self.pong_timeout <= 0 or self.client_event_rate <= 0:
            raise ValueError("pong_timeout and client_event_rate must be positive")


# --------------------------------------------------------------------------------------------
# Events for the adapter


@dataclass(frozen=True, slots=True)
class SubscribeRequested:
    """A valid, authorized subscription request awaiting the adapter's decision.

    Answer with :meth:`PusherSession.subscription_succeeded` (after joining the channel; for
    presence, after ``PresenceRoster.join`` and broadcasting member_added if ``ADDED``) or
    :meth:`PusherSession.subscription_error`. ``member`` is set for presence channels.
    """

    channel: str
    kind: ChannelKind
    auth: str | None = None
    channel_data: str | None = None
    member: PresenceMember | None = None

    @property
    def is_cache(self) -> bool:
        """After success, send the cached last event or :meth:`PusherSession.cache_miss`."""
        return m.is_cache_channel(self.channel)


@dataclass(frozen=True, slots=True)
class UnsubscribeRequested:
    """The client left ``channel`` (pending or active); remove the socket from it.

    For presence, call ``PresenceRoster.leave`` and broadcast member_removed if it returns a
    user id. ``was_active`` is False if subscription_succeeded had not been sent yet.
    """

    channel: str
    was_active: bool
    member: PresenceMember | None = None


@dataclass(frozen=True, slots=True)
class ClientEventReceived:
    """A valid ``client-*`` event to relay to the channel's OTHER sockets (never the sender).

    Encode it once with ``encode_event(event, channel, data, user_id)``; ``user_id`` is set on
    presence channels.
    """

    event: str
    channel: str
    data: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The connection signed in as ``user`` (signin_success already queued).

    Register the socket under ``user.id`` (server-to-user delivery, terminate connections).
    """

    user: SignedInUser


SessionEvent = SubscribeRequested | UnsubscribeRequested | ClientEventReceived | SignedIn


@dataclass(slots=True)
class _Subscription:
    kind: ChannelKind
    active: bool
    member: PresenceMember | None


# --------------------------------------------------------------------------------------------


class PusherSession:
    """Protocol state of one connection. Not thread-safe; drive it from one task."""

    def __init__(
        self, socket_id: str, config: SessionConfig, *, now: float, protocol: int = 7
    ) -> None:
        self.socket_id = socket_id
        self.config = config
        self.protocol = protocol
        self.user: SignedInUser | None = None
        #: None while open; the close the adapter must perform after sending pending frames.
        self.close_request: CloseRequest | None = None
        self._out: list[str] = []
        self._events: list[SessionEvent] = []
        self._subs: dict[str, _Subscription] = {}
        self._last_activity = now
        self._ping_sent_at: float | None = None
        self._auth_deadline = (
            None if config.user_auth_timeout is None else now + config.user_auth_timeout
        )
        # Token bucket for client events.
        self._tokens = config.client_event_rate
        self._tokens_at = now
        self._out.append(m.encode_connection_established(socket_id, config.activity_timeout))

    # ---------------------------------------------------------------- outputs

    def data_to_send(self) -> list[str]:
        """Drain the text frames to write, in order."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[SessionEvent]:
        """Drain the events the adapter must act on, in order."""
        events, self._events = self._events, []
        return events

    @property
    def channels(self) -> list[str]:
        """Channels subscribed or pending (clean these up when the socket goes away)."""
        return list(self._subs)

    def is_subscribed(self, channel: str) -> bool:
        """True if subscription_succeeded was sent for ``channel`` and it is still joined."""
        sub = self._subs.get(channel)
        return sub is not None and sub.active

    # ---------------------------------------------------------------- input

    def note_activity(self, now: float) -> None:
        """Record a sign of life that is not a text frame (an RFC 6455 ping or pong)."""
        self._last_activity = now
        self._ping_sent_at = None

    def receive_data(self, data: str, now: float) -> None:
        """Handle one client text frame. Never raises; problems become pusher:error frames."""
        if self.close_request is not None:
            return
        self.note_activity(now)
        if len(data) > self.config.max_message_chars:
            self._error(f"Message too large: the limit is {self.config.max_message_chars}")
            return
        try:
            message = m.parse_client_message(data)
        except ProtocolError as exc:
            self._error(exc.detail)
            return
        match message:
            case m.Ping():
                self._out.append(m.encode_pong())
            case m.Pong() | m.UnknownEvent():
                pass
            case m.Subscribe():
                self._on_subscribe(message)
            case m.Unsubscribe():
                self._on_unsubscribe(message.channel)
            case m.Signin():
                self._on_signin(message)
            case m.ClientEvent():
                self._on_client_event(message, now)

    def _error(self, message: str, code: int | None = None) -> None:
        self._out.append(m.encode_error(message, code))

    def _on_subscribe(self, msg: m.Subscribe) -> None:
        channel = msg.channel
        try:
            m.validate_channel_name(channel)
        except ValidationError as exc:
            self._out.append(
                m.encode_subscription_error(channel, "InvalidChannel", exc.detail, 400)
            )
            return
        if channel in self._subs:
            self._error(f"Existing subscription to channel {channel}")
            return
        kind = m.channel_kind(channel)
        member: PresenceMember | None = None
        if kind is ChannelKind.SERVER_TO_USER:
            wanted = channel[len(m.SERVER_TO_USER_PREFIX) :]
            if self.user is None or self.user.id != wanted:
                self._out.append(
                    m.encode_subscription_error(
                        channel, "AuthError", "Only the signed-in user may subscribe", 403
                    )
                )
                return
        elif kind.needs_auth:
            try:
                verify_channel_auth(
                    app_key=self.config.app_key,
                    secret=self.config.app_secret,
                    socket_id=self.socket_id,
                    channel=channel,
                    auth=msg.auth,
                    channel_data=msg.channel_data if kind is ChannelKind.PRESENCE else None,
                )
            except Unauthorized as exc:
                self._out.append(m.encode_subscription_error(channel, "AuthError", exc.detail, 401))
                return
            if kind is ChannelKind.PRESENCE:
                try:
                    member = parse_presence_channel_data(
                        msg.channel_data,
                        max_user_id_length=self.config.max_user_id_length,
                        max_user_info_bytes=self.config.max_user_info_bytes,
                    )
                except ValidationError as exc:
                    self._out.append(
                        m.encode_subscription_error(channel, "InvalidChannelData", exc.detail, 400)
                    )
                    return
        self._subs[channel] = _Subscription(kind=kind, active=False, member=member)
        self._events.append(
            SubscribeRequested(
                channel=channel,
                kind=kind,
                auth=msg.auth,
                channel_data=msg.channel_data,
                member=member,
            )
        )

    def _on_unsubscribe(self, channel: str) -> None:
        sub = self._subs.pop(channel, None)
        if sub is not None:  # unsubscribing twice is a no-op
            self._events.append(UnsubscribeRequested(channel, sub.active, sub.member))

    def _on_signin(self, msg: m.Signin) -> None:
        if self.user is not None:
            self._error("Already signed in")
            return
        try:
            verify_user_auth(
                app_key=self.config.app_key,
                secret=self.config.app_secret,
                socket_id=self.socket_id,
                auth=msg.auth,
                user_data=msg.user_data,
            )
            user = parse_user_data(msg.user_data)
        except (Unauthorized, ValidationError) as exc:
            self.fail(CloseCode.UNAUTHORIZED, f"Sign-in failed: {exc.detail}")
            return
        self.user = user
        self._auth_deadline = None
        self._out.append(m.encode_signin_success(msg.user_data))
        self._events.append(SignedIn(user))

    def _on_client_event(self, msg: m.ClientEvent, now: float) -> None:
        if not msg.event.startswith("client-"):
            self._error(f"Event names from clients must start with 'client-', got {msg.event!r}")
            return
        if not self.config.client_events:
            self._error("Client events are not enabled for this app")
            return
        if msg.channel is None:
            self._error("Client events need a channel")
            return
        sub = self._subs.get(msg.channel)
        if sub is None or not sub.active:
            self._error(f"Not subscribed to channel {msg.channel}")
            return
        if not sub.kind.allows_client_events:
            self._error("Client events are only supported on private and presence channels")
            return
        if len(msg.event) > m.MAX_EVENT_NAME_LENGTH:
            self._error(f"Event name too long: the limit is {m.MAX_EVENT_NAME_LENGTH}")
            return
        if len(msg.data.encode()) > self.config.max_data_bytes:
            self._error(f"Event data too large: the limit is {self.config.max_data_bytes} bytes")
            return
        if not self._take_token(now):
            self._error(
                "Client event rejected due to rate limit", CloseCode.CLIENT_EVENT_RATE_LIMIT
            )
            return
        user_id = sub.member.user_id if sub.member is not None else None
        self._events.append(ClientEventReceived(msg.event, msg.channel, msg.data, user_id))

    def _take_token(self, now: float) -> bool:
        rate = self.config.client_event_rate
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens = min(rate, self._tokens + elapsed * rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # ---------------------------------------------------------------- commands

    def subscription_succeeded(
        self, channel: str, presence_members: Mapping[str, Any] | None = None
    ) -> bool:
        """Confirm a pending subscription.

        For presence channels ``presence_members`` (user_id → user_info, e.g.
        ``roster.members(channel)`` after joining) is required. Returns False, sending
        nothing, if the subscription is no longer pending (unsubscribed, refused, closed):
        the adapter must then undo whatever it did for it.
        """
        sub = self._subs.get(channel)
        if self.close_request is not None or sub is None or sub.active:
            return False
        if sub.kind is ChannelKind.PRESENCE:
            if presence_members is None:
                raise ValueError("presence channels need presence_members")
            self._out.append(m.encode_subscription_succeeded(channel, presence_members))
        else:
            self._out.append(m.encode_subscription_succeeded(channel))
        sub.active = True
        if sub.kind.needs_auth:
            self._auth_deadline = None
        return True

    def subscription_error(self, channel: str, type: str, error: str, status: int) -> None:
        """Refuse a pending subscription with ``pusher:subscription_error`` on the channel.

        ``type`` e.g. ``AuthError``/``LimitReached``/``ServerError``; ``status`` an HTTP-like
        or Pusher code (soketi uses 4100 for a full presence channel).
        """
        sub = self._subs.get(channel)
        if self.close_request is not None or sub is None or sub.active:
            return
        del self._subs[channel]
        self._out.append(m.encode_subscription_error(channel, type, error, status))

    def cache_miss(self, channel: str) -> None:
        """Tell the client a cache channel has nothing cached (after subscription_succeeded)."""
        if self.close_request is None and self.is_subscribed(channel):
            self._out.append(m.encode_cache_miss(channel))

    def send_error(self, message: str, code: int | None = None) -> None:
        """Queue a non-fatal ``pusher:error``."""
        if self.close_request is None:
            self._error(message, code)

    def fail(self, code: int, reason: str) -> None:
        """Queue ``pusher:error {message: reason, code}`` and request a close with ``code``.

        Everything after is ignored. The close reason is cut to the 123 bytes a close frame
        allows (the pusher:error keeps it whole).
        """
        if self.close_request is not None:
            return
        self._error(reason, int(code))
        self.close_request = CloseRequest.truncated(code, reason)

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called (None once closed)."""
        if self.close_request is not None:
            return None
        if self._ping_sent_at is not None:
            deadline = self._ping_sent_at + self.config.pong_timeout
        else:
            deadline = self._last_activity + self.config.activity_timeout
        if self._auth_deadline is not None:
            deadline = min(deadline, self._auth_deadline)
        return deadline

    def on_timer(self, now: float) -> None:
        """Ping an idle client; close 4201 if it did not answer; enforce user_auth_timeout."""
        if self.close_request is not None:
            return
        if self._auth_deadline is not None and now >= self._auth_deadline:
            self.fail(CloseCode.UNAUTHORIZED, "Connection not authorized within timeout")
            return
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + self.config.pong_timeout:
                self.fail(CloseCode.PONG_NOT_RECEIVED, "Pong reply not received")
        elif now >= self._last_activity + self.config.activity_timeout:
            self._out.append(m.encode_ping())
            self._ping_sent_at = now


if TYPE_CHECKING:

    def _speaks_the_shared_vocabulary(
        session: PusherSession,
    ) -> ProtocolSession[str, SessionEvent, str]:
        return session  # mypy checks that PusherSession satisfies ProtocolSession
