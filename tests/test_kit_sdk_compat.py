"""singer-sdk internals tongbu relies on, through connectors/kit/sdk_compat.py only.

Each test pins the signature and the behaviour of one private SDK method; an SDK upgrade that changes
either fails here, by name, instead of silently breaking bookmarks or quarantine.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Iterable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink, Sink

from connectors.kit import sdk_compat
from connectors.kit.sdk_compat import (
    INVALID_RECORD_KEY,
    CustomBookmarkStream,
    QuarantiningSinkMixin,
    write_starting_replication_value,
)

ROOT = Path(__file__).resolve().parent.parent


def params(fn: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


def test_the_private_signatures_we_override_or_call() -> None:
    P = inspect.Parameter
    assert params(Stream._increment_stream_state) == [
        ("self", P.POSITIONAL_OR_KEYWORD),
        ("latest_record", P.POSITIONAL_OR_KEYWORD),
        ("context", P.KEYWORD_ONLY),
    ]
    assert params(Sink._validate_and_parse) == [
        ("self", P.POSITIONAL_OR_KEYWORD),
        ("record", P.POSITIONAL_OR_KEYWORD),
    ]
    assert params(Stream._write_starting_replication_value) == [
        ("self", P.POSITIONAL_OR_KEYWORD),
        ("context", P.POSITIONAL_OR_KEYWORD),
    ]
    # the sink reads the SDK's validator from this attribute
    assert "_validator" in inspect.getsource(Sink.__init__)


def test_no_other_module_touches_these_internals() -> None:
    names = ("_increment_stream_state", "_validate_and_parse", "_write_starting_replication_value")
    offenders = []
    for folder in ("connectors", "pipelines", "tongbu", "dagster_project", "mappings"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(sdk_compat.__file__):
                continue
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n in text]
    assert offenders == []


class _Counting(CustomBookmarkStream):
    name = "things"
    primary_keys = ("id",)
    replication_key = "updated_at"
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType), th.Property("updated_at", th.StringType)
    ).to_dict()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        # re-reads an older record at the end, as a lookback window does
        yield from ({"id": i, "updated_at": f"2024-01-0{d}"} for i, d in ((1, 1), (2, 2), (3, 2), (1, 1)))

    def update_bookmark(self, state: dict[str, Any], record: Any) -> None:
        key = (record["updated_at"], record["id"])
        if "pair" not in state or key > tuple(state["pair"]):
            state["pair"] = list(key)
            state["calls"] = state.get("calls", 0) + 1


class _Tap(Tap):
    name = "tap-compat"
    config_jsonschema = th.PropertiesList().to_dict()

    def discover_streams(self) -> list[Stream]:
        return [_Counting(self)]


def test_custom_bookmark_is_called_for_every_record_of_a_sync() -> None:
    tap = _Tap(config={})
    with redirect_stdout(io.StringIO()) as out:
        tap.sync_all()
    state = tap.state["bookmarks"]["things"]
    assert state["pair"] == ["2024-01-02", 3] and state["calls"] == 3  # the re-read did not move it back
    assert '"type":"STATE"' in out.getvalue().replace(" ", "")


def test_write_starting_replication_value_sets_the_starting_state() -> None:
    tap = _Tap(
        config={},
        state={
            "bookmarks": {"things": {"replication_key": "updated_at", "replication_key_value": "2024-01-01"}}
        },
    )
    stream = tap.streams["things"]
    write_starting_replication_value(stream)
    assert stream.get_starting_replication_key_value(None) == "2024-01-01"
    write_starting_replication_value(object())  # not an SDK stream: nothing to do


SEEN: list[dict[str, Any]] = []


class _Sink(QuarantiningSinkMixin, BatchSink):
    def process_batch(self, context: dict) -> None:
        SEEN.extend(context["records"])


def test_invalid_records_are_marked_not_raised() -> None:
    from singer_sdk import Target

    class _Target(Target):
        name = "target-compat"
        config_jsonschema = th.PropertiesList().to_dict()
        default_sink_class = _Sink

    target = _Target(config={})
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}},
    }
    lines = [
        {"type": "SCHEMA", "stream": "s", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "s", "record": {"id": "not-a-number", "at": "2024-01-01T00:00:00Z"}},
        {"type": "RECORD", "stream": "s", "record": {"id": 2, "at": "2024-01-01T00:00:00Z"}},
    ]
    target.listen(io.StringIO("\n".join(json.dumps(x) for x in lines)))
    bad, good = SEEN
    assert bad[INVALID_RECORD_KEY].startswith("schema: ") and INVALID_RECORD_KEY not in good
    assert good["at"] == "2024-01-01T00:00:00Z"  # passed on as it came (no timestamp parsing)
