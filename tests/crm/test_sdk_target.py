"""singer-sdk's standard target tests on ``target-crm``.

The SDK feeds its own sample streams (arrays, camelCase, unicode, schema updates, duplicates, special
characters in names, …). target-crm writes every stream through a mapping, so the test gives it one
mapping per sample stream, made from the SDK's own sample files: ``source_id`` from the stream's first
key property, everything else kept aside in ``extra``. Streams without a key property have no identity
in the hub; their mapping takes ``source_id`` from a field that is absent, so every record of such a
stream is quarantined (the tests only ask that the target does not fail on them).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

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


TestTargetCRMStandard = get_target_test_class(
    TargetCRM, config={"source_system": "sdk", "mapping_file": str(_mapping_file())}
)
