"""Fixtures more than one test module uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, need_redis


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of the test's own, on a free port; skipped where none is."""
    need_redis()
    with RedisServer(tmp_path) as server:
        yield server.url
