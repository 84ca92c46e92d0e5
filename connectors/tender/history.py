"""The local tender history: every notice read, searchable in Chinese, and saved subscriptions.

**Full text.** Chinese has no spaces, so the text (title, summary, 正文) is pre-segmented with
`jieba <https://github.com/fxsjy/jieba>`_ in search mode (its dictionary ships inside the package:
nothing is downloaded) and stored in ``search_text``; SQLite indexes it with FTS5's ``unicode61``
tokenizer (an external-content table kept in step by triggers), PostgreSQL with a GIN index on
``to_tsvector('simple', search_text)``. A query term is segmented the same way and every one of
its words must occur (so ``管理软件`` finds ``财务管理软件采购``), then the text check makes the
answer exact (every term occurs as written); a term the index cannot answer (a fragment such as
``云计``, a single character) is answered by the text check alone, within the other filters.

**Filters.** Region (province name or zone id), notice type (a name such as ``中标公告`` or a kind:
``tender``, ``correction``, ``result``, ``termination``), category (品目 prefix, ``货物`` or
``服务/信息技术服务``), buyer (substring of the normalised name), publish date range, budget range.

**Subscriptions** (:class:`SubscriptionSpec`) are evaluated on each new notice, exactly: keywords
any-of and exclude words as substrings of title, summary and 正文; the other filters as above. A
notice's amount is its budget, or for an award the sum of its lots; a subscription with a budget
range does not match a notice with no amount.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from connectors.kit.names import company_key
from connectors.tender import models
from connectors.tender.parse import notice_kind
from connectors.tender.regions import PROVINCES, province

log = logging.getLogger("tongbu.tender")
#: runs of Chinese characters (segmented by jieba) and of Latin letters and digits (kept whole)
_BLOCK = re.compile("[\u4e00-\u9fd5]+|[a-zA-Z0-9]+")
_HAN = re.compile("[\u4e00-\u9fd5]+")
_WORD = re.compile("[\u4e00-\u9fd5a-zA-Z0-9]+")
KINDS = ("tender", "correction", "result", "termination", "other")
MAX_TERMS = 8
MAX_TERM_CHARS = 64


class SearchError(ValueError):
    """A query or subscription that cannot be run (one line, names the problem)."""


@functools.cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@functools.lru_cache(maxsize=1_000_000)
def _segment_block(block: str) -> str:
    if not _HAN.fullmatch(block):
        return block
    return " ".join(w for w in _jieba().cut_for_search(block) if _WORD.fullmatch(w))


def segment(text: str) -> str:
    """``text`` as space-separated words: each run of Chinese characters in jieba's search mode
    (words and their sub-words), each run of letters and digits whole. Runs are segmented on their
    own (and cached: names and places repeat), the same way for documents and queries."""
    return " ".join(s for s in (_segment_block(b) for b in _BLOCK.findall(text or "")) if s)


def query_words(term: str) -> list[str]:
    """The words of one query term (jieba precise mode); every one must occur."""
    if len(term) > MAX_TERM_CHARS:
        raise SearchError(f"search term longer than {MAX_TERM_CHARS} characters: {term[:20]}…")
    jieba = _jieba()
    words: list[str] = []
    for block in _BLOCK.findall(term):
        if not _HAN.fullmatch(block):
            words.append(block)
            continue
        for word in jieba.cut(block):
            if not _WORD.fullmatch(word):
                continue
            # Search mode indexes a long word's dictionary 2-grams too, but a document segments the
            # same characters as a long word only in the same context: when the 2-grams cover the
            # word, ask for them instead (管理软件 -> 管理 + 软件 finds 财务管理软件).
            grams = [word[i : i + 2] for i in range(len(word) - 1) if jieba.dt.FREQ.get(word[i : i + 2])]
            covered = {i + k for g in grams for i in _starts(word, g) for k in (0, 1)}
            words.extend(grams if len(word) > 2 and covered == set(range(len(word))) else [word])
    return words


def _starts(word: str, gram: str) -> list[int]:
    return [i for i in range(len(word) - 1) if word[i : i + 2] == gram]


def notice_amount(record: Mapping[str, Any]) -> Decimal | None:
    """The budget, else the sum of an award's lot amounts, else None."""
    if record.get("budget"):
        return Decimal(str(record["budget"]))
    amounts = [Decimal(str(lot["amount"])) for lot in record.get("lots") or [] if lot.get("amount")]
    return sum(amounts, Decimal(0)) if amounts else None


