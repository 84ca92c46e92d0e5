"""The wiring every spoke-writing Singer target does in ``__init__``: ledger, writer, bad input.

A target that writes hub records through a spoke (``target-kingdee``, ``target-fxiaoke``) keeps
its write ledger in ``state_db`` (default ``$TONGBU_HOME/<target name>.sqlite``), writes through a
:class:`~connectors.kit.spoke_target.RecordWriter`, and counts each bad input message (not a bad
STATE) as a failed record. :func:`open_spoke_writer` does all three; :func:`writable_sink` is the
``get_sink_class`` check that a stream is one the target writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink

from connectors.kit.singer_input import BadMessage, attach
from connectors.kit.spoke_target import RecordWriter, WriteLedger

__all__ = ["ledger_path", "ledger_property", "open_spoke_writer", "writable_sink"]


def ledger_path(cfg: Mapping[str, Any], target_name: str) -> Path:
    """The target's ledger file: ``state_db`` if set, else ``$TONGBU_HOME/<target_name>.sqlite``."""
    if cfg.get("state_db"):
        return Path(str(cfg["state_db"]))
    home = Path(os.environ.get("TONGBU_HOME") or Path.home() / ".tongbu")
    return home / f"{target_name}.sqlite"


def ledger_property(target_name: str) -> th.Property[Any]:
    """The ``state_db`` setting of a target whose ledger :func:`ledger_path` places."""
    return th.Property(
        "state_db",
        th.StringType,
        description=f"SQLite file of the write ledger (default: $TONGBU_HOME/{target_name}.sqlite)",
    )


def open_spoke_writer(
    target: Target,
    spoke: Any,
    cfg: Mapping[str, Any],
    *,
    writable: Mapping[str, Sequence[str]],
    identity: Mapping[str, Sequence[str]],
    prefix: str,
) -> tuple[WriteLedger, RecordWriter]:
    """Open ``target``'s ledger and writer, and count its bad input messages as failed records.

    Call in the target's ``__init__`` after ``super().__init__()``; ``prefix`` makes its intent keys.
    """
    ledger = WriteLedger(ledger_path(cfg, target.name))
    writer = RecordWriter(
        spoke, ledger, writable=writable, identity=identity, name=target.name, prefix=prefix
    )

    def bad_input(bad: BadMessage) -> None:
        # a bad STATE loses no record; any other bad message is a record not written
        if bad.kind != "STATE":
            writer.stats["failed"] += 1

    attach(target, bad_input)
    return ledger, writer


def writable_sink(
    target_name: str, writable: Mapping[str, Sequence[str]], stream_name: str, sink: type[BatchSink]
) -> type[BatchSink]:
    """``sink`` for a stream the target writes; any other stream is a one-line error."""
    if stream_name not in writable:
        raise ValueError(f"{target_name} writes the streams {sorted(writable)}, not {stream_name!r}")
    return sink
