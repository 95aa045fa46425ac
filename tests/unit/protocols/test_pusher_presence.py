"""PresenceRoster: members are users (not sockets), member_added/removed on first/last socket."""

from __future__ import annotations

from ordercast.protocols.pusher.auth import PresenceMember
from ordercast.protocols.pusher.presence import JoinResult, PresenceRoster

CH = "presence-r-1"


def test_first_socket_adds_member_and_second_does_not() -> None:
    roster = PresenceRoster()
    assert roster.join(CH, "1.1", PresenceMember("ana", {"n": "Ana"})) is JoinResult.ADDED
    assert (
        roster.join(CH, "1.2", PresenceMember("ana", {"n": "Other"})) is JoinResult.ALREADY_PRESENT
    )
    assert roster.join(CH, "1.3", PresenceMember("bob")) is JoinResult.ADDED
    assert roster.members(CH) == {"ana": {"n": "Ana"}, "bob": None}  # first socket's info wins
    assert roster.user_ids(CH) == ["ana", "bob"]
    assert roster.user_count(CH) == 2
    assert roster.socket_count(CH) == 3
    assert roster.user_of(CH, "1.2") == "ana"


def test_member_removed_only_after_last_socket() -> None:
    roster = PresenceRoster()
    roster.join(CH, "1.1", PresenceMember("ana"))
    roster.join(CH, "1.2", PresenceMember("ana"))
    assert roster.leave(CH, "1.1") is None
    assert roster.user_count(CH) == 1
    assert roster.leave(CH, "1.2") == "ana"
    assert roster.user_count(CH) == 0
    assert roster.channels() == []
    assert roster.leave(CH, "1.2") is None  # idempotent


def test_same_socket_joining_twice_is_ignored() -> None:
    roster = PresenceRoster()
    roster.join(CH, "1.1", PresenceMember("ana"))
    assert roster.join(CH, "1.1", PresenceMember("ana")) is JoinResult.ALREADY_PRESENT
    assert roster.socket_count(CH) == 1
    assert roster.leave(CH, "1.1") == "ana"


def test_limit_counts_distinct_users() -> None:
    roster = PresenceRoster(max_members=2)
    roster.join(CH, "1.1", PresenceMember("a"))
    roster.join(CH, "1.2", PresenceMember("b"))
    assert roster.join(CH, "1.3", PresenceMember("c")) is JoinResult.FULL
    assert roster.join(CH, "1.4", PresenceMember("a")) is JoinResult.ALREADY_PRESENT  # not new
    assert roster.user_of(CH, "1.3") is None
    assert roster.user_count(CH) == 2
    assert roster.leave(CH, "1.3") is None


def test_default_limit_is_100() -> None:
    roster = PresenceRoster()
    for i in range(100):
        assert roster.join(CH, f"1.{i}", PresenceMember(str(i))) is JoinResult.ADDED
    assert roster.join(CH, "2.0", PresenceMember("x")) is JoinResult.FULL
    assert roster.join("presence-other", "2.0", PresenceMember("x")) is JoinResult.ADDED


def test_leave_all_on_disconnect() -> None:
    roster = PresenceRoster()
    roster.join("presence-a", "1.1", PresenceMember("ana"))
    roster.join("presence-b", "1.1", PresenceMember("ana"))
    roster.join("presence-b", "1.2", PresenceMember("ana"))
    roster.join("presence-c", "1.1", PresenceMember("ana"))
    assert sorted(roster.leave_all("1.1")) == [("presence-a", "ana"), ("presence-c", "ana")]
    assert roster.channels() == ["presence-b"]
    assert roster.leave_all("1.1") == []
    assert roster.leave_all("9.9") == []


def test_unknown_channel_queries() -> None:
    roster = PresenceRoster()
    assert roster.members("presence-x") == {}
    assert roster.user_ids("presence-x") == []
    assert roster.user_count("presence-x") == 0
    assert roster.socket_count("presence-x") == 0
