"""Fault switches: one catalogue of names and meanings shared by every simulator.

A switch is ``name`` or ``name=value`` in a comma-separated spec (``--faults throttle=0.05,slow=0.2``).
Values have one of four kinds:

* ``RATE``: a probability in [0, 1], drawn per API call from the simulator's seeded fault RNG;
* ``ROWS``: a share of the seeded rows in [0, 1] (a value above 1 is a number of rows), picked
  deterministically from the seed, so two simulators with the same arguments pick the same rows;
* ``SECONDS``: a non-negative duration;
* ``COUNT``: a non-negative whole number.

A simulator declares which switches it honours (:attr:`Simulator.FAULTS` names from
:data:`COMMON_FAULTS`, plus :attr:`Simulator.OWN_FAULTS` of its own); any other name is an error
with a did-you-mean, and a value of the wrong kind is an error naming the kind. The table in
``docs/writing-a-connector.md`` lists every switch.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors.kit.fakedata import FastRandom

__all__ = [
    "API_FAULTS",
    "COMMON_FAULTS",
    "RENAMED_FAULTS",
    "FaultConfig",
    "FaultError",
    "FaultSpec",
    "pick_rows",
    "share_one_time",
]

Kind = Literal["RATE", "ROWS", "SECONDS", "COUNT"]


class FaultError(ValueError):
    """A fault spec the simulator cannot honour (unknown name, bad value)."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault switch: its name, the kind of value it takes and what it does."""

    name: str
    kind: Kind
    help: str
    #: the value of the bare switch (``--faults throttle`` means ``throttle=1``)
    bare: float = 1.0
    #: the value when the switch is absent (read by :meth:`FaultConfig.value`)
    default: float = 0.0

    def check(self, value: float) -> float:
        """``value`` if it fits the kind, else :class:`FaultError`."""
        if value != value or value < 0:  # NaN or negative
            raise FaultError(f"fault {self.name}={value:g}: must be a non-negative {self.kind}")
        if self.kind == "SECONDS" and not value <= 3600:
            raise FaultError(f"fault {self.name}={value:g}: SECONDS must be at most 3600")
        if self.kind == "RATE" and value > 1:
            raise FaultError(f"fault {self.name}={value:g}: a RATE is a probability from 0 to 1")
        if self.kind == "COUNT" and not float(value).is_integer():
            raise FaultError(f"fault {self.name}={value:g}: a COUNT is a whole number")
        if self.kind == "ROWS" and value > 1 and not float(value).is_integer():
            raise FaultError(f"fault {self.name}={value:g}: a share from 0 to 1, or above 1 a number of rows")
        return value


def _specs(*specs: FaultSpec) -> dict[str, FaultSpec]:
    return {s.name: s for s in specs}


#: Switches with one meaning in every simulator that honours them.
COMMON_FAULTS: dict[str, FaultSpec] = _specs(
    FaultSpec("throttle", "RATE", "the call is refused with the system's own rate-limit error"),
    FaultSpec("http_5xx", "RATE", "the call is answered with HTTP 500/502/503 and a gateway-style body"),
    FaultSpec("timeout", "RATE", "the call hangs `hang` seconds, then gets HTTP 504"),
    FaultSpec("hang", "SECONDS", "how long a `timeout` call hangs", default=120.0),
    FaultSpec("slow", "SECONDS", "every API call waits this long before it is answered"),
    FaultSpec("session_expiry", "COUNT", "a session (or access token) is dropped after serving N calls"),
    FaultSpec("malformed", "RATE", "each seeded record carries a bad value with this probability"),
    FaultSpec(
        "same_second",
        "ROWS",
        "this share of the seeded records shares one modification time to the millisecond",
        bare=0.25,
    ),
    FaultSpec(
        "null_modify_date",
        "ROWS",
        "this share of the seeded records has a NULL modification time",
        bare=0.25,
    ),
    FaultSpec(
        "lost_response",
        "RATE",
        "a write is applied, then its answer is lost (HTTP 504 from the gateway)",
    ),
    FaultSpec(
        "lock_conflict",
        "RATE",
        "a write is refused, nothing applied, because another user holds a lock on the record",
    ),
)

