"""Fixtures for Fxiaoke: a running simulator and a client on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.fxiaoke.client import FxiaokeClient
from connectors.fxiaoke.simulator import FxiaokeSimulator
from connectors.kit.settings import HttpSettings

FAST = HttpSettings(
    request_timeout=10, max_retries=6, backoff_base=0.01, backoff_max=0.05, max_retry_seconds=60
)


def client_for(sim: FxiaokeSimulator, **kwargs: Any) -> FxiaokeClient:
    """A client of ``sim`` with short backoffs (its own token cache unless one is given)."""
    from connectors.kit.tokens import MemoryTokenCache

    c = sim.credentials()
    kwargs.setdefault("token_cache", MemoryTokenCache())
    kwargs.setdefault("settings", FAST)
    return FxiaokeClient(
        sim.base_url,
        app_id=c["app_id"],
        app_secret=c["app_secret"],
        permanent_code=c["permanent_code"],
        open_user_id=c["open_user_id"],
        **kwargs,
    )


@pytest.fixture
def fx() -> Iterator[FxiaokeSimulator]:
    with FxiaokeSimulator(records=8, seed=5) as s:
        yield s


@pytest.fixture
def fx_client(fx: FxiaokeSimulator) -> Iterator[FxiaokeClient]:
    client = client_for(fx)
    yield client
    client.close()
