"""WeComClient: token cache and refresh, backoff on limits, secrets kept out of logs, vault-shared tokens."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connectors.wecom.client import (
    MemoryTokenCache,
    RetryPolicy,
    VaultTokenSource,
    WeComAuthError,
    WeComClient,
    WeComNoRelation,
    WeComRetryExhausted,
)
from connectors.wecom.simulator import WeComSimulator


@pytest.fixture
def sim() -> Iterator[WeComSimulator]:
    s = WeComSimulator(records=50, seed=61)
    s.start()
    yield s
    s.stop()


def make(sim: WeComSimulator, **kw) -> WeComClient:
    sleeps: list[float] = []
    client = WeComClient(
        sim.corp_id,
        sim.credentials()["corp_secret"],
        base_url=sim.base_url + "/cgi-bin/",
        token_cache=MemoryTokenCache(),
        sleep=sleeps.append,
        retry=kw.pop("retry", RetryPolicy(max_retries=4, backoff_base=0.01)),
        **kw,
    )
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_token_is_cached_and_refreshed_on_42001_and_40014(sim: WeComSimulator) -> None:
    client = make(sim)
    for _ in range(3):
        client.get_follow_user_list()
    assert sim.calls["gettoken"] == 1
    sim.expire_tokens()
    client.get_follow_user_list()
    sim.invalidate_tokens()
    client.get_follow_user_list()
    assert sim.calls["gettoken"] == 3 and client.errors[42001] == 1 and client.errors[40014] == 1


def test_token_margin_refetches_before_expiry(sim: WeComSimulator) -> None:
    sim.set_faults("token_ttl=100")
    client = make(sim, token_margin=300)  # margin larger than the lifetime: capped at half the lifetime
    client.get_follow_user_list()
    client.get_follow_user_list()
    assert client.token_margin == 50 and sim.calls["gettoken"] == 1


def test_backoff_on_limits_then_give_up(sim: WeComSimulator) -> None:
    client = make(sim)
    sim.set_faults("throttle=1")
    with pytest.raises(WeComRetryExhausted) as exc:
        client.get_follow_user_list()
    assert exc.value.errcode == 45009 and len(client.sleeps) == 4  # type: ignore[attr-defined]
    sim.set_faults("busy=0.5,concurrency_rate=0.3")
    client2 = make(sim, retry=RetryPolicy(max_retries=29, backoff_base=0.001))
    assert len(client2.get_follow_user_list()) == sim.n_users


def test_errors_are_typed_and_never_carry_secrets(
    sim: WeComSimulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another test's logging setup may have silenced httpx's logger; this test needs its request lines.
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", False)
    monkeypatch.setattr(logging.getLogger("httpx"), "propagate", True)
    secret = sim.credentials()["corp_secret"]
    bad = WeComClient(sim.corp_id, "not-the-secret", base_url=sim.base_url, token_cache=MemoryTokenCache())
    with pytest.raises(WeComAuthError) as exc:
        bad.get_follow_user_list()
    assert exc.value.errcode == 40001 and "not-the-secret" not in str(exc.value)
    client = make(sim)
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        client.get_follow_user_list()
        with pytest.raises(WeComNoRelation):
            client.get_external_contact("wm" + "x" * 30)
    token = client.access_token()
    assert secret not in caplog.text and token not in caplog.text and "access_token=***" in caplog.text
    assert secret not in repr(client) and token not in repr(client._cache.get(client._cache_key))


def test_vault_shares_one_token_between_processes(sim: WeComSimulator, tmp_path, monkeypatch) -> None:
    from tests.helpers.vault import new_key_source
    from tongbu.vault import TokenCache, Vault

    for var in ("TONGBU_MASTER_KEY", "TONGBU_MASTER_KEY_FILE", "TONGBU_VAULT_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    vault = Vault.initialize(f"sqlite:///{tmp_path / 'vault.db'}", key_source=new_key_source(), actor="test")
    # two "processes": separate clients and separate in-memory caches, one vault
    a = make(sim, token_source=VaultTokenSource("wecom", cache=TokenCache(vault)))
    b = make(sim, token_source=VaultTokenSource("wecom", cache=TokenCache(vault)))
    a.get_follow_user_list()
    b.get_follow_user_list()
    assert sim.calls["gettoken"] == 1
    sim.invalidate_tokens()
    b.get_follow_user_list()  # b sees 40014, invalidates exactly that token, fetches once
    a.get_follow_user_list()
    assert sim.calls["gettoken"] == 2
