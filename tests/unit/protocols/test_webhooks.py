"""Unit tests of ordercast.protocols.webhooks.

Every signature we produce is checked with the independent reference verifier, the PyPI
``standardwebhooks`` package, which reads the real clock: those tests sign with the current
time. Our own ``verify`` and the retry policy take the time as an argument.
"""

from __future__ import annotations

import ast
import base64
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ordercast.errors import Unauthorized, ValidationError
from ordercast.protocols import webhooks as wh
from ordercast.protocols.webhooks import (
    DEFAULT_POLICY,
    Action,
    FailureKind,
    Outcome,
    RetryDecision,
    RetryPolicy,
    build_headers,
    classify,
    decide,
    encode_body,
    endpoint_should_disable,
    next_retry_delay,
    parse_retry_after,
    parse_secret,
    secret_from_bytes,
    sign,
    signature_header,
    verify,
)

SECRET_A = secret_from_bytes(bytes(range(24)))
SECRET_B = secret_from_bytes(bytes(range(100, 132)))
SECRET_C = secret_from_bytes(b"\xff" * 64)
MSG_ID = "msg_01J9ZK3Q8W1D5V6X7Y8Z9A0B1C"
BODY = encode_body({"type": "order.status_changed", "data": {"order_id": "o_1", "seq": 3}})
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


def _now() -> int:
    return int(time.time())


# ----------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("size", [24, 32, 48, 64])
def test_secret_round_trip(size: int) -> None:
    raw = bytes((i * 7) % 256 for i in range(size))
    secret = secret_from_bytes(raw)
    assert secret.startswith("whsec_")
    assert parse_secret(secret) == raw
    assert base64.b64decode(secret.removeprefix("whsec_")) == raw


@pytest.mark.parametrize("size", [0, 16, 23, 65, 128])
def test_secret_from_bytes_rejects_wrong_size(size: int) -> None:
    with pytest.raises(ValidationError, match="24 to 64 bytes"):
        secret_from_bytes(b"x" * size)


