"""Secrets never reach logs, exception text, tracebacks, reprs or validation errors."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import BaseModel, ValidationError

from tests.helpers.vault import canary, new_key_source
from tongbu.db import dispose_engines
from tongbu.vault import (
    RedactedError,
    Secret,
    SecretConfigModel,
    Vault,
    install_redaction,
    redact,
    redacting_errors,
    register_secret,
    scrub_exception,
    scrub_mapping,
)
from tongbu.vault.redact import registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def secret_value() -> Iterator[str]:
    value = canary("redact")
    register_secret(value)
    yield value
    registry.discard(value)


@pytest.fixture
def log_stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    install_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # added *after* install: the record factory still covers it
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s %(message)s %(config)s", defaults={"config": ""})
    )
    logger = logging.getLogger(f"tongbu.test.{os.urandom(4).hex()}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_clean_records_are_left_untouched(secret_value: str) -> None:
    install_redaction()
    record = logging.getLogger("tongbu.test.clean").makeRecord(
        "tongbu.test.clean", logging.INFO, __file__, 1, "processed %s rows", (42,), None
    )
    assert (record.msg, record.args) == ("processed %s rows", (42,))


def test_canary_in_log_message_is_masked(
    secret_value: str, log_stream: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log_stream
    logger.info("connecting with password %s", secret_value)
    logger.warning(f"dsn=postgresql://crm:{secret_value}@db/crm")
    logger.debug("headers %r", {"Authorization": f"Bearer {secret_value}"})
    logger.info("extra field", extra={"config": f"secret={secret_value}"})
    out = stream.getvalue()
    assert secret_value not in out
    assert out.count("***") >= 3


def test_exception_and_traceback_in_logs_are_masked(
    secret_value: str, log_stream: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log_stream
    try:
        raise ValueError(f"login failed for app_secret={secret_value}")
    except ValueError:
        logger.exception("sync failed")
    out = stream.getvalue()
    assert "ValueError: login failed for app_secret=***" in out and secret_value not in out


def test_encoded_forms_are_masked(secret_value: str) -> None:
    basic = base64.b64encode(f"kingdee-user:{secret_value}".encode()).decode()
    for text in (
        f"Authorization: Basic {basic}",
        f"url=https://x/?secret={quote(secret_value)}",
        json.dumps({"password": secret_value}),
        repr([secret_value]),
        secret_value.encode().hex(),
    ):
        masked = redact(text)
        assert secret_value not in masked and "***" in masked, text
    assert "user-id" in redact("user-id and other words")  # no collateral damage


def test_short_values_are_not_registered() -> None:
    assert register_secret("abc") is False
    assert redact("abc abc") == "abc abc"


def test_values_read_from_the_vault_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_stream: tuple[logging.Logger, io.StringIO]
) -> None:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path))
    value = canary("from-vault")
    vault = Vault.initialize(f"sqlite:///{tmp_path / 'hub.db'}", key_source=new_key_source())
    vault.set("kingdee.app_secret", value)
    registry.discard(value)
    secret = Vault(vault.engine, key_source=vault.key_source).get("kingdee.app_secret")
    logger, stream = log_stream
    logger.error("oops %s", secret.get_secret_value())
    assert value not in stream.getvalue()
    registry.discard(value)
    dispose_engines()


def test_uncaught_exception_traceback_is_masked() -> None:
    code = textwrap.dedent(
        """
        from tongbu.vault import install_redaction, register_secret
        install_redaction()
        register_secret("uncaught-canary-0123456789")
        def connect(password):
            raise RuntimeError("auth failed with " + password)
        connect("uncaught-canary-0123456789")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1
    assert "RuntimeError: auth failed with ***" in proc.stderr
    assert "uncaught-canary-0123456789" not in proc.stderr


