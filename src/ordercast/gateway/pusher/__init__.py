"""The Pusher-protocol gateway (``/app/{key}``): :class:`PusherGateway`, installed on the
gateway server by the composition root; :func:`pusher_of` finds it there. Its parts:
:mod:`.connection` (a socket, the fan-out writers), :mod:`.registry` (apps, channels,
presence, webhooks, the HTTP API), :mod:`.orders` (the Open Dining order channels) and
:mod:`.gateway` (a socket's life, the parts put together)."""

from ordercast.gateway.pusher.gateway import PusherGateway, pusher_of

__all__ = ["PusherGateway", "pusher_of"]