def test_secret_from_bytes_rejects_str() -> None:
    with pytest.raises(ValidationError):
        secret_from_bytes("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "must start with 'whsec_'"),
        (base64.b64encode(b"k" * 32).decode(), "must start with 'whsec_'"),
        ("WHSEC_" + base64.b64encode(b"k" * 32).decode(), "must start with 'whsec_'"),
        ("whsec_", "encode 24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "encode 24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "encode 24 to 64 bytes"),
        ("whsec_not base64 at all!!", "padded standard base64"),
        ("whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("="), "padded standard base64"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb" * 33).decode(), "padded standard base64"),
        ("whsec_" + "é" * 44, "padded standard base64"),
        # 'B' instead of 'A' sets bits the canonical encoding leaves zero.
        ("whsec_" + base64.b64encode(b"\x00" * 32).decode()[:-2] + "B=", "canonical"),
    ],
)
def test_parse_secret_rejects(secret: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_secret(secret)


def test_parse_secret_rejects_non_str() -> None:
    with pytest.raises(ValidationError):
        parse_secret(b"whsec_abc")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- signing


def test_sign_has_v1_format_and_matches_reference_signer() -> None:
    ts = 1_700_000_000
    sig = sign(SECRET_A, MSG_ID, ts, BODY)
    version, b64 = sig.split(",")
    assert version == "v1"
    assert len(base64.b64decode(b64, validate=True)) == 32
    reference = Webhook(SECRET_A).sign(MSG_ID, datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    assert sig == reference


def test_sign_is_deterministic_and_input_sensitive() -> None:
    base = sign(SECRET_A, MSG_ID, NOW, BODY)
    assert sign(SECRET_A, MSG_ID, NOW, BODY) == base
    assert sign(SECRET_B, MSG_ID, NOW, BODY) != base
    assert sign(SECRET_A, MSG_ID + "x", NOW, BODY) != base
    assert sign(SECRET_A, MSG_ID, NOW + 1, BODY) != base
    assert sign(SECRET_A, MSG_ID, NOW, BODY + b" ") != base


def test_reference_library_verifies_our_headers() -> None:
    ts = _now()
    headers = build_headers(MSG_ID, ts, BODY, [SECRET_A])
    assert Webhook(SECRET_A).verify(BODY, headers) == {
        "type": "order.status_changed",
        "data": {"order_id": "o_1", "seq": 3},
    }


def test_reference_library_verifies_non_ascii_body() -> None:
    body = encode_body({"note": "Dave is making your sandwich 🥪", "name": "Crème brûlée"})
    headers = build_headers(MSG_ID, _now(), body, [SECRET_C])
    assert Webhook(SECRET_C).verify(body, headers)["name"] == "Crème brûlée"


def test_reference_library_rejects_tampering_wrong_secret_and_skew() -> None:
    ts = _now()
    headers = build_headers(MSG_ID, ts, BODY, [SECRET_A])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY.replace(b"o_1", b"o_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_B).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY, {**headers, "webhook-id": MSG_ID + "X"})
    for skew in (-301, 301):
        skewed = build_headers(MSG_ID, ts + skew, BODY, [SECRET_A])
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET_A).verify(BODY, skewed)


def test_rotation_both_secrets_verify_with_reference_library() -> None:
    ts = _now()
    headers = build_headers(MSG_ID, ts, BODY, [SECRET_B, SECRET_A])  # new first, then old
    entries = headers["webhook-signature"].split(" ")
    assert entries == [sign(SECRET_B, MSG_ID, ts, BODY), sign(SECRET_A, MSG_ID, ts, BODY)]
    Webhook(SECRET_A).verify(BODY, headers)
    Webhook(SECRET_B).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_C).verify(BODY, headers)


def test_rotation_with_three_secrets_every_one_verifies() -> None:
    ts = _now()
    headers = build_headers(MSG_ID, ts, BODY, [SECRET_C, SECRET_B, SECRET_A])
    for secret in (SECRET_A, SECRET_B, SECRET_C):
        Webhook(secret).verify(BODY, headers)


def test_signature_header_dedupes_and_keeps_order() -> None:
    header = signature_header([SECRET_A, SECRET_B, SECRET_A], MSG_ID, NOW, BODY)
    assert header.split(" ") == [
        sign(SECRET_A, MSG_ID, NOW, BODY),
        sign(SECRET_B, MSG_ID, NOW, BODY),
    ]


def test_signature_header_needs_a_sequence_of_secrets() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        signature_header([], MSG_ID, NOW, BODY)
    with pytest.raises(ValidationError, match="not one string"):
        signature_header(SECRET_A, MSG_ID, NOW, BODY)


def test_build_headers_exact_names() -> None:
    headers = build_headers(MSG_ID, NOW, BODY, [SECRET_A])
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(NOW),
        "webhook-signature": sign(SECRET_A, MSG_ID, NOW, BODY),
        "content-type": "application/json",
    }


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1", "é", "x" * 257, 5])
def test_bad_message_ids_are_refused(msg_id: object) -> None:
    with pytest.raises(ValidationError, match="message id"):
        sign(SECRET_A, msg_id, NOW, BODY)  # type: ignore[arg-type]


@pytest.mark.parametrize("timestamp", [-1, True, 1.5, "1700000000", None])
def test_bad_timestamps_are_refused(timestamp: object) -> None:
    with pytest.raises(ValidationError, match="timestamp"):
        sign(SECRET_A, MSG_ID, timestamp, BODY)  # type: ignore[arg-type]


def test_body_must_be_bytes() -> None:
    with pytest.raises(ValidationError, match="bytes"):
        sign(SECRET_A, MSG_ID, NOW, BODY.decode())  # type: ignore[arg-type]


def test_sign_with_bad_secret_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        build_headers(MSG_ID, NOW, BODY, ["whsec_short"])


# ----------------------------------------------------------------------------- our verify


