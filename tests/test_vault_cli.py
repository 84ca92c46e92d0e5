"""``tongbu vault`` commands: values only via prompt/stdin, one-line errors, non-zero exit codes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tests.helpers.vault import scan_files
from tongbu.db import dispose_engines
from tongbu.vault.tables import secret_t
from tongbu.vault_cli import app

VALUE = "cli-canary-value-8f3a2b"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TONGBU_DATABASE_URL", f"sqlite:///{tmp_path / 'home' / 'hub.db'}")
    monkeypatch.setenv("TONGBU_ACTOR", "cli-test")
    for var in ("TONGBU_MASTER_KEY", "TONGBU_MASTER_KEY_FILE", "TONGBU_VAULT_PASSPHRASE", "TONGBU_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    dispose_engines()


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), input=input)


def assert_one_line_error(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code not in (0, None), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_full_lifecycle(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("init")
    assert result.exit_code == 0, result.output
    key_file = env / "config" / "tongbu" / "master.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    assert "back up" in result.stdout

    result = run("set", "kingdee.app_secret", input=VALUE + "\n")
    assert result.exit_code == 0 and "version 1" in result.stdout and VALUE not in result.output
    assert run("set", "wecom.corp_secret", "--tenant", "acme", input="wecom-" + VALUE).exit_code == 0

    listing = run("list", "--all-tenants")
    assert (
        listing.exit_code == 0
        and "default/kingdee.app_secret" in listing.stdout
        and "acme/wecom.corp_secret" in listing.stdout
    )
    assert VALUE not in listing.output

    masked = run("get", "kingdee.app_secret")
    assert masked.exit_code == 0 and "**********" in masked.stdout and VALUE not in masked.output
    revealed = run("get", "kingdee.app_secret", "--reveal")
    assert revealed.exit_code == 0 and revealed.stdout.strip() == VALUE

    verified = run("verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("ok: 2 secrets")

    audit = run("audit", "kingdee.app_secret")
    assert (
        audit.exit_code == 0
        and "reveal" in audit.stdout
        and "cli-test" in audit.stdout
        and VALUE not in audit.stdout
    )

    new_key = env / "keys" / "master-2.key"
    rotated = run("rotate", "--new-key-file", str(new_key), "--batch-size", "1")
    assert rotated.exit_code == 0, rotated.output
    assert "rotation done: 2 ciphertexts now on key version 2" in rotated.stdout

    # The old key file no longer opens the vault: one clear line, no traceback.
    assert_one_line_error(
        run("get", "kingdee.app_secret"), "default/kingdee.app_secret", "retired", "new master key"
    )
    monkeypatch.setenv("TONGBU_MASTER_KEY_FILE", str(new_key))
    assert run("get", "kingdee.app_secret", "--reveal").stdout.strip() == VALUE
    status = run("status")
    assert "master key v1: raw, retired" in status.stdout and "master key v2: raw, active" in status.stdout

    assert run("delete", "kingdee.app_secret", "--yes").exit_code == 0
    assert run("verify").exit_code == 0
    assert scan_files([p for p in env.rglob("*") if p.is_file()], [VALUE]) == []


def test_value_is_never_taken_from_arguments(env: Path) -> None:
    assert run("init").exit_code == 0
    result = run("set", "kingdee.app_secret", VALUE)
    assert result.exit_code == 2  # usage error: there is no value argument
    assert run("list").stdout.strip() == "no secrets"


def test_errors_are_one_line_name_the_secret_and_say_what_to_do(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line_error(run("get", "kingdee.app_secret"), "no vault yet", "tongbu vault init")
    assert run("init").exit_code == 0
    assert run("set", "kingdee.app_secret", input=VALUE).exit_code == 0
    assert_one_line_error(
        run("get", "kingdee.missing"),
        "default/kingdee.missing does not exist",
        "tongbu vault set kingdee.missing",
    )
    assert_one_line_error(run("set", "no-dot-name", input=VALUE), "<connection>.<field>")
    assert_one_line_error(run("set", "kingdee.empty", input=""), "empty")

    key_file = env / "config" / "tongbu" / "master.key"
    os.chmod(key_file, 0o640)
    assert_one_line_error(run("get", "kingdee.app_secret"), "default/kingdee.app_secret", "chmod 600")
    os.chmod(key_file, 0o600)

    monkeypatch.setenv("TONGBU_MASTER_KEY_FILE", str(env / "nowhere.key"))
    assert_one_line_error(
        run("get", "kingdee.app_secret"), "default/kingdee.app_secret", "does not exist", "restore"
    )

    monkeypatch.setenv("TONGBU_MASTER_KEY", "q" * 43 + "=")
    wrong = run("get", "kingdee.app_secret", "--reveal")
    assert_one_line_error(wrong, "default/kingdee.app_secret", "does not open the vault")
    assert VALUE not in wrong.output + wrong.stderr


def test_verify_reports_each_tampered_secret(env: Path) -> None:
    assert run("init").exit_code == 0
    for name in ("kingdee.app_secret", "kingdee.password", "wecom.corp_secret"):
        assert run("set", name, input=f"{name}-{VALUE}").exit_code == 0
    from tongbu.db import get_engine

    engine = get_engine(os.environ["TONGBU_DATABASE_URL"])
    with engine.begin() as conn:
        rows = {r.field: r for r in conn.execute(secret_t.select())}
        conn.execute(
            update(secret_t)
            .where(secret_t.c.field == "app_secret")
            .values(ciphertext=rows["password"].ciphertext)
        )
        conn.execute(secret_t.delete().where(secret_t.c.field == "corp_secret"))
    result = run("verify")
    assert result.exit_code == 3
    assert (
        "default/kingdee.app_secret" in result.stdout
        and "default/wecom.corp_secret: deleted outside tongbu" in result.stdout
    )
    assert "default/kingdee.password" not in result.stdout.replace("kingdee.password-", "")
    assert_one_line_error(
        run("get", "kingdee.app_secret"), "default/kingdee.app_secret", "tongbu vault set kingdee.app_secret"
    )


def test_passphrase_init_and_rotation(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBU_VAULT_PASSPHRASE", "a long enough first passphrase")
    assert run("init", "--passphrase").exit_code == 0
    assert not (env / "config" / "tongbu" / "master.key").exists()
    assert run("set", "shop.access_token", input=VALUE).exit_code == 0
    monkeypatch.setenv("TONGBU_NEW_VAULT_PASSPHRASE", "a long enough second passphrase")
    assert run("rotate", "--new-passphrase").exit_code == 0
    assert_one_line_error(run("get", "shop.access_token"), "retired")
    monkeypatch.setenv("TONGBU_VAULT_PASSPHRASE", "a long enough second passphrase")
    assert run("get", "shop.access_token", "--reveal").stdout.strip() == VALUE
    monkeypatch.setenv("TONGBU_VAULT_PASSPHRASE", "short")
    assert_one_line_error(run("get", "shop.access_token"), "shorter than 12")


def test_rotation_resume_and_refusals(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("init").exit_code == 0
    assert run("set", "a.b", input=VALUE).exit_code == 0
    assert_one_line_error(run("rotate"), "no new master key")
    from tongbu.vault import FileKeySource, Vault, rotate
    from tongbu.vault.keys import write_key_file

    new_key = write_key_file(env / "keys" / "next.key")
    vault = Vault(os.environ["TONGBU_DATABASE_URL"])
    rotate(vault, FileKeySource(new_key), finish=False)  # e.g. held, or interrupted before finishing
    other = write_key_file(env / "keys" / "other.key")
    assert_one_line_error(run("rotate", "--new-key-file", str(other)), "different new key", "--abort")
    assert "rotation 1→2 running" in run("status").stdout
    assert run("rotate").exit_code == 0  # resumes with whatever key it has
    monkeypatch.setenv("TONGBU_MASTER_KEY_FILE", str(new_key))
    assert run("get", "a.b", "--reveal").stdout.strip() == VALUE


def test_init_refuses_key_inside_data_dir_and_second_init(env: Path) -> None:
    inside = env / "home" / "master.key"
    assert_one_line_error(run("init", "--key-file", str(inside)), "inside the data directory")
    assert not inside.exists()
    assert run("init").exit_code == 0
    second = env / "keys" / "second.key"
    assert_one_line_error(run("init", "--key-file", str(second)), "already has a vault")
    assert not second.exists()  # the key made for the refused init is removed again
