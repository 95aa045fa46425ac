"""The oracle: the event log read back over REST plus :mod:`routing`, against what every
subscriber actually received. Per subscriber and per order: every expected message arrives,
in ``seq`` order, none twice (webhooks: a repeat only under the same ``webhook-id``), and
nothing arrives from an order the subscriber may not see."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from . import routing
from .model import World
from .wire import HookReceiver, PusherSub, Session, StompSub

Logs = Mapping[str, list[dict[str, Any]]]  # order id -> its events


async def read_logs(world: World) -> dict[str, list[dict[str, Any]]]:
    logs: dict[str, list[dict[str, Any]]] = {}
    for ref in world.orders:
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            r = await world.http.get(
                f"/v1/orders/{ref.id}/events",
                params={"after_seq": after, "limit": 1000},
                auth=ref.app.auth,
            )
            assert r.status_code == 200, r.text
            body = r.json()
            events += body["events"]
            after = body["next_after_seq"]
            if not body["has_more"]:
                break
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{ref.id}: seq not gap-free: {seqs}"
        logs[ref.id] = events
    return logs


def expected_for(
    world: World, logs: Logs, sub: PusherSub | StompSub
) -> dict[str, routing.Expected]:
    """Per order, what this subscriber should see (orders with nothing are left out)."""
    out: dict[str, routing.Expected] = {}
    for ref in world.orders:
        events = logs[ref.id]
        tenant_id = ref.loc.tenant_id
        exp: routing.Expected = []
        if isinstance(sub, PusherSub):
            if sub.channel == f"private-o-{ref.id}":
                exp = routing.pusher_order_channel(events, ref.loc.labels)
            elif sub.channel == f"presence-r-{ref.loc.id}":
                exp = routing.pusher_location_channel(events)
        else:
            d = sub.destination
            if (
                d == f"/order-changes/{ref.user}/{ref.id}"
                or d == f"/order-changes/{tenant_id}/{ref.user}"
            ):
                exp = routing.stomp_order(events)
            elif d == f"/kds/{tenant_id}/{ref.loc.id}":
                exp = routing.stomp_kds_venue(events)
            elif ref.user is not None and d in (
                f"/kds/{tenant_id}/{ref.user}",
                f"/notifications/{tenant_id}/{ref.user}",
            ):
                exp = routing.stomp_notifications(events)
        if exp:
            out[ref.id] = exp
    return out


def check_sessions(
    name: str,
    sessions: list[Session],
    expected: dict[str, routing.Expected],
    *,
    state_first: bool,
) -> list[str]:
    """Within every session, per order: no unexpected message, strictly in order, no gap,
    nothing missing after the subscription was confirmed, and the final session reaches the
    end. ``state_first``: the first message after subscribing may repeat the latest state
    (Pusher's order channel sends the last event on subscribe)."""
    bad: list[str] = []
    for k, session in enumerate(sessions):
        where = f"{name} session {k + 1}/{len(sessions)}"
        for err in session.errors:
            bad.append(f"{where}: {err}")
        by_order: dict[str, list[Any]] = {}
        for m in session.msgs:
            by_order.setdefault(m.order_id, []).append(m)
        for order_id, msgs in by_order.items():
            exp = expected.get(order_id)
            if not exp:
                bad.append(
                    f"{where}: {len(msgs)} message(s) of order {order_id} it may not see: {[(m.seq, m.name) for m in msgs][:5]}"
                )
                continue
        for order_id, exp in expected.items():
            msgs = by_order.get(order_id, [])
            got = [(m.seq, m.name) for m in msgs]
            index = {entry: i for i, entry in enumerate(exp)}
            unknown = [g for g in got if g not in index]
            if unknown:
                bad.append(f"{where} order {order_id}: unexpected {unknown[:5]}; expected {exp}")
                continue
            pos = [index[g] for g in got]
            first_live = 0
            prev: int | None = None
            marker = False
            if msgs and (
                msgs[0].marker or (state_first and msgs[0].seq <= _floor(session, order_id))
            ):
                # A state message (the KDS snapshot, Pusher's last event on subscribe): the
                # state as of its seq; the changes after it follow without a gap.
                marker = True
                last_of_seq = max(i for i, e in enumerate(exp) if e[0] == got[0][0])
                prev = last_of_seq
                first_live = 1
            for i in range(first_live, len(pos)):
                want = 0 if prev is None else prev + 1
                if prev is None:
                    want = _start(exp, session, order_id)
                    if pos[i] > want and want < len(exp):
                        bad.append(
                            f"{where} order {order_id}: first message {got[i]} but {exp[want]} "
                            f"(seq > {_floor(session, order_id)}) was expected first; "
                            f"received {got}; expected {exp}"
                        )
                        break
                elif pos[i] != want:
                    kind = "duplicate or out of order" if pos[i] < want else "gap"
                    missing = exp[want : pos[i]] if pos[i] > want else []
                    bad.append(
                        f"{where} order {order_id}: {kind} at {got[i]} after {exp[prev]}"
                        + (f", missing {missing}" if missing else "")
                        + f"; received {got}; expected {exp}"
                    )
                    break
                prev = pos[i]
            else:
                if session.final:
                    floor = _floor(session, order_id)
                    last = len(exp) - 1
                    needs_end = exp[-1][0] > floor
                    if needs_end and (prev is None or prev < last):
                        reached = "nothing" if prev is None else f"up to {exp[prev]}"
                        start = _start(exp, session, order_id)
                        bad.append(
                            f"{where} (connected at the end) order {order_id}: received {reached}, "
                            f"missing {exp[(prev + 1) if prev is not None else start :]}; "
                            f"received {got}{' (first is a state message)' if marker else ''}; expected {exp}"
                        )
    return bad


def _floor(session: Session, order_id: str) -> int:
    if order_id in session.since:
        return session.since[order_id]
    return session.floor.get(order_id, 0)


def _start(exp: routing.Expected, session: Session, order_id: str) -> int:
    """Index of the first expected message committed after the subscription."""
    floor = _floor(session, order_id)
    return next((i for i, e in enumerate(exp) if e[0] > floor), len(exp))


def check_coverage(sub: PusherSub | StompSub, expected: dict[str, routing.Expected]) -> list[str]:
    """Order-scoped subscribers resume exactly: across sessions (plus REST catch-up for
    Pusher) every expected message after the first subscription arrived."""
    if isinstance(sub, PusherSub):
        if not sub.channel.startswith("private-o-"):
            return []
    elif sub.order_id is None:
        return []
    bad = []
    for order_id, exp in expected.items():
        floor = sub.sessions[0].floor.get(order_id, 0) if sub.sessions else 0
        have = {(m.seq, m.name) for s in sub.sessions for m in s.msgs if m.order_id == order_id}
        rest = sub.rest_seen.get(order_id, set()) if isinstance(sub, PusherSub) else set()
        missing = [e for e in exp if e[0] > floor and e not in have and e[0] not in rest]
        if missing:
            bad.append(f"{sub.name} order {order_id}: never received {missing} (live or resumed)")
    return bad


def check_hook(world: World, logs: Logs, hook: HookReceiver) -> list[str]:
    bad = [f"{hook.name}: {b}" for b in hook.bad]
    bodies: dict[str, bytes] = {}
    firsts: list[Any] = []
    for d in hook.accepted:
        if d.webhook_id in bodies:
            if bodies[d.webhook_id] != d.raw:
                bad.append(f"{hook.name}: webhook-id {d.webhook_id} repeated with another body")
            continue
        bodies[d.webhook_id] = d.raw
        firsts.append(d)
    app_key = hook.name.split("-")[0]
    app = world.apps[app_key]
    got: dict[str, list[tuple[str, int | None]]] = {}
    for d in firsts:
        name, order_id = routing.wire_name(hook.dialect, d.body)
        seq = d.body["data"]["seq"] if hook.dialect == "ordercast" else None
        got.setdefault(str(order_id), []).append((name, seq))
    for ref in world.orders:
        granted = app.tenant_id == ref.loc.tenant_id and ref.loc.key in _grants(world, app_key)
        exp: routing.Expected = []
        if granted:
            sub_at = ref.doshii.get(app_key) if hook.dialect == "doshii" else None
            exp = routing.webhook(
                hook.dialect, hook.app_kind, logs[ref.id],
                {"type": ref.type, "pos_flow": ref.loc.key == "L3"}, sub_at,
            )  # fmt: skip
        received = got.pop(ref.id, [])
        if hook.dialect == "ordercast":
            want_list = [(n, s) for s, n in exp]
            rec_list = received
        else:
            want_list = [(n, None) for _, n in exp]
            rec_list = [(n, None) for n, _ in received]
        if hook.fifo:
            if rec_list != want_list:
                bad.append(
                    f"{hook.name} (FIFO) order {ref.id}: received {rec_list}, expected {want_list}"
                )
        else:
            missing = Counter(want_list) - Counter(rec_list)
            extra = Counter(rec_list) - Counter(want_list)
            if missing or extra:
                bad.append(
                    f"{hook.name} order {ref.id}: missing {sorted(missing.elements(), key=str)}, "
                    f"unexpected {sorted(extra.elements(), key=str)} (another webhook-id counts as a duplicate)"
                )
    for order_id, rest in got.items():
        bad.append(f"{hook.name}: {len(rest)} message(s) of order {order_id} it may not see")
    return bad


GRANTS = {
    "chan1": ("L1", "L2", "L3"), "pos1": ("L1", "L2"), "rider1": ("L1", "L2"),
    "loy1": ("L1", "L2"), "kds1": ("L1", "L2"), "posL3": ("L3",), "chan2": ("L4",),
    "kds2": ("L4",),
}  # fmt: skip


def _grants(world: World, app_key: str) -> tuple[str, ...]:
    return GRANTS[app_key]


def check_venues(world: World) -> list[str]:
    bad = []
    for key in ("L1", "L4"):
        sub = world.stomp[f"venue-{key}"]
        got = [m for s in sub.sessions for m in s.other]
        want = world.venue_patches.get(key, 0)
        if len(got) != want or any(m.get("venue") != world.locs[key].id for m in got):
            bad.append(
                f"{sub.name}: {len(got)} venue change message(s) for {want} PATCHes: {got[:3]}"
            )
    return bad


def check_all(world: World, logs: Logs) -> list[str]:
    bad = list(world.violations)
    for sub in [*world.pusher.values(), *world.stomp.values()]:
        if sub.name.startswith("venue-"):
            bad += [f"{sub.name}: {e}" for s in sub.sessions for e in s.errors]
            continue
        expected = expected_for(world, logs, sub)
        state_first = isinstance(sub, PusherSub) and sub.channel.startswith("private-o-")
        bad += check_sessions(sub.name, sub.sessions, expected, state_first=state_first)
        bad += check_coverage(sub, expected)
    for hook in world.hooks.values():
        bad += check_hook(world, logs, hook)
    bad += check_venues(world)
    return bad


def coverage(world: World, logs: Logs) -> tuple[dict[str, int], list[str]]:
    """What the run exercised, and violations when it exercised too little to prove much."""
    subs = [*world.pusher.values(), *world.stomp.values()]
    stats = {
        "orders": len(world.orders),
        "events": sum(len(v) for v in logs.values()),
        "pusher_messages": sum(len(s.msgs) for p in world.pusher.values() for s in p.sessions),
        "stomp_messages": sum(len(s.msgs) for p in world.stomp.values() for s in p.sessions),
        "sessions": sum(len(sub.sessions) for sub in subs),
        "stomp_since_resumes": sum(1 for p in world.stomp.values() for s in p.sessions if s.since),
        "stomp_snapshot_resumes": sum(
            1 for p in world.stomp.values() for s in p.sessions if s.snapshot
        ),
        "pusher_rest_catchups": sum(len(p.rest_seen) for p in world.pusher.values()),
        "webhooks_accepted": sum(len(h.accepted) for h in world.hooks.values()),
        "webhooks_refused_500": sum(h.refused for h in world.hooks.values()),
        "pos_callbacks": len(world.pos.callbacks) if world.pos else 0,
    }
    bad = []
    if stats["orders"] < 20:
        bad.append(f"coverage: only {stats['orders']} orders (at least 20 wanted)")
    located = {ref.loc.key for ref in world.orders}
    if len(located) < 3:
        bad.append(f"coverage: orders at {sorted(located)} only")
    for hook in world.hooks.values():
        if not hook.accepted:
            bad.append(f"coverage: webhook receiver {hook.name} got nothing")
    for kind in ("pusher_messages", "stomp_messages", "pos_callbacks"):
        if not stats[kind]:
            bad.append(f"coverage: no {kind}")
    return stats, bad