def test_verify_accepts_own_headers_and_rotation() -> None:
    headers = build_headers(MSG_ID, NOW, BODY, [SECRET_B, SECRET_A])
    verify(SECRET_A, BODY, headers, now=NOW)
    verify([SECRET_B], BODY, headers, now=NOW)
    verify([SECRET_C, SECRET_A], BODY, headers, now=NOW)


def test_verify_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in build_headers(MSG_ID, NOW, BODY, [SECRET_A]).items()}
    verify(SECRET_A, BODY, headers, now=NOW)


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False)])
def test_verify_tolerance_window(offset: int, ok: bool) -> None:
    headers = build_headers(MSG_ID, NOW + offset, BODY, [SECRET_A])
    if ok:
        verify(SECRET_A, BODY, headers, now=NOW)
    else:
        with pytest.raises(Unauthorized, match=r"too (old|new)"):
            verify(SECRET_A, BODY, headers, now=NOW)


def test_verify_custom_tolerance() -> None:
    headers = build_headers(MSG_ID, NOW - 3600, BODY, [SECRET_A])
    verify(SECRET_A, BODY, headers, now=NOW, tolerance=3600)


def test_verify_rejects_wrong_secret_and_tampering() -> None:
    headers = build_headers(MSG_ID, NOW, BODY, [SECRET_A])
    with pytest.raises(Unauthorized, match="no matching"):
        verify(SECRET_B, BODY, headers, now=NOW)
    with pytest.raises(Unauthorized, match="no matching"):
        verify(SECRET_A, BODY + b"\n", headers, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_missing_header(missing: str) -> None:
    headers = build_headers(MSG_ID, NOW, BODY, [SECRET_A])
    del headers[missing]
    with pytest.raises(Unauthorized, match="missing"):
        verify(SECRET_A, BODY, headers, now=NOW)


@pytest.mark.parametrize("ts", ["abc", "-5", "1.5", " 1", "1" * 16, "١٢٣"])
def test_verify_malformed_timestamp(ts: str) -> None:
    headers = {**build_headers(MSG_ID, NOW, BODY, [SECRET_A]), "webhook-timestamp": ts}
    with pytest.raises(Unauthorized, match="malformed"):
        verify(SECRET_A, BODY, headers, now=NOW)


def test_verify_skips_malformed_and_unknown_entries() -> None:
    good = sign(SECRET_A, MSG_ID, NOW, BODY)
    sig = f"garbage v1a,AAAA v2,{good[3:]} v1,notbase64 {good}"
    headers = {**build_headers(MSG_ID, NOW, BODY, [SECRET_A]), "webhook-signature": sig}
    verify(SECRET_A, BODY, headers, now=NOW)


def test_verify_needs_a_secret() -> None:
    with pytest.raises(ValidationError):
        verify([], BODY, build_headers(MSG_ID, NOW, BODY, [SECRET_A]), now=NOW)


def test_our_verify_accepts_reference_signature() -> None:
    ref = Webhook(SECRET_B).sign(MSG_ID, datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(NOW), "webhook-signature": ref}
    verify(SECRET_B, BODY, headers, now=NOW)


# ----------------------------------------------------------------------------- encode_body


def test_encode_body_is_compact_sorted_utf8() -> None:
    body = encode_body({"b": 1, "a": [1, 2, {"z": None, "y": True}], "c": "é"})
    assert body == '{"a":[1,2,{"y":true,"z":null}],"b":1,"c":"é"}'.encode()


def test_encode_body_is_stable_across_key_order() -> None:
    assert encode_body({"x": 1, "y": 2}) == encode_body({"y": 2, "x": 1})


def test_encode_body_can_keep_insertion_order() -> None:
    body = encode_body({"eventType": "X", "storeId": "s", "data": {}}, sort_keys=False)
    assert body == b'{"eventType":"X","storeId":"s","data":{}}'


@pytest.mark.parametrize(
    "bad",
    [
        {"x": math.nan},
        {"x": math.inf},
        {"x": datetime(2026, 1, 1, tzinfo=UTC)},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"x": "\ud800"},
        {1: "a", "b": 2},
    ],
)
def test_encode_body_rejects_non_json(bad: object) -> None:
    with pytest.raises(ValidationError, match="not encodable"):
        encode_body(bad)