#: The switches a paged, token-authenticated HTTP API simulator honours; a simulator adds its own
#: (``(*API_FAULTS, "lost_response")``) or leaves out what its system lacks.
API_FAULTS: tuple[str, ...] = (
    "throttle",
    "http_5xx",
    "timeout",
    "hang",
    "slow",
    "session_expiry",
    "malformed",
    "same_second",
)

#: Names simulators used before the catalogue, and what replaces them.
RENAMED_FAULTS: dict[str, str] = {
    "freq_limit": "throttle",
    "token_expiry": "session_expiry",
    "latency_ms": "slow (in seconds)",
}


@dataclass
class FaultConfig:
    """Parsed fault switches: ``enabled(name)`` and ``value(name, default)`` read them.

    Without ``specs`` any name is accepted (a bare container); :meth:`parse` with the simulator's
    specs validates names and values.
    """

    switches: dict[str, float] = field(default_factory=dict)
    specs: Mapping[str, FaultSpec] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(
        cls, spec: str | Iterable[str] | FaultConfig | None, specs: Mapping[str, FaultSpec] | None = None
    ) -> FaultConfig:
        """Parse ``"throttle=0.05,session_expiry=200"`` (or a list of such items)."""
        if isinstance(spec, FaultConfig):
            return cls(dict(spec.switches), specs) if specs is not None else spec
        if not spec:
            return cls({}, specs)
        items = [spec] if isinstance(spec, str) else list(spec)
        switches: dict[str, float] = {}
        for item in items:
            for part in str(item).split(","):
                part = part.strip()
                if not part:
                    continue
                name, eq, raw = part.partition("=")
                name = name.strip()
                known = specs.get(name) if specs is not None else None
                if specs is not None and known is None:
                    raise FaultError(_unknown(name, specs))
                try:
                    value = float(raw) if eq else (known.bare if known else 1.0)
                except ValueError:
                    raise FaultError(f"fault {name!r}: value {raw.strip()!r} is not a number") from None
                switches[name] = known.check(value) if known else value
        return cls(switches, specs)

    def enabled(self, name: str) -> bool:
        """True when the switch is on (its value is above 0)."""
        return self.switches.get(name, 0.0) > 0

    def value(self, name: str, default: float | None = None) -> float:
        """The switch's value; else ``default``, else the spec's default, else 0."""
        if name in self.switches:
            return self.switches[name]
        if default is not None:
            return default
        spec = self.specs.get(name) if self.specs is not None else None
        return spec.default if spec is not None else 0.0


def _unknown(name: str, specs: Mapping[str, FaultSpec]) -> str:
    if name in RENAMED_FAULTS:
        return f"fault {name!r} was renamed: use {RENAMED_FAULTS[name]}"
    close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown fault {name!r}{hint} (this simulator knows: {', '.join(sorted(specs))})"


def pick_rows(total: int, value: float, rng: random.Random) -> list[int]:
    """Indices in ``range(total)`` chosen by a ``ROWS`` switch (share, or a count above 1)."""
    k = int(value) if value > 1 else int(round(total * value))
    return rng.sample(range(total), min(max(k, 0), total))


def share_one_time(
    tables: Mapping[str, Sequence[MutableMapping[str, Any]]],
    faults: FaultConfig,
    stamp: Any,
    seed: object,
    field: str = "_s",
) -> None:
    """The ``same_second`` switch applied to seeded tables: its share of each table's rows get ``stamp``.

    Each table draws from its own generator seeded ``"<seed>:<table>:same"``, so which rows are
    picked in one table does not depend on the size of another.
    """
    share = faults.value("same_second", 0.0)
    for stream, rows in tables.items():
        for index in pick_rows(len(rows), share, FastRandom(f"{seed}:{stream}:same")):
            rows[index][field] = stamp
