"""PostgreSQL and Redis for the tests: where they are, and skipping (or, with
ORDERCAST_REQUIRE_SERVICES=1 as in CI, failing) when they are unreachable."""

from __future__ import annotations

import os
import socket

import pytest

PG_HOST = os.environ.get("ORDERCAST_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ORDERCAST_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ORDERCAST_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("ORDERCAST_TEST_PG_DB", "test")
REDIS_URL = os.environ.get("ORDERCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("ORDERCAST_REQUIRE_SERVICES") == "1"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and ORDERCAST_REQUIRE_SERVICES=1")
    pytest.skip(message)