def test_encode_body_rejects_cycles() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValidationError):
        encode_body(loop)


# ----------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("status", "failure", "outcome", "reason", "overload"),
    [
        (200, None, Outcome.DELIVERED, "http_200", False),
        (201, None, Outcome.DELIVERED, "http_201", False),
        (204, None, Outcome.DELIVERED, "http_204", False),
        (299, None, Outcome.DELIVERED, "http_299", False),
        (100, None, Outcome.RETRYABLE, "http_100", False),
        (301, None, Outcome.RETRYABLE, "http_301", False),
        (302, None, Outcome.RETRYABLE, "http_302", False),
        (304, None, Outcome.RETRYABLE, "http_304", False),
        (400, None, Outcome.RETRYABLE, "http_400", False),
        (401, None, Outcome.RETRYABLE, "http_401", False),
        (403, None, Outcome.RETRYABLE, "http_403", False),
        (404, None, Outcome.RETRYABLE, "http_404", False),
        (408, None, Outcome.RETRYABLE, "http_408", False),
        (410, None, Outcome.GONE, "http_410", False),
        (413, None, Outcome.RETRYABLE, "http_413", False),
        (429, None, Outcome.RETRYABLE, "http_429", True),
        (500, None, Outcome.RETRYABLE, "http_500", False),
        (502, None, Outcome.RETRYABLE, "http_502", False),
        (503, None, Outcome.RETRYABLE, "http_503", False),
        (504, None, Outcome.RETRYABLE, "http_504", False),
        (599, None, Outcome.RETRYABLE, "http_599", False),
        (None, FailureKind.TIMEOUT, Outcome.RETRYABLE, "timeout", True),
        (None, FailureKind.CONNECTION, Outcome.RETRYABLE, "connection_error", False),
        (None, FailureKind.SSRF_REFUSED, Outcome.RETRYABLE, "ssrf_refused", False),
        (None, "timeout", Outcome.RETRYABLE, "timeout", True),
    ],
)
def test_classify(
    status: int | None, failure: FailureKind | None, outcome: Outcome, reason: str, overload: bool
) -> None:
    result = classify(status, failure)
    assert (result.outcome, result.reason, result.overload) == (outcome, reason, overload)


@pytest.mark.parametrize(
    ("status", "failure"),
    [(None, None), (200, FailureKind.TIMEOUT), (99, None), (1000, None), (True, None)],
)
def test_classify_rejects_bad_input(status: int | None, failure: FailureKind | None) -> None:
    with pytest.raises(ValidationError):
        classify(status, failure)


# ----------------------------------------------------------------------------- delays

SVIX_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


def test_default_policy_is_svix_schedule_with_eight_attempts() -> None:
    assert list(DEFAULT_POLICY.schedule) == SVIX_SCHEDULE
    assert DEFAULT_POLICY.max_attempts == 8
    assert DEFAULT_POLICY.jitter_ratio == 0.2
    assert DEFAULT_POLICY.disable_after == 5 * 24 * 3600


def test_mid_jitter_gives_exact_schedule_totalling_27h35m05s() -> None:
    delays = [next_retry_delay(n, 0.5) for n in range(1, 8)]
    assert delays == pytest.approx(SVIX_SCHEDULE)
    assert sum(d for d in delays if d is not None) == pytest.approx(27 * 3600 + 35 * 60 + 5)


@pytest.mark.parametrize("attempt", range(1, 8))
def test_jitter_stays_within_plus_minus_20_percent(attempt: int) -> None:
    base = SVIX_SCHEDULE[attempt - 1]
    low = next_retry_delay(attempt, 0.0)
    high = next_retry_delay(attempt, 0.999999)
    assert low == pytest.approx(base * 0.8)
    assert high is not None and base * 1.19 < high < base * 1.2


