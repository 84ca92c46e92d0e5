"""A Singer tap base for the common shape: fixed streams reading through one shared API client.

Most connector taps are the same forty lines: a list of stream classes, a client created on first use
from the config, and the read settings (``page_size``, ``lookback_seconds``, ``start_date``). A tap
declares :attr:`ClientTap.stream_types`, implements :meth:`ClientTap.make_client`, and puts
:func:`read_properties` into its ``config_jsonschema``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

__all__ = ["ClientTap", "read_properties"]

ClientT = TypeVar("ClientT")


def read_properties(
    *,
    page_size: int,
    page_size_description: str,
    lookback_seconds: float = 0,
    lookback_description: str = "Re-read this many seconds before the bookmark to catch late commits",
    start_date: str | None = "Ignore records changed before this time",
) -> list[th.Property[Any]]:
    """The incremental read settings: ``page_size``, ``lookback_seconds`` and (unless ``start_date`` is
    None) ``start_date``, whose description ``start_date`` is."""
    props: list[th.Property[Any]] = [
        th.Property("page_size", th.IntegerType, default=page_size, description=page_size_description),
        th.Property(
            "lookback_seconds", th.NumberType, default=lookback_seconds, description=lookback_description
        ),
    ]
    if start_date is not None:
        props.append(th.Property("start_date", th.DateTimeType, description=start_date))
    return props


class ClientTap(Tap, Generic[ClientT]):
    """A tap whose streams are :attr:`stream_types` and share :attr:`client` (made by :meth:`make_client`)."""

    package_name = "tongbu"
    #: the streams, in the catalog's order (discovered without network access)
    stream_types: ClassVar[Sequence[type[Stream]]] = ()

    def discover_streams(self) -> list[Stream]:
        """The streams (no network access needed)."""
        return [stream_type(self) for stream_type in self.stream_types]

    def make_client(self) -> ClientT:
        """A new API client from the config."""
        raise NotImplementedError

    @cached_property
    def client(self) -> ClientT:
        """The shared client, created on first use."""
        return self.make_client()