def test_scrub_exception_and_context_manager(secret_value: str) -> None:
    clean = ValueError("nothing to hide")
    assert scrub_exception(clean) is clean
    try:
        try:
            raise KeyError(secret_value)
        except KeyError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        scrubbed = scrub_exception(outer)
    assert isinstance(scrubbed, RedactedError) and secret_value not in str(scrubbed)
    with pytest.raises(RedactedError) as info, redacting_errors():
        raise ConnectionError(f"could not log in as admin:{secret_value}")
    assert "ConnectionError" in str(info.value) and secret_value not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_scrub_mapping_by_key_name_and_value(secret_value: str) -> None:
    record = {
        "name": "ACME",
        "api_key": "unregistered-key-value",
        "nested": {"note": f"pw {secret_value}"},
        "rows": [{"client_secret": "x" * 12}],
        "count": 3,
    }
    scrubbed = scrub_mapping(record)
    assert scrubbed["api_key"] == "***" and scrubbed["rows"][0]["client_secret"] == "***"
    assert secret_value not in json.dumps(scrubbed) and scrubbed["name"] == "ACME" and scrubbed["count"] == 3


# ---------------------------------------------------------------------------------------------------
# secret types


class KingdeeConfig(SecretConfigModel):
    base_url: str
    acct_id: str
    app_secret: Secret
    timeout: int = 30


def test_secret_type_repr_str_format_and_dump() -> None:
    cfg = KingdeeConfig(base_url="http://erp", acct_id="1", app_secret="type-canary-123456")
    for text in (
        repr(cfg),
        str(cfg),
        f"{cfg.app_secret}",
        str(cfg.app_secret),
        cfg.model_dump_json(),
        json.dumps(cfg.model_dump(mode="json")),
    ):
        assert "type-canary-123456" not in text
    assert cfg.app_secret.get_secret_value() == "type-canary-123456"
    assert KingdeeConfig.model_json_schema()["properties"]["app_secret"]["writeOnly"] is True


def test_validation_errors_show_no_value() -> None:
    with pytest.raises(ValidationError) as missing:
        KingdeeConfig(base_url="http://erp", app_secret="missing-field-canary-1")  # acct_id missing
    with pytest.raises(ValidationError) as wrong_type:
        KingdeeConfig(base_url="http://erp", acct_id="1", app_secret=12345678901234)
    with pytest.raises(ValidationError) as other_field:
        KingdeeConfig(base_url="http://erp", acct_id="1", app_secret="other-field-canary-2", timeout="soon")
    assert "missing-field-canary-1" not in str(missing.value)
    assert "12345678901234" not in str(wrong_type.value) and "value hidden" in str(wrong_type.value)
    assert "other-field-canary-2" not in str(other_field.value)

    class PlainModel(BaseModel):  # even without the base class, the field itself never echoes
        token: Secret

    with pytest.raises(ValidationError) as plain:
        PlainModel(token=["list-canary-12345"])
    assert "list-canary-12345" not in str(plain.value) and "input_value='**********'" in str(plain.value)


def test_secret_reference_in_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path))
    vault = Vault.initialize(f"sqlite:///{tmp_path / 'hub.db'}", key_source=new_key_source())
    vault.set("kingdee.app_secret", "ref-model-canary-1", tenant="acme")
    raw = {"base_url": "http://erp", "acct_id": "1", "app_secret": "vault:kingdee.app_secret"}
    unresolved = KingdeeConfig.model_validate(raw)
    assert repr(unresolved.app_secret) == "Secret(ref='vault:kingdee.app_secret')"
    assert (
        unresolved.model_dump(mode="json")["app_secret"] == "vault:kingdee.app_secret"
    )  # safe for run config
    with pytest.raises(Exception, match="never resolved"):
        unresolved.app_secret.get_secret_value()
    resolved = KingdeeConfig.model_validate(raw, context={"vault": vault, "tenant": "acme"})
    assert resolved.app_secret.get_secret_value() == "ref-model-canary-1"
    assert unresolved.app_secret.resolve(vault, tenant="acme").get_secret_value() == "ref-model-canary-1"
    dispose_engines()


def test_dataclass_holding_secret_does_not_leak() -> None:
    @dataclass
    class Creds:
        user: str
        password: Secret

    creds = Creds("admin", Secret("dataclass-canary-1"))
    assert "dataclass-canary-1" not in repr(creds) and "dataclass-canary-1" not in f"{creds}"


def test_pickled_secret_keeps_only_its_reference() -> None:
    import pickle

    ref_only = pickle.loads(pickle.dumps(Secret("pickle-canary-1", ref="vault:a.b")))
    assert ref_only.ref == "vault:a.b" and not ref_only.is_resolved
    assert b"pickle-canary-2" not in pickle.dumps(Secret("pickle-canary-2", ref="vault:a.b"))
