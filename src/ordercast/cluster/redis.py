"""The registry in Redis: plain hashes, each change one Lua script (atomic, so two nodes never
both see a channel become occupied, and a dead node is reaped exactly once).

Keys, all under the deployment's prefix ``P`` (``P`` + ``cl:``):

==========================  =============================================================
``nodes``                   sorted set: node id → unix time of its last beat
``ni``                      hash: node id → JSON the node reported (connections, urls)
``c:{app}``                 hash: channel → subscriptions in the cluster
``u:{app}:{channel}``       hash: presence user id → number of nodes holding the user
``m:{app}:{channel}``       hash: presence user id → user_info JSON
``ns:{node}``               hash: ``app|channel`` → the node's own subscriptions
``np:{node}``               hash: ``app|channel|user`` → 1 for the node's presence members
==========================  =============================================================

Scripts build key names from the prefix they are given, so this needs one Redis server (or
a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from ordercast.cluster.types import FULL, GONE, Departure, Joined, NodeInfo, Reaped
from ordercast.errors import ConfigError

_COUNT = """
local P, node, app, chan = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delta = tonumber(ARGV[5])
if not redis.call('ZSCORE', P..'nodes', node) then return -2 end
local field = app..'|'..chan
local mine = redis.call('HINCRBY', P..'ns:'..node, field, delta)
if mine < 0 then
  if redis.call('HINCRBY', P..'ns:'..node, field, -delta) == 0 then
    redis.call('HDEL', P..'ns:'..node, field)
  end
  return 0
end
if mine == 0 then redis.call('HDEL', P..'ns:'..node, field) end
local total = redis.call('HINCRBY', P..'c:'..app, chan, delta)
if total <= 0 then
  redis.call('HDEL', P..'c:'..app, chan)
  if delta < 0 then return -1 end
  return 0
end
if total == delta and delta > 0 then return 1 end
return 0
"""

_JOIN = """
local P, node, app, chan, user, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local first, max = ARGV[7], tonumber(ARGV[8])
if not redis.call('ZSCORE', P..'nodes', node) then return {'stale', {}} end
local uk = P..'u:'..app..':'..chan
local mk = P..'m:'..app..':'..chan
local result = 'present'
if first == '1' then
  if redis.call('HEXISTS', uk, user) == 0 and redis.call('HLEN', uk) >= max then
    return {'full', {}}
  end
  if redis.call('HSETNX', P..'np:'..node, app..'|'..chan..'|'..user, 1) == 1 then
    if redis.call('HINCRBY', uk, user, 1) == 1 then
      redis.call('HSET', mk, user, info)
      result = 'added'
    end
  end
end
return {result, redis.call('HGETALL', mk)}
"""

_LEAVE = """
local P, node, app, chan, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HDEL', P..'np:'..node, app..'|'..chan..'|'..user) == 0 then return 0 end
local uk = P..'u:'..app..':'..chan
if redis.call('HINCRBY', uk, user, -1) > 0 then return 0 end
redis.call('HDEL', uk, user)
redis.call('HDEL', P..'m:'..app..':'..chan, user)
return 1
"""

_BEAT = """
local P, node, now, info, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if mode == 'beat' and not redis.call('ZSCORE', P..'nodes', node) then return 0 end
redis.call('ZADD', P..'nodes', now, node)
redis.call('HSET', P..'ni', node, info)
return 1
"""

# Reap the nodes whose last beat is older than ARGV[2] (or exactly node ARGV[3]).
# Returns {reaped node ids, flat triples: app, channel, user ('' = the channel is vacated)}.
_REAP = """
local P, cutoff, only = ARGV[1], ARGV[2], ARGV[3]
local dead
if only ~= '' then
  if redis.call('ZSCORE', P..'nodes', only) then dead = {only} else dead = {} end
else
  dead = redis.call('ZRANGEBYSCORE', P..'nodes', '-inf', '('..cutoff)
