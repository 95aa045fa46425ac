"""SSRF guard, pure part: which addresses a webhook may reach, and which URLs are well formed.

The delivery worker resolves the endpoint's host itself, passes every resolved address to
:func:`check_address` and dials only an address that passed (so DNS rebinding has no
check-then-use gap). This module does no DNS and opens no sockets.

Refused by default: every range that is not plainly public unicast — loopback, RFC 1918,
CGNAT, link-local (cloud metadata lives there), IETF/special-purpose and documentation
ranges, multicast, class E and broadcast, unspecified, IPv6 unique-local, site-local,
discard, SRv6 and anything outside 2000::/3 — and the IPv6 forms that embed an IPv4
address (mapped, translated, compatible, NAT64, 6to4, Teredo) when the embedded address is
refused. The operator can open ranges with ``ORDERCAST_WEBHOOK_ALLOW_CIDRS`` (a POS on the
restaurant LAN or VPN); cloud metadata addresses stay refused even then.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from ordercast.errors import ConfigError, ValidationError

__all__ = [
    "MAX_URL_LENGTH",
    "Network",
    "check_address",
    "parse_allow_cidrs",
    "validate_webhook_url",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Instance metadata services. Refused even inside an allowed CIDR: an operator who opens
# 169.254.0.0/16 or 100.64.0.0/10 for a VPN must not also hand out cloud credentials.
_METADATA: dict[_Address, str] = {
    ipaddress.ip_address("169.254.169.254"): "cloud metadata service",
    ipaddress.ip_address("169.254.170.2"): "cloud metadata service (ECS task credentials)",
    ipaddress.ip_address("100.100.100.200"): "cloud metadata service (Alibaba)",
    ipaddress.ip_address("fd00:ec2::254"): "cloud metadata service (EC2 IPv6)",
}


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in rows)


_DENY_V4 = _table(
    [
        ("0.0.0.0/8", "unspecified / 'this network' (0.0.0.0/8)"),
        ("10.0.0.0/8", "private network (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private network (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved (class E)"),
    ]
)

_DENY_V6 = _table(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:2::/48", "benchmarking"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 segment identifiers"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
        ("::/8", "reserved"),
    ]
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 "IPv4-translated"
_TRANSPARENT_FORMS = frozenset({"IPv4-mapped", "IPv4-translated", "NAT64"})


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    """IPv4 addresses an IPv6 address carries and may end up reaching, with the form's name."""
    found: list[tuple[ipaddress.IPv4Address, str]] = []
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.ipv4_mapped is not None:
        found.append((addr.ipv4_mapped, "IPv4-mapped"))
    elif addr in _TRANSLATED:
        found.append((low32, "IPv4-translated"))
    elif addr in _NAT64:
        found.append((low32, "NAT64"))
    elif addr.sixtofour is not None:
        found.append((addr.sixtofour, "6to4"))
    elif addr.teredo is not None:
        server, client = addr.teredo
        found.append((client, "Teredo client"))
        found.append((server, "Teredo server"))
    return found


