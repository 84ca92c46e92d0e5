"""``tap-synthetic``: a deterministic, arbitrarily large source for benchmarks and tests.

Record ``i`` is generated from ``i`` alone, so any run can be reproduced and a starting bookmark
skips straight to the right index instead of regenerating what came before. ``changed`` simulates a
second generation of the source in which that many records were edited: each moves to the end of
the stream with a newer ``updated_at`` and a changed name, as an ERP's modify-date ordering would show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_GRADES = ("A", "B", "C", "D")
_INDUSTRIES = ("制造业", "批发零售", "信息技术", "建筑工程", "医疗器械", "能源化工", "教育", "物流")
_REGIONS = ("华东", "华南", "华北", "西南", "华中", "西北", "东北")
_OWNERS = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵强", "黄敏")


_DAYS: dict[int, str] = {}
_CLOCK: list[str] = []


def _iso(seconds: int) -> str:
    # Formatting a datetime per record would dominate a benchmark source: the time of day comes from
    # a table of the 86,400 "HH:MM:SS" texts, the date from a per-day cache.
    if not _CLOCK:
        _CLOCK.extend(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
    day, rest = divmod(seconds, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = (BASE + dt.timedelta(days=day)).strftime("%Y-%m-%dT")
    return prefix + _CLOCK[rest] + "+00:00"


class SyntheticRecords(Stream):
    """``records``: N accounts-like rows with 10 fields, sorted by ``updated_at``."""

    name = "records"
    primary_keys = ("id",)
    replication_key = "updated_at"
    is_sorted = True
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
        th.Property("credit_code", th.StringType),
        th.Property("grade", th.StringType),
        th.Property("industry", th.StringType),
        th.Property("region", th.StringType),
        th.Property("phone", th.StringType),
        th.Property("owner", th.StringType),
        th.Property("status", th.IntegerType),
        th.Property("updated_at", th.DateTimeType),
    ).to_dict()

    def _record(self, i: int, seconds: int, changed: bool) -> dict[str, Any]:
        digits = f"{i:09d}"  # one int formatting per record, shared by the text fields
        return {
            "id": i,
            "name": ("已变更合成客户" if changed else "合成客户") + digits + "有限公司",
            "credit_code": "91310115M" + digits,
            "grade": _GRADES[i & 3],
            "industry": _INDUSTRIES[i & 7],
            "region": _REGIONS[i % 7],
            "phone": "13" + digits[-9:],
            "owner": _OWNERS[i & 7],
            "status": i & 1,
            "updated_at": _iso(seconds),
        }

    def source_count(self, context: dict | None = None) -> int:
        """How many records the source holds now (for the reconciliation check)."""
        return int(self.config.get("records", 1000))

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        """Yield records after the starting bookmark, oldest first."""
        n = int(self.config.get("records", 1000))
        changed = min(int(self.config.get("changed", 0)), n)
        step = max(n // changed, 1) if changed else 0
        start = self.get_starting_replication_key_value(context)
        first = 0
        if start:
            first = int((dt.datetime.fromisoformat(str(start)) - BASE).total_seconds()) + 1
        # Originals occupy seconds [0, n); edited records were re-stamped at n + k.
        for i in range(min(first, n), n):
            if changed and i % step == 0 and i // step < changed:
                continue
            yield self._record(i, i, False)
        for k in range(max(first - n, 0), changed):
            yield self._record(k * step, n + k, True)


class TapSynthetic(Tap):
    """Singer tap producing synthetic records (benchmarks, tests)."""

    name = "tap-synthetic"
    config_jsonschema = th.PropertiesList(
        th.Property("records", th.IntegerType, default=1000, description="How many records the source holds"),
        th.Property("changed", th.IntegerType, default=0, description="How many of them were edited since"),
        th.Property(
            "password",
            th.StringType,
            secret=True,
            description="A credential the source ignores: lets tests follow a secret through a run",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        """The one stream, ``records``."""
        return [SyntheticRecords(self)]


if __name__ == "__main__":
    TapSynthetic.cli()