@pytest.mark.parametrize("attempt", [8, 9, 100])
def test_exhausted_after_eighth_attempt(attempt: int) -> None:
    assert next_retry_delay(attempt, 0.5) is None


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5, math.nan, True])
def test_jitter_fraction_must_be_in_unit_interval(jitter: float) -> None:
    with pytest.raises(ValidationError, match="jitter"):
        next_retry_delay(1, jitter)


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValidationError, match="start at 1"):
        next_retry_delay(attempt, 0.5)


def test_overload_floor_only_raises_short_delays() -> None:
    assert next_retry_delay(1, 0.5, overload=True) == 60
    assert next_retry_delay(2, 0.5, overload=True) == pytest.approx(300)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 120.0, 120.0),  # later than scheduled 5 s: honoured
        (1, 1.0, 5.0),  # earlier than scheduled: the schedule wins
        (1, 10**9, 3600.0),  # capped at retry_after_cap
        (6, 7200.0, 36000.0),  # cap and schedule: the larger scheduled delay stands
        (1, -3.0, 5.0),
    ],
)
def test_retry_after_is_a_capped_floor(attempt: int, retry_after: float, expected: float) -> None:
    assert next_retry_delay(attempt, 0.5, retry_after=retry_after) == pytest.approx(expected)


def test_custom_policy() -> None:
    policy = RetryPolicy(schedule=(1, 2), jitter_ratio=0.0, overload_floor=0, retry_after_cap=10)
    assert policy.max_attempts == 3
    assert next_retry_delay(1, 0.9, policy=policy) == 1
    assert next_retry_delay(2, 0.1, retry_after=100, policy=policy) == 10
    assert next_retry_delay(3, 0.1, policy=policy) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": (5, -1)},
        {"jitter_ratio": 1.0},
        {"jitter_ratio": -0.1},
        {"overload_floor": -1},
        {"retry_after_cap": -1},
        {"disable_after": 0},
    ],
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("007", 7.0),
        ("99999999999999999999", 1e10),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("١٢", None),
        ("Thu, 01 Jan 2026 00:02:00 GMT", 120.0),  # IMF-fixdate
        ("Thursday, 01-Jan-26 00:02:00 GMT", 120.0),  # RFC 850
        ("Thu Jan  1 00:02:00 2026", 120.0),  # asctime, no zone: UTC
        ("Thu, 01 Jan 2026 01:02:00 +0100", 120.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),  # in the past
        ("Thu, 32 Jan 2026 00:02:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# ----------------------------------------------------------------------------- disable rule

DAY = 24 * 3600


@pytest.mark.parametrize(
    ("first_failure_at", "now", "expected"),
    [
        (None, NOW, False),
        (NOW, NOW, False),
        (NOW - 5 * DAY + 1, NOW, False),
        (NOW - 5 * DAY, NOW, True),
        (NOW - 30 * DAY, NOW, True),
        (NOW + 10, NOW, False),  # clock skew: failure "in the future"
    ],
)
def test_endpoint_should_disable(
    first_failure_at: float | None, now: float, expected: bool
) -> None:
    assert endpoint_should_disable(first_failure_at, now) is expected


def test_endpoint_should_disable_custom_window() -> None:
    assert endpoint_should_disable(NOW - 3600, NOW, window=3600)
    assert not endpoint_should_disable(NOW - 3599, NOW, window=3600)


# ----------------------------------------------------------------------------- decide


def test_decide_delivered() -> None:
    decision = decide(attempt=3, now=NOW, jitter=0.3, status=204)
    assert decision == RetryDecision(Action.DELIVERED, "http_204")
    assert decision == RetryDecision.deliver_ok("http_204")
    assert decision.retry_at is None


def test_decide_410_disables_endpoint_at_any_attempt() -> None:
    for attempt in (1, 8):
        decision = decide(attempt=attempt, now=NOW, jitter=0.3, status=410)
        assert decision.action is Action.DISABLE_ENDPOINT
        assert "410" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "delay", "reason"),
    [
        ({"status": 500}, 5, "http_500"),
        ({"status": 404}, 5, "http_404"),
        ({"status": 302}, 5, "http_302"),
        ({"status": 429}, 60, "http_429"),
        ({"status": 503, "retry_after": "120"}, 120, "http_503"),
        ({"status": 503, "retry_after": "Thu, 01 Jan 2026 00:10:00 GMT"}, 600, "http_503"),
        ({"status": 503, "retry_after": "86400"}, 3600, "http_503"),
        ({"status": 503, "retry_after": "garbage"}, 5, "http_503"),
        ({"failure": FailureKind.TIMEOUT}, 60, "timeout"),
        ({"failure": FailureKind.CONNECTION}, 5, "connection_error"),
        ({"failure": FailureKind.SSRF_REFUSED}, 5, "ssrf_refused"),
        ({"failure": FailureKind.CONNECTION, "retry_after": "900"}, 5, "connection_error"),
    ],
)
def test_decide_retries_after_first_attempt(
    kwargs: dict[str, object], delay: float, reason: str
) -> None:
    decision = decide(attempt=1, now=NOW, jitter=0.5, **kwargs)  # type: ignore[arg-type]
    assert decision.action is Action.RETRY
    assert decision.retry_at == pytest.approx(NOW + delay)
    assert decision.reason == reason


