"""Fixtures for the Kingdee write path: a running simulator, a client and a spoke on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.kingdee.client import KingdeeClient
from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kingdee.spoke import KingdeeSpoke


@pytest.fixture
def sim() -> Iterator[KingdeeSimulator]:
    with KingdeeSimulator(records=8, orders=4, receivables=0, seed=5) as s:
        yield s


def client_for(sim: KingdeeSimulator) -> KingdeeClient:
    c = sim.credentials()
    return KingdeeClient(
        sim.base_url,
        acct_id=c["acct_id"],
        username=c["username"],
        password=c["password"],
        max_retries=3,
        backoff_base=0.01,
        backoff_max=0.05,
    )


@pytest.fixture
def client(sim: KingdeeSimulator) -> Iterator[KingdeeClient]:
    with client_for(sim) as c:
        yield c


@pytest.fixture
def spoke(client: KingdeeClient) -> KingdeeSpoke:
    return KingdeeSpoke(client)