def _regions(values: Iterable[str]) -> set[str]:
    out = set()
    for value in values:
        short = province(value) or next((p for p, z in PROVINCES.items() if z == value.strip()), None)
        if short is None:
            close = difflib.get_close_matches(value, list(PROVINCES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SearchError(f"unknown region {value!r}{hint}")
        out.add(short)
    return out


def _type_ok(record: Mapping[str, Any], types: Sequence[str]) -> bool:
    notice_type = str(record.get("notice_type") or "")
    return notice_type in types or notice_kind(notice_type) in types


def _category_ok(category: str | None, categories: Sequence[str]) -> bool:
    text = category or ""
    return any(text == c or text.startswith(c.rstrip("/") + "/") for c in categories)


def full_text(record: Mapping[str, Any]) -> str:
    """What keywords are matched against: title, summary and 正文."""
    return "\n".join(str(record.get(k) or "") for k in ("title", "summary", "content"))


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a subscriber wants: keywords any-of, exclude words, regions, types, categories, buyer,
    budget range (元). Empty means "any"."""

    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    buyer: str | None = None
    budget_min: Decimal | None = None
    budget_max: Decimal | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubscriptionSpec:
        """A spec from its stored or configured form; unknown keys are errors with a did-you-mean."""
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SearchError(f"unknown subscription setting {key!r}{hint}")

        def words(key: str) -> tuple[str, ...]:
            value = data.get(key) or ()
            if isinstance(value, str):
                value = [v for v in re.split(r"[,，\s]+", value) if v]
            return tuple(str(v).strip() for v in value if str(v).strip())

        def money(key: str) -> Decimal | None:
            value = data.get(key)
            if value in (None, ""):
                return None
            try:
                return Decimal(str(value))
            except ArithmeticError:
                raise SearchError(f"{key} must be a number of 元, not {value!r}") from None

        spec = cls(
            keywords=words("keywords"),
            exclude=words("exclude"),
            regions=tuple(sorted(_regions(words("regions")))),
            types=words("types"),
            categories=words("categories"),
            buyer=(str(data["buyer"]).strip() or None) if data.get("buyer") else None,
            budget_min=money("budget_min"),
            budget_max=money("budget_max"),
        )
        for t in spec.types:
            if t not in KINDS and not t.endswith("公告"):
                raise SearchError(
                    f"unknown notice type {t!r} (a kind {', '.join(KINDS)}, or a name like 中标公告)"
                )
        return spec

    def as_dict(self) -> dict[str, Any]:
        """The stored form (JSON)."""
        out = asdict(self)
        for key in ("budget_min", "budget_max"):
            out[key] = None if out[key] is None else str(out[key])
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a notice (a ``notices`` record) is one this subscription wants."""
        if self.regions and record.get("region") not in self.regions:
            return False
        if self.types and not _type_ok(record, self.types):
            return False
        if self.categories and not _category_ok(record.get("category"), self.categories):
            return False
        if self.buyer and company_key(self.buyer) not in company_key(record.get("buyer")):
            return False
        if self.budget_min is not None or self.budget_max is not None:
            amount = notice_amount(record)
            if amount is None:
                return False
            if self.budget_min is not None and amount < self.budget_min:
                return False
            if self.budget_max is not None and amount > self.budget_max:
                return False
        text = full_text(record)
        if self.keywords and not any(k in text for k in self.keywords):
            return False
        return not any(w in text for w in self.exclude)


@dataclass(frozen=True)
class NoticeQuery:
    """A search of the history: every keyword (all-of) plus filters."""

    keywords: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    buyer: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    budget_min: Decimal | None = None
    budget_max: Decimal | None = None
    project_no: str | None = None


@dataclass
class AddResult:
    """What :meth:`TenderHistory.add` did."""

    new: list[int] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0


CST = dt.timezone(dt.timedelta(hours=8))


def _utc(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CST)
    return parsed.astimezone(dt.UTC)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), CST).astimezone(dt.UTC)


