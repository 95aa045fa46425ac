"""The Pusher-protocol gateway (``/app/{key}``): :class:`PusherGateway`, built and installed
on the gateway server by the composition root (:meth:`ordercast.runtime.Runtime.open`,
``runtime.pusher``). Its parts: :mod:`.connection` (a socket, the fan-out writers),
:mod:`.registry` (apps, channels, presence, server webhooks, the HTTP API), :mod:`.orders`
(the Open Dining order channels) and :mod:`.gateway` (a socket's life, the parts put
together)."""

from ordercast.gateway.pusher.gateway import PusherConfig, PusherGateway

__all__ = ["PusherConfig", "PusherGateway"]