def _in_any(addr: _Address, networks: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def _denied_reason(addr: _Address) -> str | None:
    if isinstance(addr, ipaddress.IPv4Address):
        for net, why in _DENY_V4:
            if addr in net:
                return why
        return None
    for net, why in _DENY_V6:
        if addr in net:
            return why
    if addr not in _GLOBAL_UNICAST_V6 and addr not in _NAT64:
        return "not global unicast (outside 2000::/3)"
    return None


def _as_networks(allow_cidrs: Sequence[str | Network]) -> tuple[Network, ...]:
    if isinstance(allow_cidrs, str):
        return parse_allow_cidrs(allow_cidrs)
    nets: list[Network] = []
    for item in allow_cidrs:
        if isinstance(item, str):
            nets.extend(parse_allow_cidrs(item))
        else:
            nets.append(item)
    return tuple(nets)


def check_address(ip: str, allow_cidrs: Sequence[str | Network] = ()) -> str | None:
    """None if a webhook may connect to ``ip``; otherwise the reason it is refused.

    ``ip`` is a literal address as DNS resolution returns it (an IPv6 zone such as
    ``%eth0`` is ignored). ``allow_cidrs`` (strings or the networks
    :func:`parse_allow_cidrs` returns) lets an otherwise refused address through; an
    embedded IPv4 address is allowed if it, or the outer IPv6 address, is inside one.
    """
    try:
        addr: _Address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        addr = ipaddress.IPv6Address(str(addr).split("%", 1)[0])
    allowed = _as_networks(allow_cidrs)

    candidates: list[tuple[_Address, str]] = [(addr, "")]
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_v4(addr)
        if embedded and embedded[0][1] in _TRANSPARENT_FORMS:
            # These forms reach exactly the embedded IPv4 host: judge that host alone
            # (their IPv6 prefixes sit outside 2000::/3 and would refuse them wholesale).
            candidates = []
        candidates += [(v4, f"{form} form of ") for v4, form in embedded]

    for cand, _ in candidates:
        if cand in _METADATA:
            return f"{ip} refused: {_METADATA[cand]}"

    outer_allowed = _in_any(addr, allowed)
    for cand, form in candidates:
        why = _denied_reason(cand)
        if why is None or outer_allowed or _in_any(cand, allowed):
            continue
        if form:
            return f"{ip} refused: {form}{cand}, {why}"
        return f"{ip} refused: {why}"
    return None


def parse_allow_cidrs(
    text: str, setting: str = "ORDERCAST_WEBHOOK_ALLOW_CIDRS"
) -> tuple[Network, ...]:
    """Parse a list of networks (``ORDERCAST_WEBHOOK_ALLOW_CIDRS``,
    ``ORDERCAST_TRUSTED_PROXIES``): comma-separated CIDRs (bare IPs mean /32 or /128). Empty
    entries are ignored; anything else malformed raises ConfigError naming ``setting``."""
    if not isinstance(text, str):
        raise ConfigError(f"{setting} must be a string")
    nets: list[Network] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            hint = ""
            try:
                loose = ipaddress.ip_network(item, strict=False)
            except ValueError:
                pass
            else:
                hint = f" (host bits set; did you mean {loose}?)"
            raise ConfigError(
                f"{setting}: {item!r} is not a valid CIDR{hint}: {exc}",
                value=item,
            ) from None
    return tuple(nets)


_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
# Forms that C's inet_aton (and so some resolvers) reads as IPv4 although they are not
# dotted quads: "2130706433", "0x7f.1", "0177.0.0.1", "127.1".
_LOOSE_V4_RE = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)
_FORBIDDEN_URL_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")


def _check_hostname(host: str) -> None:
    if host.startswith("[") or "%" in host:
        raise ValidationError("webhook URL host must not carry an IPv6 zone")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return
    if _LOOSE_V4_RE.fullmatch(host):
        raise ValidationError(
            f"webhook URL host {host!r} looks like a non-standard IPv4 address; "
            "use a dotted quad or a DNS name"
        )
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise ValidationError(f"webhook URL host {host!r} is not a valid host name") from None
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if not name or len(name) > 253:
        raise ValidationError("webhook URL host name must be 1-253 characters")
    if not all(_HOST_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise ValidationError(f"webhook URL host {host!r} is not a valid host name")


def validate_webhook_url(
    url: str,
    *,
    require_https: bool = False,
    allow_cidrs: Sequence[str | Network] | None = None,
) -> None:
    """Raise ValidationError unless ``url`` is an acceptable webhook endpoint URL.

    Checks: at most 2048 characters, no whitespace or control characters, scheme http or
    https (https only with ``require_https``), a host, no ``user:password@``, a port in
    1-65535, a well-formed host name or IP literal. When ``allow_cidrs`` is given, an IP
    literal host is also run through :func:`check_address` so obviously internal targets
    are refused when the endpoint is saved; resolved names are checked at connect time.
    """
    if not isinstance(url, str):
        raise ValidationError("webhook URL must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_URL_CHARS_RE.search(url):
        raise ValidationError("webhook URL must not contain whitespace, control characters or '\\'")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"webhook URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https",) if require_https else ("http", "https")
    if scheme not in allowed_schemes:
        raise ValidationError(
            f"webhook URL scheme must be {' or '.join(allowed_schemes)}, got {scheme!r}"
        )
    if "@" in parts.netloc:
        raise ValidationError("webhook URL must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise ValidationError("webhook URL has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError(f"webhook URL port must be 1-65535, got {port}")
    if parts.netloc.endswith(":"):
        raise ValidationError("webhook URL has an empty port")
    _check_hostname(host)
    if allow_cidrs is not None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        reason = check_address(host, allow_cidrs)
        if reason is not None:
            raise ValidationError(f"webhook URL host is not reachable: {reason}")