class TenderHistory:
    """The history, subscriptions and alert queue of one tenant in one database."""

    def __init__(self, engine: Engine, tenant: str = "default") -> None:
        self.engine = engine
        self.tenant = tenant
        self.dialect = engine.dialect.name

    # -- notices -----------------------------------------------------------------------------------
    @staticmethod
    def row(record: Mapping[str, Any], tenant: str, now: dt.datetime) -> dict[str, Any]:
        """The ``tender_notices`` row of a notice record."""
        budget = record.get("budget")
        return {
            "tenant_id": tenant,
            "notice_id": int(record["id"]),
            "project_no": record.get("project_no"),
            "notice_type": record.get("notice_type"),
            "kind": notice_kind(str(record.get("notice_type") or "")),
            "title": (record.get("title") or "")[:512],
            "url": (record.get("url") or "")[:512] or None,
            "region": record.get("region"),
            "zone_id": record.get("zone_id"),
            "category": (record.get("category") or "")[:128] or None,
            "buyer": (record.get("buyer") or "")[:255] or None,
            "buyer_key": company_key(record.get("buyer"))[:255] or None,
            "buyer_credit_code": record.get("buyer_credit_code"),
            "budget": Decimal(str(budget)) if budget else None,
            "publish_time": _utc(str(record["publish_time"])),
            "summary": record.get("summary"),
            "content": record.get("content"),
            "record": {k: v for k, v in record.items() if k != "content"},
            "search_text": segment(full_text(record)),
            "ingested_at": now,
        }

    def add(self, records: Sequence[Mapping[str, Any]], conn: Connection | None = None) -> AddResult:
        """Add notices (new ones inserted, changed ones updated); returns which were new."""
        result = AddResult()
        if not records:
            return result
        t = models.notices
        now = dt.datetime.now(dt.UTC)
        by_id = {int(r["id"]): r for r in records}  # the last revision read wins
        with _maybe_begin(self.engine, conn) as c:
            existing: dict[int, Any] = {}
            ids = list(by_id)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = sa.select(t.c.notice_id, t.c.record, t.c.content).where(
                    t.c.tenant_id == self.tenant, t.c.notice_id.in_(chunk)
                )
                existing.update({int(nid): {**rec, "content": body} for nid, rec, body in c.execute(q)})
            inserts = [self.row(r, self.tenant, now) for nid, r in by_id.items() if nid not in existing]
            if inserts:
                c.execute(t.insert(), inserts)
            for nid, record in by_id.items():
                if nid not in existing:
                    result.new.append(nid)
                elif existing[nid] != dict(record):
                    values = self.row(record, self.tenant, now)
                    values.pop("ingested_at")
                    c.execute(
                        t.update().where(t.c.tenant_id == self.tenant, t.c.notice_id == nid).values(**values)
                    )
                    result.updated += 1
                else:
                    result.unchanged += 1
        return result

    def get(self, notice_id: int) -> dict[str, Any] | None:
        """One notice record."""
        t = models.notices
        q = sa.select(t.c.record, t.c.content).where(t.c.tenant_id == self.tenant, t.c.notice_id == notice_id)
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return None if row is None else {**row[0], "content": row[1]}

    def records(self, notice_ids: Iterable[int]) -> list[dict[str, Any]]:
        """The records of these notices (those known), in publish order."""
        t = models.notices
        ids = list(notice_ids)
        out: list[dict[str, Any]] = []
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                q = sa.select(t.c.record, t.c.content).where(
                    t.c.tenant_id == self.tenant, t.c.notice_id.in_(ids[i : i + 500])
                )
                out.extend({**r, "content": body} for r, body in c.execute(q))
        return sorted(out, key=lambda r: (_utc(r["publish_time"]), r["id"]))

    def project(self, project_no: str) -> list[dict[str, Any]]:
        """Every notice of one project (tender, corrections, award …), in publish order."""
        t = models.notices
        q = (
            sa.select(t.c.record, t.c.content)
            .where(t.c.tenant_id == self.tenant, t.c.project_no == project_no)
            .order_by(t.c.publish_time, t.c.notice_id)
        )
        with self.engine.connect() as c:
            return [{**r, "content": body} for r, body in c.execute(q)]

    def count(self) -> int:
        """Notices in the history."""
        t = models.notices
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).where(t.c.tenant_id == self.tenant)).scalar_one())

    # -- search ------------------------------------------------------------------------------------
    def _fts(self, keywords: Sequence[str]) -> sa.ColumnElement[bool] | None:
        words: list[str] = []
        for term in keywords[: MAX_TERMS + 1]:
            words.extend(query_words(term))
        if len(keywords) > MAX_TERMS:
            raise SearchError(f"at most {MAX_TERMS} search terms")
        if not words:
            return None
        freq = _jieba().dt.FREQ
        if not all(len(w) > 1 and (freq.get(w) or not _HAN.fullmatch(w)) for w in words):
            # A fragment that is no word (云计, 器及) or splits into single characters (用计): the
            # index of words cannot answer it; the text check (a scan within the other filters) does.
            return None
        t = models.notices
        if self.dialect == "sqlite":
            match = " AND ".join(f'"{w}"' for w in dict.fromkeys(words))
            # Correlated, not ``id IN (all matches)``: the newest-first scan of the region/date
            # index stops after ``limit`` rows, each checked with a doclist seek — materialising
            # every match of a common word first took ~1 s at a million notices.
            return sa.text(
                "EXISTS (SELECT 1 FROM tender_notices_fts f "
                "WHERE f.tender_notices_fts MATCH :fts AND f.rowid = tender_notices.id)"
            ).bindparams(fts=match)
        query = " & ".join(dict.fromkeys(words))
        return sa.func.to_tsvector(sa.literal_column("'simple'"), t.c.search_text).op("@@")(
            sa.func.to_tsquery(sa.literal_column("'simple'"), query)
        )

    def where(self, q: NoticeQuery) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of a query."""
        t = models.notices
        conds: list[sa.ColumnElement[bool]] = [t.c.tenant_id == self.tenant]
        if q.keywords:
            # The index finds candidates by words; the text check makes the answer exact (every
            # term occurs as written), the same semantics as subscriptions.
            fts = self._fts(q.keywords)
            if fts is not None:
                conds.append(fts)
            for term in q.keywords:
                conds.append(
                    sa.or_(
                        t.c.title.contains(term, autoescape=True),
                        t.c.summary.contains(term, autoescape=True),
                        t.c.content.contains(term, autoescape=True),
                    )
                )
        if q.regions:
            conds.append(t.c.region.in_(sorted(_regions(q.regions))))
        if q.types:
            kinds = [x for x in q.types if x in KINDS]
            names = [x for x in q.types if x not in KINDS]
            conds.append(sa.or_(t.c.kind.in_(kinds), t.c.notice_type.in_(names)))
        if q.categories:
            conds.append(
                sa.or_(
                    *(
                        sa.or_(
                            t.c.category == c, t.c.category.startswith(c.rstrip("/") + "/", autoescape=True)
                        )
                        for c in q.categories
                    )
                )
            )
        if q.buyer:
            conds.append(t.c.buyer_key.contains(company_key(q.buyer), autoescape=True))
        if q.since:
            conds.append(t.c.publish_time >= _day_start(q.since))
        if q.until:
            conds.append(t.c.publish_time < _day_start(q.until + dt.timedelta(days=1)))
        if q.budget_min is not None:
            conds.append(t.c.budget >= q.budget_min)
        if q.budget_max is not None:
            conds.append(t.c.budget <= q.budget_max)
        if q.project_no:
            conds.append(t.c.project_no == q.project_no)
        return conds

    def search(self, q: NoticeQuery, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The newest matching notices first: id, time, type, title, region, buyer, budget, url."""
        t = models.notices
        stmt = (
            sa.select(
                t.c.notice_id,
                t.c.publish_time,
                t.c.notice_type,
                t.c.title,
                t.c.region,
                t.c.buyer,
                t.c.budget,
                t.c.project_no,
                t.c.url,
            )  # fmt: skip
            .where(*self.where(q))
            .order_by(t.c.publish_time.desc(), t.c.notice_id.desc())
            .limit(max(1, min(limit, 1000)))
            .offset(max(0, offset))
        )
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(stmt)]
        for row in rows:
            when = row["publish_time"]
            row["publish_time"] = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(CST)
        return rows

    def search_count(self, q: NoticeQuery) -> int:
        """How many notices match."""
        stmt = sa.select(sa.func.count()).select_from(models.notices).where(*self.where(q))
        with self.engine.connect() as c:
            return int(c.execute(stmt).scalar_one())

    # -- subscriptions -----------------------------------------------------------------------------
    def subscribe(
        self,
        name: str,
        subscriber: str,
        spec: SubscriptionSpec,
        channels: Mapping[str, Sequence[str]] | None = None,
    ) -> int:
        """Save (or replace) a subscription; returns its id. ``channels``: alert channel name ->
        recipients on it (empty: the channel's default ``to``)."""
        if not name.strip() or not subscriber.strip():
            raise SearchError("a subscription needs a name and a subscriber")
        channels = {str(k): [str(r) for r in v] for k, v in (channels or {}).items()}
        t = models.subscriptions
        with self.engine.begin() as c:
            found = c.execute(
                sa.select(t.c.id).where(t.c.tenant_id == self.tenant, t.c.name == name)
            ).scalar()
            values = {"subscriber": subscriber, "spec": spec.as_dict(), "channels": channels}
            if found is not None:
                c.execute(t.update().where(t.c.id == found).values(**values))
                return int(found)
            now = dt.datetime.now(dt.UTC)
            res = c.execute(t.insert().values(tenant_id=self.tenant, name=name, created_at=now, **values))
            return int(res.inserted_primary_key[0])

    def unsubscribe(self, name: str) -> bool:
        """Delete a subscription (and its unsent alerts); False when there is none of that name."""
        t, a = models.subscriptions, models.alerts
        with self.engine.begin() as c:
            found = c.execute(
                sa.select(t.c.id).where(t.c.tenant_id == self.tenant, t.c.name == name)
            ).scalar()
            if found is None:
                return False
            c.execute(a.delete().where(a.c.subscription_id == found, a.c.sent_at.is_(None)))
            c.execute(t.delete().where(t.c.id == found))
            return True

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription of the tenant: id, name, subscriber, spec, channels."""
        t = models.subscriptions
        q = sa.select(t.c.id, t.c.name, t.c.subscriber, t.c.spec, t.c.channels).where(
            t.c.tenant_id == self.tenant
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(t.c.name))]

    # -- alerts --------------------------------------------------------------------------------------
    def match(self, notice_ids: Sequence[int]) -> int:
        """Queue an alert for every (subscription, notice) that matches; returns how many were new.

        Idempotent: a pair already queued (or sent) is never queued again.
        """
        subs = [(s["id"], SubscriptionSpec.from_dict(s["spec"])) for s in self.subscriptions()]
        if not subs or not notice_ids:
            return 0
        a = models.alerts
        pairs = [
            (sid, int(r["id"])) for r in self.records(notice_ids) for sid, spec in subs if spec.matches(r)
        ]
        if not pairs:
            return 0
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as c:
            known = {
                (sid, nid)
                for sid, nid in c.execute(
                    sa.select(a.c.subscription_id, a.c.notice_id).where(
                        a.c.tenant_id == self.tenant, a.c.notice_id.in_(sorted({n for _, n in pairs}))
                    )
                )
            }
            fresh = [
                {"tenant_id": self.tenant, "subscription_id": s, "notice_id": n, "matched_at": now}
                for s, n in dict.fromkeys(pairs)
                if (s, n) not in known
            ]
            if fresh:
                c.execute(a.insert(), fresh)
        return len(fresh)

    def pending_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        """Alerts not sent yet, oldest first, with their subscription and notice."""
        a, s = models.alerts, models.subscriptions
        q = (
            sa.select(a.c.id, a.c.notice_id, a.c.matched_at, s.c.name, s.c.subscriber, s.c.channels)
            .join(s, s.c.id == a.c.subscription_id)
            .where(a.c.tenant_id == self.tenant, a.c.sent_at.is_(None))
            .order_by(a.c.id)
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def mark_sent(self, alert_id: int, error: str | None = None) -> None:
        """Record that an alert went out (``error`` None), or why it did not (it stays pending)."""
        a = models.alerts
        values: dict[str, Any] = {"error": (error or None) and error[:255]}
        if error is None:
            values["sent_at"] = dt.datetime.now(dt.UTC)
        with self.engine.begin() as c:
            c.execute(a.update().where(a.c.id == alert_id).values(**values))


class _maybe_begin:
    """``engine.begin()``, or the caller's connection as it is."""

    def __init__(self, engine: Engine, conn: Connection | None) -> None:
        self.engine, self.conn, self._ctx = engine, conn, None

    def __enter__(self) -> Connection:
        if self.conn is not None:
            return self.conn
        self._ctx = self.engine.begin()
        return self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