def test_decide_full_run_retries_seven_times_then_gives_up() -> None:
    now = float(NOW)
    times = [now]
    decision = decide(attempt=1, now=now, jitter=0.5, status=500)
    attempt = 1
    while decision.action is Action.RETRY:
        assert decision.retry_at is not None
        now = decision.retry_at
        times.append(now)
        attempt += 1
        decision = decide(attempt=attempt, now=now, jitter=0.5, status=500)
    assert attempt == 8
    assert decision == RetryDecision.give_up("http_500: 8 attempts exhausted")
    assert times[-1] - times[0] == pytest.approx(27 * 3600 + 35 * 60 + 5)


def test_decide_exhausted_on_endpoint_failing_five_days_disables() -> None:
    decision = decide(
        attempt=8,
        now=NOW,
        jitter=0.5,
        failure=FailureKind.CONNECTION,
        endpoint_failing_since=NOW - 5 * DAY,
    )
    assert decision.action is Action.DISABLE_ENDPOINT
    assert decision.reason.startswith("connection_error")


def test_decide_exhausted_on_recently_failing_endpoint_only_gives_up() -> None:
    for since in (None, NOW - DAY):
        decision = decide(attempt=8, now=NOW, jitter=0.5, status=503, endpoint_failing_since=since)
        assert decision.action is Action.GIVE_UP


def test_decide_does_not_disable_before_exhaustion() -> None:
    decision = decide(attempt=2, now=NOW, jitter=0.5, status=503, endpoint_failing_since=0)
    assert decision.action is Action.RETRY


def test_decide_validates_jitter_even_on_success() -> None:
    with pytest.raises(ValidationError):
        decide(attempt=1, now=NOW, jitter=2.0, status=200)


def test_decision_constructors() -> None:
    assert RetryDecision.retry(5.0, "x") == RetryDecision(Action.RETRY, "x", 5.0)
    assert RetryDecision.give_up("x").action == "give_up"
    assert RetryDecision.disable_endpoint("gone").action == "disable_endpoint"


def test_module_imports_only_pure_stdlib_and_errors() -> None:
    tree = ast.parse(Path(wh.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert {name.split(".")[0] for name in imported} <= {
        "__future__",
        "base64",
        "binascii",
        "email",
        "enum",
        "functools",
        "hashlib",
        "hmac",
        "json",
        "re",
        "collections",
        "dataclasses",
        "datetime",
        "ordercast",
    }
    assert {name for name in imported if name.startswith("ordercast")} <= {"ordercast.errors"}
