"""Fixtures for the security suite: the two-tenant estate on SQLite."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from estate import Estate, build_estate

from ordercast.runtime import Runtime


@pytest.fixture
async def estate(runtime: Runtime) -> AsyncIterator[Estate]:
    async for e in build_estate(runtime):
        yield e
