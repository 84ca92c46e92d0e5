"""The vault's storage contract: encryption at rest, integrity, clear errors, audit — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from tests.helpers.vault import (
    canary,
    new_key_source,
    scan_files,
    sqlite_dump,
)
from tongbu.db import Base, get_engine
from tongbu.vault import (
    ConcurrentUpdateError,
    FileKeySource,
    InvalidSecretNameError,
    ManifestError,
    MasterKeyMissingError,
    MasterKeyPermissionError,
    PassphraseKeySource,
    SecretNotFoundError,
    SecretTamperedError,
    Vault,
    VaultAlreadyInitializedError,
    VaultError,
    VaultNotInitializedError,
    WrongMasterKeyError,
    write_key_file,
)
from tongbu.vault.crypto import AuthenticationFailed, aad, open_sealed, parse_header, seal
from tongbu.vault.tables import audit_t, secret_t, state_t

_ENV_VARS = (
    "TONGBU_MASTER_KEY",
    "TONGBU_MASTER_KEY_FILE",
    "TONGBU_VAULT_PASSPHRASE",
    "TONGBU_DATABASE_URL",
    "TONGBU_ACTOR",
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, isolated: Path) -> Iterator[str]:
    """The same tests against SQLite and PostgreSQL (a fresh database from ``pg_url``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{isolated / 'home' / 'hub.db'}"
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def vault(db_url: str) -> Vault:
    return Vault.initialize(db_url, key_source=new_key_source(), actor="tester")


# ---------------------------------------------------------------------------------------------------
# basics


def test_set_get_roundtrip_versions_and_metadata(vault: Vault) -> None:
    assert vault.set("kingdee.app_secret", "first-value") == 1
    assert vault.set("kingdee.app_secret", "second-value") == 2
    secret = vault.get("kingdee.app_secret")
    assert secret.get_secret_value() == "second-value"
    assert (
        "second-value" not in repr(secret)
        and "second-value" not in str(secret)
        and "second-value" not in f"{secret}"
    )
    info = vault.info("kingdee.app_secret")
    assert (info.version, info.key_version, info.updated_by) == (2, 1, "tester")
    assert [i.name.short for i in vault.list()] == ["kingdee.app_secret"]


def test_tenants_are_separate(vault: Vault) -> None:
    vault.set("wecom.corp_secret", "tenant-a-value", tenant="a")
    vault.set("wecom.corp_secret", "tenant-b-value", tenant="b")
    assert vault.get("wecom.corp_secret", tenant="a").get_secret_value() == "tenant-a-value"
    assert vault.get("wecom.corp_secret", tenant="b").get_secret_value() == "tenant-b-value"
    with pytest.raises(SecretNotFoundError, match="default/wecom.corp_secret"):
        vault.get("wecom.corp_secret")
    assert {str(i.name) for i in vault.list(tenant=None)} == {"a/wecom.corp_secret", "b/wecom.corp_secret"}


def test_compare_and_set(vault: Vault) -> None:
    vault.set("crm.refresh_token", "rt-one-value", expected_version=0)
    with pytest.raises(ConcurrentUpdateError, match="default/crm.refresh_token"):
        vault.set("crm.refresh_token", "rt-two-value", expected_version=0)
    assert vault.set("crm.refresh_token", "rt-two-value", expected_version=1) == 2
    assert vault.get("crm.refresh_token").get_secret_value() == "rt-two-value"


def test_set_many_is_atomic(vault: Vault) -> None:
    vault.set("a.x", "value-ax-1")
    with pytest.raises(ConcurrentUpdateError):
        vault.set_many({"b.y": "value-by-1", "a.x": "value-ax-2"}, expected_versions={"a.x": 7})
    assert not vault.exists("b.y")
    assert vault.get("a.x").get_secret_value() == "value-ax-1"
    assert vault.verify().ok


def test_delete_is_recorded_not_flagged(vault: Vault) -> None:
    vault.set("shop.token", "shop-token-value")
    old = _rows(vault)["shop.token@default"]
    vault.delete("shop.token")
    with pytest.raises(SecretNotFoundError):
        vault.get("shop.token")
    assert vault.verify().ok
    # The deleted ciphertext cannot be replayed into a re-created secret of the same name and version:
    # the manifest pins the exact ciphertext.
    assert vault.set("shop.token", "shop-token-value-2") == 1
    _set_ct(vault, _rows(vault)["shop.token@default"]["id"], ciphertext=old["ciphertext"])
    with pytest.raises(SecretTamperedError, match="default/shop.token"):
        vault.get("shop.token")


@pytest.mark.parametrize("name", ["nodot", ".field", "conn.", "bad conn.field", "conn/x.field", "c.f\n"])
def test_invalid_names_rejected(vault: Vault, name: str) -> None:
    with pytest.raises(InvalidSecretNameError):
        vault.set(name, "some-value")


def test_unicode_values(vault: Vault) -> None:
    vault.set("kingdee.password", "金蝶-密码-🔑")
    assert vault.get("kingdee.password").get_secret_value() == "金蝶-密码-🔑"


# ---------------------------------------------------------------------------------------------------
# cryptographic format


def test_ciphertext_format_nonce_and_aad() -> None:
    key = os.urandom(32)
    ctx = aad("secret", tenant="t", connection="c", field="f", version=1, key_version=3)
    a, b = seal(key, b"same", ctx, key_version=3), seal(key, b"same", ctx, key_version=3)
    assert a[:4] == b"TBV1" and parse_header(a).key_version == 3
    assert a[8:20] != b[8:20], "every encryption draws a fresh 96-bit nonce"
    assert open_sealed(key, a, ctx) == b"same"
    for other in (
        aad("secret", tenant="t2", connection="c", field="f", version=1, key_version=3),
        aad("secret", tenant="t", connection="c2", field="f", version=1, key_version=3),
        aad("secret", tenant="t", connection="c", field="f2", version=1, key_version=3),
        aad("secret", tenant="t", connection="c", field="f", version=1, key_version=4),
        aad("secret", tenant="t", connection="c", field="f", version=2, key_version=3),
    ):
        with pytest.raises(AuthenticationFailed):
            open_sealed(key, a, other)
    with pytest.raises(AuthenticationFailed):
        open_sealed(os.urandom(32), a, ctx)
    nonces = {seal(key, b"x", ctx, key_version=1)[8:20] for _ in range(20000)}
    assert len(nonces) == 20000


# ---------------------------------------------------------------------------------------------------
# tampering: every case is detected and names the secret


def _rows(vault: Vault) -> dict[str, dict]:
    with vault.engine.connect() as conn:
        return {
            f"{r.connection}.{r.field}@{r.tenant}": dict(r._mapping) for r in conn.execute(select(secret_t))
        }


def _set_ct(vault: Vault, row_id: int, **values: object) -> None:
    with vault.engine.begin() as conn:
        conn.execute(update(secret_t).where(secret_t.c.id == row_id).values(**values))


def _fresh(vault: Vault, key_source) -> Vault:  # type: ignore[no-untyped-def]
    return Vault(vault.engine, key_source=key_source, actor="checker")


@pytest.fixture
def planted(vault: Vault) -> Vault:
    vault.set("kingdee.app_secret", "kd-app-secret-value")
    vault.set("kingdee.password", "kd-password-value")
    vault.set("wecom.corp_secret", "wecom-corp-secret-value")
    vault.set("kingdee.app_secret", "kd-app-secret-value", tenant="other")
    return vault


def _assert_detected(vault: Vault, expected: set[str]) -> None:
    fresh = _fresh(vault, vault.key_source)
    report = fresh.verify()
    named = {p.secret for p in report.problems}
    assert expected <= named, report.problems
    for secret in expected:
        tenant, short = secret.split("/", 1)
        with pytest.raises((SecretTamperedError, ManifestError)) as info:
            fresh.get(short, tenant=tenant)
        assert secret in str(info.value) or isinstance(info.value, ManifestError)
        assert "tongbu vault" in str(info.value)


def test_swap_between_fields_detected(planted: Vault) -> None:
    rows = _rows(planted)
    a, b = rows["kingdee.app_secret@default"], rows["kingdee.password@default"]
    _set_ct(planted, a["id"], ciphertext=b["ciphertext"], version=b["version"])
    _set_ct(planted, b["id"], ciphertext=a["ciphertext"], version=a["version"])
    _assert_detected(planted, {"default/kingdee.app_secret", "default/kingdee.password"})


def test_swap_between_connections_detected(planted: Vault) -> None:
    rows = _rows(planted)
    a, b = rows["kingdee.app_secret@default"], rows["wecom.corp_secret@default"]
    _set_ct(planted, a["id"], ciphertext=b["ciphertext"])
    _assert_detected(planted, {"default/kingdee.app_secret"})


def test_copy_between_tenants_detected(planted: Vault) -> None:
    rows = _rows(planted)
    a, b = rows["kingdee.app_secret@default"], rows["kingdee.app_secret@other"]
    _set_ct(planted, b["id"], ciphertext=a["ciphertext"], version=a["version"])
    _assert_detected(planted, {"other/kingdee.app_secret"})


def test_renaming_a_row_detected(planted: Vault) -> None:
    rows = _rows(planted)
    _set_ct(planted, rows["wecom.corp_secret@default"]["id"], field="agent_secret")
    _assert_detected(planted, {"default/wecom.agent_secret", "default/wecom.corp_secret"})


@pytest.mark.parametrize("position", [0, 5, 10, 25, -1])
def test_single_bit_flip_detected(planted: Vault, position: int) -> None:
    row = _rows(planted)["kingdee.password@default"]
    blob = bytearray(row["ciphertext"])
    blob[position] ^= 0x01
    _set_ct(planted, row["id"], ciphertext=bytes(blob))
    _assert_detected(planted, {"default/kingdee.password"})


def test_rollback_to_older_ciphertext_detected(planted: Vault) -> None:
    old = _rows(planted)["kingdee.password@default"]
    planted.set("kingdee.password", "kd-password-rotated")
    _set_ct(
        planted,
        old["id"],
        ciphertext=old["ciphertext"],
        version=old["version"],
        key_version=old["key_version"],
    )
    _assert_detected(planted, {"default/kingdee.password"})
    report = _fresh(planted, planted.key_source).verify()
    assert any(p.kind == "rolled_back" for p in report.problems)


def test_deletion_detected(planted: Vault) -> None:
    with planted.engine.begin() as conn:
        conn.execute(delete(secret_t).where(secret_t.c.field == "corp_secret"))
    report = _fresh(planted, planted.key_source).verify()
    assert [(p.kind, p.secret) for p in report.problems] == [("missing", "default/wecom.corp_secret")]
    with pytest.raises(SecretTamperedError, match="deleted outside tongbu"):
        _fresh(planted, planted.key_source).get("wecom.corp_secret")


def test_whole_manifest_rollback_with_row_detected(planted: Vault) -> None:
    """Restoring the row *and* an older manifest: the manifest generation no longer matches the MAC."""
    with planted.engine.connect() as conn:
        old_state = dict(conn.execute(select(state_t)).one()._mapping)
    old = _rows(planted)["kingdee.password@default"]
    planted.set("kingdee.password", "kd-password-rotated")
    _set_ct(planted, old["id"], ciphertext=old["ciphertext"], version=old["version"])
    with planted.engine.begin() as conn:
        conn.execute(
            update(state_t).values(
                manifest_body=old_state["manifest_body"], manifest_mac=old_state["manifest_mac"]
            )
        )
    report = _fresh(planted, planted.key_source).verify()
    assert any(p.kind == "manifest" for p in report.problems)


def test_forged_manifest_detected_and_writes_refused(planted: Vault) -> None:
    with planted.engine.begin() as conn:
        body = conn.execute(select(state_t.c.manifest_body)).scalar_one()
        conn.execute(update(state_t).values(manifest_body=body.replace('"kd', '"kx', 1) + " "))
    fresh = _fresh(planted, planted.key_source)
    assert any(p.kind == "manifest" for p in fresh.verify().problems)
    with pytest.raises(ManifestError, match="tongbu vault verify"):
        fresh.set("kingdee.app_secret", "laundered-value")


def test_reseal_recovers_after_operator_fix(planted: Vault) -> None:
    row = _rows(planted)["kingdee.password@default"]
    blob = bytearray(row["ciphertext"])
    blob[-1] ^= 0xFF
    _set_ct(planted, row["id"], ciphertext=bytes(blob))
    fresh = _fresh(planted, planted.key_source)
    fresh.set("kingdee.password", "kd-password-reentered")  # re-entering the value is the fix
    assert fresh.verify().ok


def test_tampered_key_wrapping_detected(planted: Vault) -> None:
    from tongbu.vault.tables import datakey_t

    with planted.engine.begin() as conn:
        wrapped = conn.execute(select(datakey_t.c.wrapped_key)).scalar_one()
        blob = bytearray(wrapped)
        blob[-3] ^= 0x10
        conn.execute(update(datakey_t).values(wrapped_key=bytes(blob)))
    with pytest.raises(VaultError, match="tampered key table"):
        _fresh(planted, planted.key_source).get("kingdee.password")


# ---------------------------------------------------------------------------------------------------
# master key problems: clear, named, no values, no partial writes


def test_wrong_master_key(planted: Vault) -> None:
    wrong = _fresh(planted, new_key_source("the wrong key"))
    with pytest.raises(WrongMasterKeyError) as info:
        wrong.get("kingdee.app_secret")
    message = str(info.value)
    assert (
        "default/kingdee.app_secret" in message and "the wrong key" in message and "tongbu vault" in message
    )
    assert "kd-app-secret-value" not in message
    count = planted.secret_count()
    with pytest.raises(WrongMasterKeyError, match="cannot write secret default/new.secret"):
        wrong.set("new.secret", "never-stored-value")
    assert planted.secret_count() == count


def test_missing_key_file(isolated: Path) -> None:
    path = write_key_file(isolated / "keys" / "master.key")
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    Vault.initialize(url, key_source=FileKeySource(path)).set("kingdee.password", "missing-file-value")
    path.unlink()
    with pytest.raises(
        MasterKeyMissingError,
        match=r"cannot read secret default/kingdee.password: .*master\.key does not exist.*restore it",
    ):
        Vault(url, key_source=FileKeySource(path)).get("kingdee.password")


def test_key_file_permissions(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_key_file(isolated / "keys" / "master.key")
    assert (path.stat().st_mode & 0o777) == 0o600
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    Vault.initialize(url, key_source=FileKeySource(path)).set("kingdee.password", "perm-test-value")
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyPermissionError, match="chmod 600"):
        Vault(url, key_source=FileKeySource(path)).get("kingdee.password")
    os.chmod(path, 0o600)
    assert (
        Vault(url, key_source=FileKeySource(path)).get("kingdee.password").get_secret_value()
        == "perm-test-value"
    )


def test_key_file_inside_data_dir_refused(isolated: Path) -> None:
    inside = isolated / "home" / "master.key"
    inside.parent.mkdir(parents=True, exist_ok=True)
    write_key_file(inside)
    with pytest.raises(MasterKeyPermissionError, match="inside the data directory"):
        Vault.initialize(f"sqlite:///{isolated / 'home' / 'hub.db'}", key_source=FileKeySource(inside))


def test_env_and_default_key_file_sources(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    with pytest.raises(MasterKeyMissingError, match="TONGBU_MASTER_KEY"):
        Vault.initialize(url)
    default = write_key_file(isolated / "config" / "tongbu" / "master.key")
    Vault.initialize(url).set("x.y", "default-file-value")  # picked up from $XDG_CONFIG_HOME
    monkeypatch.setenv("TONGBU_MASTER_KEY", default.read_text().strip())
    default.unlink()
    assert Vault(url).get("x.y").get_secret_value() == "default-file-value"
    monkeypatch.setenv("TONGBU_MASTER_KEY", "not-a-key")
    with pytest.raises(VaultError, match="not a 32-byte key") as info:
        Vault(url).get("x.y")
    assert "not-a-key" not in str(info.value)


def test_passphrase_vault(isolated: Path) -> None:
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    Vault.initialize(url, key_source=PassphraseKeySource("correct horse battery staple")).set(
        "a.b", "pp-value-1"
    )
    assert (
        Vault(url, key_source=PassphraseKeySource("correct horse battery staple"))
        .get("a.b")
        .get_secret_value()
        == "pp-value-1"
    )
    with pytest.raises(WrongMasterKeyError):
        Vault(url, key_source=PassphraseKeySource("incorrect horse battery")).get("a.b")
    with sqlite3.connect(isolated / "home" / "hub.db") as conn:
        params = conn.execute("select kdf_params from vault_master_keys").fetchone()[0]
    assert '"algorithm": "argon2id"' in params and '"salt"' in params


def test_not_initialized_and_double_init(isolated: Path) -> None:
    url = f"sqlite:///{isolated / 'home' / 'hub.db'}"
    with pytest.raises(VaultNotInitializedError, match="tongbu vault init"):
        Vault(url, key_source=new_key_source()).get("a.b")
    Vault.initialize(url, key_source=new_key_source())
    with pytest.raises(VaultAlreadyInitializedError):
        Vault.initialize(url, key_source=new_key_source())


# ---------------------------------------------------------------------------------------------------
# audit


def test_audit_records_who_what_when_never_the_value(vault: Vault) -> None:
    value = canary("audit")
    vault.set("kingdee.app_secret", value)
    vault.get("kingdee.app_secret")
    with pytest.raises(SecretNotFoundError):
        vault.get("kingdee.nothing")
    with vault.engine.connect() as conn:
        events = [dict(r._mapping) for r in conn.execute(select(audit_t).order_by(audit_t.c.id))]
    actions = [(e["action"], e["connection"], e["field"], e["outcome"]) for e in events]
    assert ("write", "kingdee", "app_secret", "ok") in actions
    assert ("read", "kingdee", "app_secret", "ok") in actions
    assert ("read", "kingdee", "nothing", "SecretNotFoundError") in actions
    assert all(e["actor"] == "tester" and e["at"] is not None for e in events)
    assert all(value not in " ".join(str(v) for v in e.values()) for e in events)


# ---------------------------------------------------------------------------------------------------
# a stolen database reveals nothing


def test_stolen_sqlite_file_wal_and_dump_reveal_no_secret(isolated: Path) -> None:
    from tongbu.vault import TokenCache, TokenGrant, rotate

    db = isolated / "home" / "hub.db"
    url = f"sqlite:///{db}"
    key = new_key_source()
    vault = Vault.initialize(url, key_source=key)
    planted = {f"conn{i}.field{i % 3}": canary(f"plant{i}") for i in range(60)}
    planted["kingdee.password"] = "金蝶-" + canary("unicode")
    vault.set_many(planted)
    for name in list(planted)[:10]:  # overwrite some: old ciphertexts linger in free pages
        planted[name + "_v2"] = planted[name]
        vault.set(name, planted[name] + "-v2")
        planted[name + "_v3"] = planted[name] + "-v2"
    token = canary("access-token")
    TokenCache(vault).get("wecom", "access_token", lambda _rt: TokenGrant(token, 7200))
    vault.get_many(list(planted)[:20])
    values = list(set(planted.values())) + [token]
    wal = Path(str(db) + "-wal")
    assert wal.exists(), "the WAL must be part of what we scan"
    dump = isolated / "dump.sql"
    dump.write_text(sqlite_dump(db))
    assert "vault_secrets" in dump.read_text()
    if shutil.which("sqlite3"):  # the real `sqlite3 hub.db .dump`, as an attacker would run it
        cli_dump = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, check=True).stdout
        assert b"vault_secrets" in cli_dump
        (isolated / "cli-dump.sql").write_bytes(cli_dump)
    files = [p for p in isolated.rglob("*") if p.is_file()]
    assert scan_files(files, values) == []
    rotate(vault, new_key_source(), batch_size=7)
    dump.write_text(sqlite_dump(db))
    assert scan_files([p for p in isolated.rglob("*") if p.is_file()], values) == []


# ---------------------------------------------------------------------------------------------------
# schema


def test_migration_matches_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import tongbu.tables  # noqa: F401

    engine = get_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diff if "vault" in repr(d)] == []
