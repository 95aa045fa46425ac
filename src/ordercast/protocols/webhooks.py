"""Standard Webhooks, sans I/O: secrets, signatures, the body encoder and the retry policy.

Everything here is a pure function of its arguments. The caller supplies the clock (Unix
seconds), the random bytes of a new secret and the jitter fraction; nothing here sleeps,
connects, resolves or reads the time.

Signing follows Standard Webhooks 1.0 (symmetric scheme): the signed content is
``"{msg_id}.{timestamp}.{body}"`` over the exact body bytes that go on the wire, the
signature is ``v1,`` + base64(HMAC-SHA256), and several signatures (the current secret and
old ones still inside their rotation grace period) share one space-separated
``webhook-signature`` header.

The retry policy mirrors Svix's default schedule (8 attempts over about 27.6 hours) with
+-20 % jitter, a 60 s floor after a timeout or a 429, a bounded ``Retry-After``, 410 Gone
disabling the endpoint and the "failing for 5 days" rule. Each call to :func:`decide`
turns the outcome of one attempt into one :class:`RetryDecision`.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import enum
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

from ordercast.errors import Unauthorized, ValidationError

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_POLICY",
    "DEFAULT_TOLERANCE_SECONDS",
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "Action",
    "Classification",
    "FailureKind",
    "Outcome",
    "RetryDecision",
    "RetryPolicy",
    "build_headers",
    "classify",
    "decide",
    "encode_body",
    "endpoint_should_disable",
    "next_retry_delay",
    "parse_retry_after",
    "parse_secret",
    "secret_from_bytes",
    "sign",
    "signature_header",
    "verify",
]

# --------------------------------------------------------------------------- secrets

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # 192 bits, the floor of the Standard Webhooks symmetric scheme
MAX_SECRET_BYTES = 64  # 512 bits, its ceiling

CONTENT_TYPE = "application/json"
DEFAULT_TOLERANCE_SECONDS = 300

_SIGNATURE_VERSION = "v1"


def secret_from_bytes(raw: bytes) -> str:
    """Serialise ``raw`` random bytes (24 to 64 of them) as a ``whsec_`` secret."""
    if not isinstance(raw, bytes | bytearray):
        raise ValidationError("secret material must be bytes")
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise ValidationError(
            f"secret material must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
            f"got {len(raw)}"
        )
    return SECRET_PREFIX + base64.b64encode(bytes(raw)).decode("ascii")


def parse_secret(secret: str) -> bytes:
    """Return the HMAC key inside a ``whsec_`` secret; raise ValidationError if malformed.

    Only the canonical form is accepted: the prefix, then padded standard base64 of 24 to
    64 bytes, exactly as :func:`secret_from_bytes` writes it. One key has one spelling.
    """
    if not isinstance(secret, str):
        raise ValidationError("webhook secret must be a string")
    if not secret.startswith(SECRET_PREFIX):
        raise ValidationError(f"webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValidationError(
            f"webhook secret must be {SECRET_PREFIX!r} followed by padded standard base64"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValidationError(
            f"webhook secret must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
            f"it encodes {len(key)}"
        )
    if base64.b64encode(key).decode("ascii") != encoded:
        raise ValidationError("webhook secret is not in canonical base64 form")
    return key


# Signing parses the same few secrets for every message: keep the parsed keys (a pure,
# bounded cache; a malformed secret raises and is not cached).
_cached_key = functools.lru_cache(maxsize=1024)(parse_secret)

# --------------------------------------------------------------------------- signing

# Message ids are ours (e.g. "msg_01J..."), never user-chosen. A "." would make the signed
# content ambiguous and whitespace or control characters would break the header.
_MSG_ID_RE = re.compile(r"[A-Za-z0-9_\-:]{1,256}")


def _check_msg_id(msg_id: str) -> None:
    if not isinstance(msg_id, str) or _MSG_ID_RE.fullmatch(msg_id) is None:
        raise ValidationError(
            "webhook message id must be 1-256 characters of letters, digits, '_', '-' or ':'"
        )


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValidationError("webhook timestamp must be a non-negative integer (Unix seconds)")


def _check_body(body: bytes) -> None:
    if not isinstance(body, bytes):
        raise ValidationError("webhook body must be the exact bytes sent on the wire")


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode("ascii"), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return ``v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">`` for one secret."""
    _check_msg_id(msg_id)
    _check_timestamp(timestamp)
    _check_body(body)
    return _signature(_cached_key(secret), msg_id, timestamp, body)


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` entry per secret, space separated.

    Pass the current secret and every old one still inside its rotation grace period; a
    receiver holding any of them verifies. Duplicate secrets are signed once.
    """
    if isinstance(secrets, str):
        raise ValidationError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise ValidationError("at least one webhook secret is needed to sign")
    _check_msg_id(msg_id)
    _check_timestamp(timestamp)
    _check_body(body)
    entries: list[str] = []
    for secret in dict.fromkeys(secrets):
        entries.append(_signature(_cached_key(secret), msg_id, timestamp, body))
    return " ".join(entries)


def build_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (re-build them for every retry).

    ``msg_id`` stays the same across retries (the receiver's idempotency key);
    ``timestamp`` is the attempt's own time in Unix seconds.
    """
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": CONTENT_TYPE,
    }


def verify(
    secrets: str | Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check a signed request as a receiver would; raise Unauthorized if it does not pass.

    For our own tests and tools. Accepts if any ``v1`` entry of ``webhook-signature``
    matches any of ``secrets`` and the timestamp is within ``tolerance`` seconds of ``now``
    in either direction. Malformed or unknown-version entries are skipped.
    """
    keys = [parse_secret(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if not keys:
        raise ValidationError("at least one webhook secret is needed to verify")
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_ts = lowered.get("webhook-timestamp")
    raw_sig = lowered.get("webhook-signature")
    if not msg_id or not raw_ts or not raw_sig:
        raise Unauthorized("missing webhook-id, webhook-timestamp or webhook-signature header")
    if _MSG_ID_RE.fullmatch(msg_id) is None:
        raise Unauthorized("malformed webhook-id header")
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 15:
        raise Unauthorized("malformed webhook-timestamp header")
    timestamp = int(raw_ts)
    if timestamp < now - tolerance:
        raise Unauthorized("webhook timestamp too old", timestamp=timestamp, now=now)
    if timestamp > now + tolerance:
        raise Unauthorized("webhook timestamp too new", timestamp=timestamp, now=now)
    _check_body(body)
    expected = [_signature(key, msg_id, timestamp, body) for key in keys]
    for entry in raw_sig.split(" "):
        version, sep, _ = entry.partition(",")
        if not sep or version != _SIGNATURE_VERSION:
            continue
        for candidate in expected:
            if hmac.compare_digest(candidate.encode("ascii"), entry.encode("utf-8")):
                return
    raise Unauthorized("no matching webhook signature")


# --------------------------------------------------------------------------- body


def encode_body(obj: object, *, sort_keys: bool = True) -> bytes:
    """Encode a JSON payload once per delivery: compact, UTF-8, byte-for-byte stable.

    Keys are sorted by default so equal payloads always give equal bytes (and equal
    signatures). NaN/Infinity and types JSON lacks raise ValidationError: render dates
    and decimals to strings before calling.
    """
    try:
        text = json.dumps(
            obj,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            sort_keys=sort_keys,
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        # ValueError covers NaN, circular references and lone surrogates (UnicodeEncodeError).
        raise ValidationError(f"payload is not encodable as JSON: {exc}") from None


# --------------------------------------------------------------------------- retry policy


class FailureKind(enum.StrEnum):
    """Why an attempt got no HTTP response at all."""

    TIMEOUT = "timeout"
    CONNECTION = "connection_error"  # refused, reset, DNS failure, TLS failure
    SSRF_REFUSED = "ssrf_refused"  # every resolved address was refused by netguard


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    GONE = "gone"  # 410: the receiver says the endpoint no longer exists


@dataclass(frozen=True, slots=True)
class Classification:
    outcome: Outcome
    reason: str  # short, stable, for the attempt log: "http_503", "timeout", ...
    overload: bool  # the receiver is struggling (timeout, 429): back off at least a minute


def classify(status: int | None = None, failure: FailureKind | None = None) -> Classification:
    """Classify one attempt from its HTTP status, or from why it got no response.

    Standard Webhooks and Svix: any 2xx is delivered; everything else fails, including
    3xx (redirects are never followed) and the other 4xx, and is retried on the schedule.
    410 Gone disables the endpoint (the spec's advice; Svix OSS does not do this).

    An SSRF refusal is retryable, not permanent: the check runs on the addresses DNS gives
    at connect time, and both DNS answers and the operator's allow-list can change (a POS
    moving onto a VPN range that the operator then allows). Retrying costs one DNS lookup
    and never a connection, the attempt log shows ``ssrf_refused`` at once, and an endpoint
    that keeps refusing is disabled by the 5-day rule. Dead-lettering on the first refusal
    would lose events to a transient DNS answer.
    """
    if (status is None) == (failure is None):
        raise ValidationError("classify needs exactly one of status or failure")
    if failure is not None:
        kind = FailureKind(failure)
        return Classification(Outcome.RETRYABLE, kind.value, kind is FailureKind.TIMEOUT)
    assert status is not None
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise ValidationError(f"not an HTTP status code: {status!r}")
    if 200 <= status <= 299:
        return Classification(Outcome.DELIVERED, f"http_{status}", False)
    if status == 410:
        return Classification(Outcome.GONE, "http_410", False)
    return Classification(Outcome.RETRYABLE, f"http_{status}", status == 429)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays in seconds between attempts: ``schedule[n-1]`` follows failed attempt n."""

    schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter_ratio: float = 0.2  # each delay is drawn from [base*(1-r), base*(1+r))
    overload_floor: float = 60.0  # minimum delay after a timeout or a 429
    retry_after_cap: float = 3600.0  # Retry-After is honoured up to this many seconds
    disable_after: float = 5 * 24 * 3600.0  # endpoint failing this long gets disabled

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.schedule):
            raise ValidationError("retry schedule delays must be >= 0")
        if not 0 <= self.jitter_ratio < 1:
            raise ValidationError("jitter_ratio must be in [0, 1)")
        if self.overload_floor < 0 or self.retry_after_cap < 0 or self.disable_after <= 0:
            raise ValidationError("retry policy bounds must be non-negative")

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one retry per schedule entry (8 by default)."""
        return len(self.schedule) + 1


DEFAULT_POLICY = RetryPolicy()


class Action(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"  # dead letter: keep the message, stop scheduling it
    DISABLE_ENDPOINT = "disable_endpoint"  # stop this message and disable its endpoint


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after one attempt. Build with the class methods."""

    action: Action
    reason: str
    retry_at: float | None = None  # Unix seconds; set only for RETRY

    @classmethod
    def deliver_ok(cls, reason: str = "delivered") -> RetryDecision:
        return cls(Action.DELIVERED, reason)

    @classmethod
    def retry(cls, at: float, reason: str) -> RetryDecision:
        return cls(Action.RETRY, reason, at)

    @classmethod
    def give_up(cls, reason: str) -> RetryDecision:
        return cls(Action.GIVE_UP, reason)

    @classmethod
    def disable_endpoint(cls, reason: str) -> RetryDecision:
        return cls(Action.DISABLE_ENDPOINT, reason)


_MAX_RETRY_AFTER_DIGITS = 10


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None if absent or unreadable.

    Accepts delay-seconds (digits only) or an HTTP-date (IMF-fixdate, and the obsolete
    RFC 850 and asctime forms; a date without a zone is read as UTC). A date in the past
    gives 0. No upper bound here: the policy caps it.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text) > _MAX_RETRY_AFTER_DIGITS:
            return float(10**_MAX_RETRY_AFTER_DIGITS)
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _check_jitter(jitter: float) -> None:
    if isinstance(jitter, bool) or not 0.0 <= jitter < 1.0:
        raise ValidationError(f"jitter fraction must be in [0, 1), got {jitter!r}")


def next_retry_delay(
    attempt: int,
    jitter: float,
    *,
    overload: bool = False,
    retry_after: float | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based); None = exhausted.

    The scheduled delay is scaled by ``1 - r + 2*r*jitter`` (r = jitter_ratio, so +-20 %
    by default), then raised to ``overload_floor`` after a timeout or 429, then raised to
    the receiver's ``retry_after`` capped at ``retry_after_cap``. Retry-After can delay a
    retry but never bring it forward: a receiver cannot make us retry faster than the
    schedule. (Svix instead caps Retry-After at twice the scheduled delay, which ignores a
    receiver's "try again in 2 minutes" early in the schedule.)
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValidationError("attempt numbers start at 1")
    _check_jitter(jitter)
    if attempt >= policy.max_attempts:
        return None
    base = float(policy.schedule[attempt - 1])
    r = policy.jitter_ratio
    delay = base * (1.0 - r + 2.0 * r * jitter)
    if overload:
        delay = max(delay, policy.overload_floor)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), policy.retry_after_cap))
    return delay


def endpoint_should_disable(
    first_failure_at: float | None,
    now: float,
    window: float = DEFAULT_POLICY.disable_after,
) -> bool:
    """True once an endpoint has failed without a single success for ``window`` seconds.

    ``first_failure_at`` is when its current failure streak began (None after any success).
    """
    return first_failure_at is not None and now - first_failure_at >= window


def decide(
    *,
    attempt: int,
    now: float,
    jitter: float,
    status: int | None = None,
    failure: FailureKind | None = None,
    retry_after: str | None = None,
    endpoint_failing_since: float | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> RetryDecision:
    """Turn the outcome of attempt number ``attempt`` (1-based) into the next step.

    Give exactly one of ``status`` (the HTTP status received) or ``failure`` (no
    response). ``retry_after`` is the raw response header, if any. ``endpoint_failing_since``
    is when the endpoint's current failure streak began (None if its last attempt
    succeeded); when a message exhausts its schedule on an endpoint that has been failing
    for ``policy.disable_after``, the endpoint is disabled instead of only dead-lettering.
    DISABLE_ENDPOINT always implies that this message stops too (keep it for replay).
    """
    _check_jitter(jitter)
    result = classify(status, failure)
    if result.outcome is Outcome.DELIVERED:
        return RetryDecision.deliver_ok(result.reason)
    if result.outcome is Outcome.GONE:
        return RetryDecision.disable_endpoint(f"{result.reason}: endpoint reported 410 Gone")
    after = parse_retry_after(retry_after, now) if status is not None else None
    delay = next_retry_delay(
        attempt, jitter, overload=result.overload, retry_after=after, policy=policy
    )
    if delay is not None:
        return RetryDecision.retry(now + delay, result.reason)
    if endpoint_should_disable(endpoint_failing_since, now, policy.disable_after):
        return RetryDecision.disable_endpoint(
            f"{result.reason}: attempts exhausted and endpoint failing for "
            f"{int(policy.disable_after)} s"
        )
    return RetryDecision.give_up(f"{result.reason}: {attempt} attempts exhausted")
