"""Token cache: encrypted, refreshed ahead of expiry, once for all workers, refresh tokens written back first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.helpers.vault import key_text, new_key_source, scan_files
from tongbu.db import dispose_engines
from tongbu.vault import ConcurrentUpdateError, ReauthRequiredError, Secret, TokenCache, TokenGrant, Vault
from tongbu.vault.tables import audit_t, token_t

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vault(isolated: Path) -> Vault:
    return Vault.initialize(f"sqlite:///{isolated / 'home' / 'hub.db'}", key_source=new_key_source())


def test_margin_and_refresh_before_expiry(vault: Vault) -> None:
    clock = FakeClock()
    cache = TokenCache(vault, clock=clock)
    assert cache.refresh_at(0, 7200) == 6480  # WeCom: 10 % of 7,200 s
    assert cache.refresh_at(0, 300) == 240  # the 60 s floor
    assert cache.refresh_at(0, 60) == 30  # never more than half the lifetime
    issued: list[str] = []

    def fetch(_rt: Secret | None) -> TokenGrant:
        issued.append(f"wecom-token-{len(issued)}-abcdef")
        return TokenGrant(issued[-1], expires_in=7200)

    assert cache.get("wecom", "access_token", fetch).get_secret_value() == "wecom-token-0-abcdef"
    clock.now += 6479
    assert cache.get("wecom", "access_token", fetch).get_secret_value() == "wecom-token-0-abcdef"
    # A second process (fresh cache) sees the stored, encrypted token instead of fetching.
    assert (
        TokenCache(vault, clock=clock).get("wecom", "access_token", fetch).get_secret_value()
        == "wecom-token-0-abcdef"
    )
    clock.now += 2
    assert cache.get("wecom", "access_token", fetch).get_secret_value() == "wecom-token-1-abcdef"
    assert len(issued) == 2
    with vault.engine.connect() as conn:
        row = conn.execute(select(token_t)).one()
    assert b"wecom-token" not in bytes(row.ciphertext) and row.token_version == 2


def test_single_flight_across_threads(vault: Vault) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def slow_fetch(_rt: Secret | None) -> TokenGrant:
        with lock:
            calls.append(1)
        time.sleep(0.3)
        return TokenGrant("thread-shared-token-value", expires_in=7200)

    caches = [TokenCache(vault), TokenCache(vault)]  # two "processes" worth of state, same DB
    results: list[str] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        barrier.wait()
        results.append(caches[i % 2].get("kingdee", "session", slow_fetch).get_secret_value())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["thread-shared-token-value"] * 16
    assert len(calls) == 1


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from tongbu.vault import TokenCache, TokenGrant, Vault
    from tongbu.vault.keys import EnvKeySource
    start_at, log_path = float(sys.argv[1]), sys.argv[2]
    vault = Vault(os.environ["TONGBU_DATABASE_URL"], key_source=EnvKeySource())
    vault.unlock()

    def fetch(_rt):
        with open(log_path, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        return TokenGrant("process-shared-token-" + "x" * 16, expires_in=7200)

    while time.time() < start_at:
        time.sleep(0.001)
    print(TokenCache(vault, poll_interval=0.01).get("wecom", "access_token", fetch).get_secret_value())
    """
)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_single_flight_across_processes(isolated: Path, backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        _processes_refresh_once(isolated, f"sqlite:///{isolated / 'home' / 'hub.db'}")
        return
    url = request.getfixturevalue("pg_url")
    _processes_refresh_once(isolated, url)


def _processes_refresh_once(isolated: Path, url: str) -> None:
    key = new_key_source()
    Vault.initialize(url, key_source=key)
    dispose_engines()
    log_path = isolated / "refresh.log"
    env = {
        **os.environ,
        "TONGBU_DATABASE_URL": url,
        "TONGBU_MASTER_KEY": key_text(key),
        "PYTHONPATH": str(REPO),
    }
    start_at = time.time() + 4.0  # all workers import first, then start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(start_at), str(log_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {"process-shared-token-" + "x" * 16}
    assert len(log_path.read_text().split()) == 1, "exactly one process may call the token endpoint"


def test_others_use_the_still_valid_token_while_one_refreshes(vault: Vault) -> None:
    clock = FakeClock()
    first = TokenCache(vault, clock=clock)
    first.get("wecom", "access_token", lambda _rt: TokenGrant("old-token-still-valid", 7200))
    clock.now += 6500  # inside the safety margin: due for refresh, not yet expired
    started, release = threading.Event(), threading.Event()

    def slow(_rt: Secret | None) -> TokenGrant:
        started.set()
        release.wait(10)
        return TokenGrant("new-token-after-refresh", 7200)

    t = threading.Thread(target=lambda: TokenCache(vault, clock=clock).get("wecom", "access_token", slow))
    t.start()
    assert started.wait(10)
    # Another worker does not block on the refresh: the old token is still valid for ~700 s.
    other = TokenCache(vault, clock=clock)
    assert (
        other.get(
            "wecom", "access_token", lambda _rt: pytest.fail("must not refresh twice")
        ).get_secret_value()
        == "old-token-still-valid"
    )
    release.set()
    t.join(10)
    assert (
        TokenCache(vault, clock=clock)
        .get("wecom", "access_token", lambda _rt: pytest.fail("fresh"))
        .get_secret_value()
        == "new-token-after-refresh"
    )


def test_invalidate_only_that_token(vault: Vault) -> None:
    n = [0]

    def fetch(_rt: Secret | None) -> TokenGrant:
        n[0] += 1
        return TokenGrant(f"token-number-{n[0]}", 7200)

    a, b = TokenCache(vault), TokenCache(vault)
    seen_a = a.get("wecom", "access_token", fetch)
    seen_b = b.get("wecom", "access_token", fetch)
    assert seen_a == seen_b and n[0] == 1
    # Both workers get "40014 invalid access_token"; only the first invalidation counts.
    assert a.invalidate("wecom", "access_token", token=seen_a) is True
    assert a.get("wecom", "access_token", fetch).get_secret_value() == "token-number-2"
    assert b.invalidate("wecom", "access_token", token=seen_b) is False
    assert b.get("wecom", "access_token", fetch).get_secret_value() == "token-number-2"
    assert n[0] == 2


def test_rotated_refresh_token_written_back_with_access_token(vault: Vault) -> None:
    vault.set("crm.refresh_token", "refresh-token-generation-1")
    clock = FakeClock()
    cache = TokenCache(vault, clock=clock)
    presented: list[str] = []

    def oauth(rt: Secret | None) -> TokenGrant:
        assert rt is not None
        presented.append(rt.get_secret_value())
        gen = len(presented) + 1
        return TokenGrant(
            f"access-token-{gen}", expires_in=3600, refresh_token=f"refresh-token-generation-{gen}"
        )

    assert (
        cache.get("crm", "access_token", oauth, refresh_token="crm.refresh_token").get_secret_value()
        == "access-token-2"
    )
    assert vault.get("crm.refresh_token").get_secret_value() == "refresh-token-generation-2"
    assert vault.info("crm.refresh_token").version == 2
    clock.now += 3600
    cache.get("crm", "access_token", oauth, refresh_token="crm.refresh_token")
    assert presented == ["refresh-token-generation-1", "refresh-token-generation-2"]
    assert vault.verify().ok


def test_access_token_not_handed_out_unless_new_refresh_token_is_stored(vault: Vault) -> None:
    vault.set("crm.refresh_token", "refresh-token-generation-1")
    other_writer = Vault(vault.engine, key_source=vault.key_source)

    def oauth(rt: Secret | None) -> TokenGrant:
        other_writer.set("crm.refresh_token", "operator-reauthorised-token")  # the CAS will now fail
        return TokenGrant("access-token-never-seen", 3600, refresh_token="refresh-token-generation-2")

    with pytest.raises(ConcurrentUpdateError, match="default/crm.refresh_token"):
        TokenCache(vault).get("crm", "access_token", oauth, refresh_token="crm.refresh_token")
    with vault.engine.connect() as conn:
        assert conn.execute(select(token_t.c.ciphertext)).scalar_one() is None
    assert vault.get("crm.refresh_token").get_secret_value() == "operator-reauthorised-token"


def test_interrupted_refresh_requires_reauthorisation(vault: Vault) -> None:
    vault.set("crm.refresh_token", "refresh-token-maybe-spent")
    clock = FakeClock()
    cache = TokenCache(vault, clock=clock, lease_seconds=30)
    cache.get(
        "crm",
        "access_token",
        lambda _rt: TokenGrant("a1-token", 60),
        refresh_token="crm.refresh_token",
        rotating_refresh_token=False,
    )
    # Simulate a worker killed after sending the refresh token: mark left, lease expired.
    with vault.engine.begin() as conn:
        conn.execute(
            update(token_t).values(
                refresh_in_flight=1,
                lease_owner="dead-worker",
                lease_until=clock.now - 1,
                refresh_at=0.0,
                expires_at=0.0,
            )
        )
    calls: list[int] = []
    with pytest.raises(ReauthRequiredError, match="tongbu vault set crm.refresh_token") as info:
        TokenCache(vault, clock=clock).get(
            "crm",
            "access_token",
            lambda _rt: calls.append(1) or TokenGrant("x" * 10, 60),
            refresh_token="crm.refresh_token",
        )
    assert calls == [] and "refresh-token-maybe-spent" not in str(info.value)
    with vault.engine.connect() as conn:
        actions = list(conn.execute(select(audit_t.c.action)).scalars())
    assert "token.reauth_required" in actions
    # No retry loop: asking again gives the same answer without calling the provider.
    with pytest.raises(ReauthRequiredError):
        TokenCache(vault, clock=clock).get(
            "crm",
            "access_token",
            lambda _rt: calls.append(1) or TokenGrant("y" * 10, 60),
            refresh_token="crm.refresh_token",
        )
    assert calls == []
    # The operator re-authorises: a new refresh-token version clears the condition.
    vault.set("crm.refresh_token", "refresh-token-fresh-grant")
    token = TokenCache(vault, clock=clock).get(
        "crm",
        "access_token",
        lambda rt: TokenGrant("a2-token-ok", 60, refresh_token="refresh-token-next-one"),
        refresh_token="crm.refresh_token",
    )
    assert token.get_secret_value() == "a2-token-ok"


_KILLED_REFRESHER = textwrap.dedent(
    """
    import os, sys, time
    from tongbu.vault import TokenCache, TokenGrant, Vault
    from tongbu.vault.keys import EnvKeySource
    vault = Vault(os.environ["TONGBU_DATABASE_URL"], key_source=EnvKeySource())

    def oauth(rt):
        print("sent", flush=True)   # the refresh token is now on the wire
        time.sleep(60)

    TokenCache(vault, lease_seconds=1).get("crm", "access_token", oauth, refresh_token="crm.refresh_token")
    """
)


def test_sigkill_mid_refresh_leaves_explicit_reauth_state(isolated: Path) -> None:
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    key = new_key_source()
    vault = Vault.initialize(url, key_source=key)
    vault.set("crm.refresh_token", "refresh-token-on-the-wire")
    env = {
        **os.environ,
        "TONGBU_DATABASE_URL": url,
        "TONGBU_MASTER_KEY": key_text(key),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_REFRESHER], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    time.sleep(1.1)  # the dead worker's lease runs out
    with pytest.raises(ReauthRequiredError, match="default/crm.refresh_token"):
        TokenCache(Vault(url, key_source=key)).get(
            "crm",
            "access_token",
            lambda _rt: pytest.fail("must not reuse"),
            refresh_token="crm.refresh_token",
        )


def test_failed_refresh_releases_lease_and_is_redacted(vault: Vault) -> None:
    vault.set("wecom.corp_secret", "corp-secret-in-error-body")

    def failing(_rt: Secret | None) -> TokenGrant:
        secret = vault.get("wecom.corp_secret").get_secret_value()
        raise RuntimeError(f"gettoken failed: errcode 40001 for corpsecret={secret}")

    with pytest.raises(Exception) as info:
        TokenCache(vault).get("wecom", "access_token", failing)
    assert "corp-secret-in-error-body" not in str(info.value) and "40001" in str(info.value)
    # The lease was released: the next worker refreshes immediately.
    assert TokenCache(vault, wait_timeout=1).get(
        "wecom", "access_token", lambda _rt: TokenGrant("ok-token-123", 60)
    )


def test_tampered_token_row_is_refetched(vault: Vault) -> None:
    cache = TokenCache(vault)
    cache.get("wecom", "access_token", lambda _rt: TokenGrant("first-token-value", 7200))
    with vault.engine.begin() as conn:
        blob = bytearray(conn.execute(select(token_t.c.ciphertext)).scalar_one())
        blob[-1] ^= 1
        conn.execute(update(token_t).values(ciphertext=bytes(blob)))
    assert (
        TokenCache(vault)
        .get("wecom", "access_token", lambda _rt: TokenGrant("second-token-value", 7200))
        .get_secret_value()
        == "second-token-value"
    )


def test_tokens_never_stored_in_clear(vault: Vault, isolated: Path) -> None:
    cache = TokenCache(vault)
    tokens = [f"clear-check-token-{i}-{os.urandom(8).hex()}" for i in range(5)]
    for i, tok in enumerate(tokens):
        cache.get("shop", f"token{i}", lambda _rt, tok=tok: TokenGrant(tok, 7200))
    assert scan_files([p for p in isolated.rglob("*") if p.is_file()], tokens) == []