end
local out = {}
for _, node in ipairs(dead) do
  local subs = redis.call('HGETALL', P..'ns:'..node)
  for i = 1, #subs, 2 do
    local field, mine = subs[i], tonumber(subs[i + 1])
    local bar = string.find(field, '|', 1, true)
    local app, chan = string.sub(field, 1, bar - 1), string.sub(field, bar + 1)
    local total = 1
    if mine > 0 then total = redis.call('HINCRBY', P..'c:'..app, chan, -mine) end
    if total <= 0 then
      redis.call('HDEL', P..'c:'..app, chan)
      table.insert(out, app); table.insert(out, chan); table.insert(out, '')
    end
  end
  local held = redis.call('HKEYS', P..'np:'..node)
  for _, field in ipairs(held) do
    local a = string.find(field, '|', 1, true)
    local b = string.find(field, '|', a + 1, true)
    local app, chan, user = string.sub(field, 1, a - 1), string.sub(field, a + 1, b - 1),
      string.sub(field, b + 1)
    local uk = P..'u:'..app..':'..chan
    if redis.call('HINCRBY', uk, user, -1) <= 0 then
      redis.call('HDEL', uk, user)
      redis.call('HDEL', P..'m:'..app..':'..chan, user)
      table.insert(out, app); table.insert(out, chan); table.insert(out, user)
    end
  end
  redis.call('DEL', P..'ns:'..node, P..'np:'..node)
  redis.call('ZREM', P..'nodes', node)
  redis.call('HDEL', P..'ni', node)
end
return {dead, out}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRegistry:
    shared = True

    def __init__(self, url: str, prefix: str, node_id: str) -> None:
        try:
            self._redis = aioredis.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL '{url}': {exc}") from exc
        self.node_id = node_id
        self.prefix = prefix + "cl:"
        r = self._redis
        self._count = r.register_script(_COUNT)
        self._join = r.register_script(_JOIN)
        self._leave = r.register_script(_LEAVE)
        self._beat = r.register_script(_BEAT)
        self._reap = r.register_script(_REAP)

    def _args(self, *more: Any) -> list[Any]:
        return [self.prefix, self.node_id, *more]

    async def register(self, now: float, info: dict[str, Any]) -> None:
        await self._beat(args=self._args(now, json.dumps(info), "register"))

    async def heartbeat(self, now: float, info: dict[str, Any]) -> bool:
        return bool(await self._beat(args=self._args(now, json.dumps(info), "beat")))

    async def count(self, app_id: str, channel: str, delta: int) -> int:
        return int(await self._count(args=self._args(app_id, channel, delta)))

    async def join(
        self,
        app_id: str,
        channel: str,
        user_id: str,
        user_info: Any,
        first_local: bool,
        max_members: int,
    ) -> Joined:
        info = json.dumps(user_info, separators=(",", ":"))
        flag = "1" if first_local else "0"
        raw = await self._join(args=self._args(app_id, channel, user_id, info, flag, max_members))
        result = _text(raw[0])
        if result in (FULL, GONE):
            return Joined(result)
        flat = raw[1]
        members = {_text(flat[i]): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Joined(result, members)

    async def leave(self, app_id: str, channel: str, user_id: str) -> bool:
        return bool(await self._leave(args=self._args(app_id, channel, user_id)))

    async def channels(self, app_id: str) -> dict[str, int]:
        raw = await self._redis.hgetall(f"{self.prefix}c:{app_id}")
        return {_text(k): int(v) for k, v in raw.items() if int(v) > 0}

    async def subscription_count(self, app_id: str, channel: str) -> int:
        raw = await self._redis.hget(f"{self.prefix}c:{app_id}", channel)
        return max(0, int(raw)) if raw is not None else 0

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(f"{self.prefix}m:{app_id}:{channel}")
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def user_count(self, app_id: str, channel: str) -> int:
        return int(await self._redis.hlen(f"{self.prefix}m:{app_id}:{channel}"))

    async def reap(self, cutoff: float, node_id: str | None = None) -> Reaped:
        dead, flat = await self._reap(args=[self.prefix, cutoff, node_id or ""])
        out = []
        for i in range(0, len(flat), 3):
            user = _text(flat[i + 2])
            out.append(Departure(_text(flat[i]), _text(flat[i + 1]), user or None))
        return Reaped([_text(n) for n in dead], out)

    async def nodes(self) -> list[NodeInfo]:
        beats: list[Any] = await self._redis.zrange(f"{self.prefix}nodes", 0, -1, withscores=True)
        infos: dict[Any, Any] = await self._redis.hgetall(f"{self.prefix}ni")
        out = []
        for raw_id, score in beats:
            node_id = _text(raw_id)
            info = infos.get(node_id.encode())
            out.append(NodeInfo(node_id, float(score), json.loads(info) if info else {}))
        return sorted(out, key=lambda n: n.node_id)

    async def close(self) -> None:
        await self._redis.aclose()
