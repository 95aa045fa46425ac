"""Unit tests of ordercast.protocols.netguard (the pure SSRF guard)."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import pytest

from ordercast.errors import ConfigError, ValidationError
from ordercast.protocols import netguard
from ordercast.protocols.netguard import check_address, parse_allow_cidrs, validate_webhook_url

# ----------------------------------------------------------------------------- check_address

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "192.167.255.255",
    "192.169.0.0",
    "169.253.255.255",
    "223.255.255.255",  # last unicast before multicast
    "11.0.0.0",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # mapped public v4
    "::ffff:0:808:808",  # translated public v4
    "64:ff9b::808:808",  # NAT64 of a public v4 (DNS64 networks)
    "2002:808:808::1",  # 6to4 of a public v4
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("10.0.0.1", "RFC 1918"),
    ("10.255.255.255", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("172.31.255.255", "RFC 1918"),
    ("192.168.1.10", "RFC 1918"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.8", "IETF"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("192.88.99.1", "6to4 relay"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fd00:ec2::254", "metadata"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard"),
    ("2001:2::1", "benchmarking"),
    ("5f00::1", "SRv6"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("::7f00:1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("1::1", "reserved"),
    ("4000::1", "not global unicast"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, loopback"),
    ("::ffff:7f00:1", "IPv4-mapped form of 127.0.0.1"),
    ("::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("::ffff:0.0.0.0", "IPv4-mapped form of 0.0.0.0"),
    ("::ffff:0:127.0.0.1", "IPv4-translated form of 127.0.0.1"),
    ("::ffff:0:192.168.0.1", "IPv4-translated form of 192.168.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1"),
    ("2002:7f00:1::", "6to4 form of 127.0.0.1"),
    ("2002:c0a8:101::1", "6to4 form of 192.168.1.1"),
    ("2002:a9fe:a9fe::", "metadata"),
    # Teredo with client 127.0.0.1: the client field is stored bit-inverted.
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo client form of 127.0.0.1"),
    ("2001:0:0a00:0001:8000:63bf:f7f7:f7f7", "Teredo server form of 10.0.0.1"),
    ("not-an-ip", "not an IP address"),
    ("", "not an IP address"),
    ("127.1", "not an IP address"),
    ("0177.0.0.1", "not an IP address"),
    ("2130706433", "not an IP address"),
    ("10.0.0.1/8", "not an IP address"),
]


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_pass(ip: str) -> None:
    assert check_address(ip, []) is None


@pytest.mark.parametrize(("ip", "reason"), REFUSED)
def test_refused_addresses(ip: str, reason: str) -> None:
    result = check_address(ip, [])
    assert result is not None
    assert reason in result


def test_refusal_names_the_address() -> None:
    assert check_address("10.0.0.1", []) == "10.0.0.1 refused: private network (RFC 1918)"


@pytest.mark.parametrize(
    ("ip", "allow"),
    [
        ("10.1.2.3", ["10.0.0.0/8"]),
        ("192.168.1.10", ["192.168.1.0/24"]),
        ("192.168.1.10", ["192.168.1.10/32"]),
        ("172.20.0.5", ["10.0.0.0/8", "172.16.0.0/12"]),
        ("100.64.1.1", ["100.64.0.0/10"]),
        ("127.0.0.1", ["127.0.0.1/32"]),
        ("fd12::1", ["fd00::/8"]),
        ("fe80::1%eth0", ["fe80::/64"]),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"]),  # embedded v4 inside the allow-list
        ("64:ff9b::a00:1", ["10.0.0.0/8"]),
        ("2002:a00:1::", ["10.0.0.0/8"]),
        ("2002:a00:1::", ["2002::/16"]),  # outer v6 inside the allow-list
        ("10.9.9.9", "10.0.0.0/8, 192.168.0.0/16"),  # the raw setting text also works
        ("10.9.9.9", parse_allow_cidrs("10.0.0.0/8")),
        ("10.9.9.9", ["0.0.0.0/0"]),
    ],
)
def test_allow_cidrs_open_refused_ranges(ip: str, allow: list[str] | str) -> None:
    assert check_address(ip, []) is not None
    assert check_address(ip, allow) is None


@pytest.mark.parametrize(
    ("ip", "allow"),
    [
        ("10.1.2.3", ["10.2.0.0/16"]),
        ("192.168.2.1", ["192.168.1.0/24"]),
        ("::ffff:127.0.0.1", ["10.0.0.0/8"]),
        ("fd12::1", ["10.0.0.0/8"]),  # v4 allow-list does not open v6
        ("127.0.0.1", ["::1/128"]),
    ],
)
def test_allow_cidrs_do_not_over_match(ip: str, allow: list[str]) -> None:
    assert check_address(ip, allow) is not None


@pytest.mark.parametrize(
    ("ip", "allow"),
    [
        ("169.254.169.254", ["169.254.0.0/16"]),
        ("169.254.169.254", ["0.0.0.0/0"]),
        ("169.254.170.2", ["169.254.170.0/24"]),
        ("100.100.100.200", ["100.64.0.0/10"]),
        ("fd00:ec2::254", ["fd00::/8"]),
        ("fd00:ec2::254", ["::/0"]),
        ("::ffff:169.254.169.254", ["::/0", "0.0.0.0/0"]),
        ("64:ff9b::a9fe:a9fe", ["64:ff9b::/96", "169.254.0.0/16"]),
    ],
)
def test_metadata_stays_refused_even_when_allowed(ip: str, allow: list[str]) -> None:
    result = check_address(ip, allow)
    assert result is not None and "metadata" in result


def test_bad_allow_cidr_passed_directly_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        check_address("10.0.0.1", ["10.0.0.0/33"])


# ----------------------------------------------------------------------------- parse_allow_cidrs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        (",", []),
        ("10.0.0.0/8", ["10.0.0.0/8"]),
        (" 10.0.0.0/8 , 192.168.1.0/24 ,", ["10.0.0.0/8", "192.168.1.0/24"]),
        ("192.168.1.5", ["192.168.1.5/32"]),
        ("fd00::/8,::1", ["fd00::/8", "::1/128"]),
        ("0.0.0.0/0", ["0.0.0.0/0"]),
    ],
)
def test_parse_allow_cidrs(text: str, expected: list[str]) -> None:
    assert parse_allow_cidrs(text) == tuple(ipaddress.ip_network(n) for n in expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "not a valid CIDR"),
        ("10.0.0.0/8;192.168.0.0/16", "not a valid CIDR"),
        ("10.0.0.0/8 192.168.0.0/16", "not a valid CIDR"),
        ("localhost", "not a valid CIDR"),
        ("10.0.0.0/8,nope", "'nope'"),
        ("fd00::1/8", "did you mean fd00::/8"),
    ],
)
def test_parse_allow_cidrs_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="ORDERCAST_WEBHOOK_ALLOW_CIDRS") as info:
        parse_allow_cidrs(text)
    assert message in info.value.detail
    assert info.value.code == "config_error"


def test_parse_allow_cidrs_needs_text() -> None:
    with pytest.raises(ConfigError):
        parse_allow_cidrs(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- validate_webhook_url

GOOD_URLS = [
    "https://pos.example.com/webhooks",
    "http://pos.example.com/webhooks",
    "HTTPS://POS.Example.COM/x",
    "https://pos.example.com:8443/hooks?token=abc&x=1",
    "https://pos.example.com.",
    "https://a.b-c.d_e.example/",
    "https://8.8.8.8/hook",
    "https://[2001:db8::1]:8443/hook",
    "http://10.0.0.5:8080/hook",  # internal targets are caught at connect time
    "http://localhost:3000/hook",
    "https://bücher.example/hook",
    "https://123.example.com/",
    "https://example.com:1/",
    "https://example.com:65535/",
    "https://example.com/" + "a" * (2048 - len("https://example.com/")),
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls(url: str) -> None:
    validate_webhook_url(url)


BAD_URLS = [
    ("", "scheme"),
    ("pos.example.com/hook", "scheme"),
    ("ftp://pos.example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://pos.example.com/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("https://", "no host"),
    ("https:///path", "no host"),
    ("https://:443/", "no host"),
    ("https://user:pass@pos.example.com/", "credentials"),
    ("https://user@pos.example.com/", "credentials"),
    ("https://@pos.example.com/", "credentials"),
    ("https://pos.example.com:0/", "port"),
    ("https://pos.example.com:65536/", "malformed"),
    ("https://pos.example.com:99999/", "malformed"),
    ("https://pos.example.com:abc/", "malformed"),
    ("https://pos.example.com:/", "empty port"),
    ("https://[::1/", "malformed"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://pos example.com/", "whitespace"),
    ("https://pos.example.com/\r\nX: y", "whitespace"),
    ("https://pos.example.com/\x00", "control"),
    ("https://pos.example.com\\@evil.com/", "'\\'"),
    ("https://-bad-.example.com/", "not a valid host name"),
    ("https://bad..example.com/", "not a valid host name"),
    ("https://" + "a" * 64 + ".example.com/", "not a valid host name"),
    ("https://exa!mple.com/", "not a valid host name"),
    ("https://2130706433/", "non-standard IPv4"),
    ("https://0x7f000001/", "non-standard IPv4"),
    ("https://0x7f.1/", "non-standard IPv4"),
    ("https://127.1/", "non-standard IPv4"),
    ("https://0177.0.0.1/", "non-standard IPv4"),
    ("https://127.000.000.001/", "non-standard IPv4"),
    ("https://example.com/" + "a" * 2048, "longer than 2048"),
    ("https://" + ("a" * 60 + ".") * 5 + "com/", "1-253"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_webhook_url(url)
    assert message in info.value.detail


def test_url_must_be_a_string() -> None:
    with pytest.raises(ValidationError):
        validate_webhook_url(b"https://example.com/")  # type: ignore[arg-type]


def test_require_https() -> None:
    validate_webhook_url("https://pos.example.com/", require_https=True)
    with pytest.raises(ValidationError, match="must be https"):
        validate_webhook_url("http://pos.example.com/", require_https=True)


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("http://10.0.0.5/hook", [], False),
        ("http://10.0.0.5/hook", ["10.0.0.0/8"], True),
        ("http://127.0.0.1:8080/", [], False),
        ("http://[::1]:8080/", [], False),
        ("http://[::ffff:127.0.0.1]/", [], False),
        ("http://169.254.169.254/latest/meta-data/", ["169.254.0.0/16"], False),
        ("https://8.8.8.8/", [], True),
        ("https://pos.example.com/", [], True),  # names are checked after DNS, at connect time
    ],
)
def test_literal_ip_checked_when_allow_cidrs_given(url: str, allow: list[str], ok: bool) -> None:
    validate_webhook_url(url)  # without allow_cidrs only the shape is checked
    if ok:
        validate_webhook_url(url, allow_cidrs=allow)
    else:
        with pytest.raises(ValidationError, match="not reachable"):
            validate_webhook_url(url, allow_cidrs=allow)


def test_module_imports_only_pure_stdlib_and_errors() -> None:
    tree = ast.parse(Path(netguard.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert {name.split(".")[0] for name in imported} <= {
        "__future__",
        "ipaddress",
        "re",
        "collections",
        "urllib",
        "ordercast",
    }
    assert {name for name in imported if name.startswith("ordercast")} <= {"ordercast.errors"}
