from __future__ import annotations

import pytest

from ordercast.errors import ConfigError
from ordercast.settings import load_settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "HTTP_PORT", "WS_PORT", "DATABASE_URL", "BUS_URL", "MODE"):
        monkeypatch.delenv(f"ORDERCAST_{name}", raising=False)
    s = load_settings()
    assert (s.host, s.http_port, s.ws_port) == ("127.0.0.1", 8080, 6001)
    assert (s.database_url, s.bus_url) == ("sqlite:///./ordercast.db", "memory://")


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERCAST_HTTP_PORT", "9000")
    assert load_settings().http_port == 9000
    assert load_settings(http_port=9100).http_port == 9100


def test_production_needs_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERCAST_MODE", "production")
    monkeypatch.delenv("ORDERCAST_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="ORDERCAST_ADMIN_TOKEN"):
        load_settings()
    monkeypatch.setenv("ORDERCAST_ADMIN_TOKEN", "a" * 32)
    monkeypatch.setenv("ORDERCAST_SECRET_KEY", "b" * 32)
    monkeypatch.delenv("ORDERCAST_JWT_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("ORDERCAST_JWT_PRIVATE_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match="ORDERCAST_JWT_PRIVATE_KEY"):
        load_settings()  # the key that signs access tokens is never generated in production
    monkeypatch.setenv("ORDERCAST_JWT_PRIVATE_KEY_FILE", "/etc/ordercast/jwt.pem")
    assert load_settings().mode == "production"


def test_tls_needs_cert_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERCAST_TLS_KEY", raising=False)
    with pytest.raises(ConfigError, match="ORDERCAST_TLS_KEY"):
        load_settings(tls_cert="/tmp/cert.pem")
    s = load_settings(tls_cert="/tmp/cert.pem", tls_key="/tmp/key.pem", http_port=8443)
    assert s.tls and s.base_url == "https://127.0.0.1:8443"


def test_bad_port_fails_fast() -> None:
    with pytest.raises(ConfigError, match="http_port"):
        load_settings(http_port=70000)


def test_a_dead_nodes_members_are_reaped_within_30_seconds() -> None:
    # timeout + one heartbeat is how long a dead node's presence members may stay listed.
    assert load_settings(cluster_node_timeout=25, cluster_heartbeat=5).cluster_node_timeout == 25
    with pytest.raises(ConfigError, match="at most 30 s"):
        load_settings(cluster_node_timeout=28, cluster_heartbeat=5)
    defaults = load_settings()
    assert defaults.cluster_node_timeout + defaults.cluster_heartbeat == 12
