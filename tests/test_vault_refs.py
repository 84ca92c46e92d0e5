"""Connector configs name secrets (``vault:<connection>.<field>``); values appear only when resolved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers.vault import new_key_source
from tongbu.db import dispose_engines
from tongbu.vault import InvalidReferenceError, Secret, SecretNotFoundError, Vault, find_refs, resolve_refs
from tongbu.vault.redact import contains_secret
from tongbu.vault.tables import audit_t


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path))
    v = Vault.initialize(f"sqlite:///{tmp_path / 'hub.db'}", key_source=new_key_source(), actor="runner")
    v.set_many(
        {
            "kingdee.app_secret": "kd-secret-ref-1",
            "kingdee.password": "kd-pass-ref-2",
            "wecom.oauth.refresh_token": "wecom-rt-ref-3",
        }
    )
    v.set("kingdee.app_secret", "kd-secret-tenant-b", tenant="b")
    yield v
    dispose_engines()


CONFIG = {
    "base_url": "http://127.0.0.1:8080",
    "acct_id": "62d0",
    "app_secret": "vault:kingdee.app_secret",
    "auth": {"password": "vault:kingdee.password", "users": ["admin", "vault:kingdee.password"]},
    "wecom": ("vault:wecom.oauth.refresh_token", 3),
    "note": "not a vault: reference",
}


def test_resolve_refs_recursively_and_copies(vault: Vault) -> None:
    out = resolve_refs(CONFIG, vault=vault)
    assert out["app_secret"] == "kd-secret-ref-1"
    assert out["auth"] == {"password": "kd-pass-ref-2", "users": ["admin", "kd-pass-ref-2"]}
    assert out["wecom"] == ("wecom-rt-ref-3", 3)
    assert out["note"] == "not a vault: reference"
    assert CONFIG["app_secret"] == "vault:kingdee.app_secret"  # input untouched
    assert contains_secret("x kd-pass-ref-2 y")  # values registered for redaction
    with vault.engine.connect() as conn:
        reads = conn.execute(select(audit_t.c.field).where(audit_t.c.action == "read")).scalars().all()
    assert sorted(reads) == ["app_secret", "oauth.refresh_token", "password"]


def test_resolve_refs_per_tenant_and_as_secret(vault: Vault) -> None:
    out = resolve_refs({"s": "vault:kingdee.app_secret"}, vault=vault, tenant="b", as_secret=True)
    assert isinstance(out["s"], Secret) and out["s"].get_secret_value() == "kd-secret-tenant-b"
    assert out["s"].ref == "vault:kingdee.app_secret" and "kd-secret" not in repr(out)


def test_missing_secret_named_with_fix(vault: Vault) -> None:
    with pytest.raises(
        SecretNotFoundError, match=r"secret default/shop\.token does not exist.*tongbu vault set shop\.token"
    ):
        resolve_refs({"token": "vault:shop.token"}, vault=vault)
    with pytest.raises(SecretNotFoundError, match="--tenant b"):
        resolve_refs({"token": "vault:kingdee.password"}, vault=vault, tenant="b")


def test_malformed_reference_names_the_key_not_the_value(vault: Vault) -> None:
    with pytest.raises(InvalidReferenceError, match="'auth.password'") as info:
        resolve_refs({"auth": {"password": "vault:oops no dots sk-live-123"}}, vault=vault)
    assert "sk-live-123" not in str(info.value)


def test_find_refs_lists_what_a_config_needs() -> None:
    assert find_refs(CONFIG) == [
        ("app_secret", "vault:kingdee.app_secret"),
        ("auth.password", "vault:kingdee.password"),
        ("auth.users[1]", "vault:kingdee.password"),
        ("wecom[0]", "vault:wecom.oauth.refresh_token"),
    ]
    assert resolve_refs({"plain": 1}) == {"plain": 1}  # no vault (and no key) needed without references
