"""singer-sdk's standard target tests on ``target-crm``.

The SDK feeds its own sample streams (arrays, camelCase, unicode, schema updates, duplicates, special
characters in names, …). target-crm writes every stream through a mapping, so the test gives it one
mapping per sample stream, made from the SDK's own sample files: ``source_id`` from the stream's first
key property, everything else kept aside in ``extra``. Streams without a key property have no identity
in the hub; their mapping takes ``source_id`` from a field that is absent, so every record of such a
stream is quarantined (the tests only ask that the target does not fail on them).

Two SDK tests expect the target to *raise* on bad input (a SCHEMA without properties, a RECORD before
its SCHEMA). tongbu's targets answer bad input differently, on purpose (``connectors/kit/singer_input.py``):
one line naming the input line, the stream and the problem, a quarantine entry, and the run goes on.
Those two tests are replaced here by that contract, on the SDK's own sample files.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing import target_test_streams as _streams_pkg

from connectors.crm.target import TargetCRM

SDK_STREAMS = Path(_streams_pkg.__path__[0])


def _sample_streams() -> dict[str, str | None]:
    """Every stream the SDK's sample files declare, with its first key property (None: no key)."""
    keys: dict[str, str | None] = {}
    for path in sorted(SDK_STREAMS.glob("*.singer")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "SCHEMA":
                props = msg.get("key_properties") or []
                keys.setdefault(msg["stream"], props[0] if props else None)
    return keys


def _mapping_file() -> Path:
    docs = []
    for stream, key in _sample_streams().items():
        docs.append(
            {
                "version": 1,
                "name": f"sdk_{len(docs)}",
                "source": {"system": "sdk", "stream": stream},
                "target": {"object": "accounts"},
                "fields": [{"target": "source_id", "source": key or "__no_key__", "transform": ["str"]}],
            }
        )
    out = Path(tempfile.mkdtemp(prefix="tongbu-sdk-target-")) / "sdk_streams.yaml"
    out.write_text(yaml.safe_dump_all(docs, allow_unicode=True), encoding="utf-8")
    return out


CONFIG = {"source_system": "sdk", "mapping_file": str(_mapping_file())}
_SDKTests = get_target_test_class(TargetCRM, config=CONFIG)


def _run_sample(name: str) -> None:
    target = TargetCRM(config=dict(CONFIG))
    target.listen(io.BytesIO((SDK_STREAMS / f"{name}.singer").read_bytes()))


class TestTargetCRMStandard(_SDKTests):
    """singer-sdk's target tests, with the two bad-input ones held to tongbu's contract instead."""

    def test_target_invalid_schema(self, capsys: pytest.CaptureFixture[str]) -> None:
        _run_sample("invalid_schema")
        err = capsys.readouterr().err
        assert "bad Singer message at input line 1, stream 'test_invalid_schema'" in err
        assert "Traceback" not in err

    def test_target_record_before_schema(self, capsys: pytest.CaptureFixture[str]) -> None:
        from tongbu.db import get_engine
        from tongbu.hub.store import HubStore
        from tongbu.state.store import Quarantine

        _run_sample("record_before_schema")
        err = capsys.readouterr().err
        assert "bad Singer message at input line 1, stream 'test_record_before_schema'" in err
        assert "Traceback" not in err
        engine = get_engine()
        [entry] = Quarantine(engine).list()
        assert "before any usable SCHEMA" in entry["reason"]
        with engine.connect() as conn:  # the record after the SCHEMA still landed
            assert HubStore(engine).get(conn, "accounts", "sdk", "2") is not None
