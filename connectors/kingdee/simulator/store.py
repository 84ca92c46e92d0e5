"""The simulator's database: a SQLite file seeded from the seed, and the query engine over it.

Data lives in a SQLite file in a private temp directory, generated deterministically in chunks, so
a million records need neither much memory nor much time. The store answers ExecuteBillQuery and
View, applies the control API's edits (``modify``, ``insert``) and reads back the ground truth.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from connectors.kingdee.simulator import data as kdata
from connectors.kingdee.simulator.filterstring import FilterTranslator, filter_array_to_string
from connectors.kingdee.simulator.forms import (
    CUSTOMER_COLUMNS,
    FORMS,
    LCID_ZH_CN,
    MSG_BAD_PARAM,
    ORDER_COLUMNS,
    ORDER_LINE_COLUMNS,
    RECEIVABLE_COLUMNS,
    FieldDef,
    FormDef,
    QueryError,
    field_key,
    form_def,
    kd_format,
    now_local_ms,
    parse_literal_ms,
    select_expr,
)
from connectors.kingdee.simulator.writes import MAX_BATCH, SaveResult, WriteError, Writer
from connectors.kit.fakedata import FastRandom
from connectors.kit.simulator import FaultConfig, pick_rows

MAX_LIMIT = 10000  # documented cap of ``Limit``
DEFAULT_LIMIT = 2000
#: the longest FieldKeys / OrderString accepted
MAX_KEYS_CHARS = 10_000
_CHUNK = 20_000


class KingdeeStore:
    """The simulated account set (数据中心): three forms in one SQLite database."""

    def __init__(self, seed: int, counts_wanted: dict[str, int], db_path: str | None = None) -> None:
        self.seed = seed
        self.counts_wanted = counts_wanted
        self.lock = threading.RLock()
        self._tmpdir: str | None = None
        self._db_path = db_path
        self._db: sqlite3.Connection | None = None
        self._seeded = False
        self._rows = kdata.RowFactory(seed)
        self._change_rng = random.Random(seed * 104_729 + 3)
        self._last_ts = 0
        self._next_id: dict[str, int] = {}
        self._faults = FaultConfig()

    # -- data -----------------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.populate(self._faults)
        assert self._db is not None
        return self._db

    def populate(self, faults: FaultConfig) -> None:
        """Create and fill the database once; ``faults`` decides the row-level defects
        (``malformed``, ``same_second``, ``null_modify_date``)."""
        with self.lock:
            if self._seeded:
                return
            self._faults = faults
            if self._db_path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="tongbu-kingdee-sim-")
                weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
                path = f"{self._tmpdir}/k3cloud.sqlite"
            else:
                path = self._db_path
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # A throwaway test database: durability buys nothing, speed does.
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-65536", "temp_store=MEMORY"):
                db.execute(f"PRAGMA {pragma}")
            self._db = db
            self._create_schema()
            db.execute("BEGIN")
            self._seed_customers(self.counts_wanted["BD_Customer"])
            self._seed_orders(self.counts_wanted["SAL_SaleOrder"])
            self._seed_receivables(self.counts_wanted["AR_receivable"])
            db.execute("COMMIT")
            self._create_indexes()
            self._apply_row_faults()
            self._last_ts = max(self._max_ts(), kdata.SEED_TO)
            self._seeded = True

    def close(self) -> None:
        """Close and delete the data file."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self._seeded = False

    def _create_schema(self) -> None:
        # Declared affinities matter: an untyped FID would keep SQLite from using the join index.
        affinity = {"int": "INTEGER", "datetime": "INTEGER", "decimal": "REAL", "text": "TEXT"}

        def ddl(table: str, columns: Sequence[str], kinds: dict[str, str], pk: str | None) -> str:
            cols = ", ".join(
                f'"{c}" ' + ("INTEGER PRIMARY KEY" if c == pk else affinity[kinds.get(c, "text")])
                for c in columns
            )
            return f'CREATE TABLE "{table}" ({cols})'

        for form in FORMS.values():
            self.db_raw.execute(ddl(form.table, form.columns, form.kinds, form.pk))
            if form.entry_table:
                kinds = {**form.entry_kinds, "FID": "int"}
                self.db_raw.execute(ddl(form.entry_table, form.entry_columns, kinds, form.entry_pk))

    def _create_indexes(self) -> None:
        for form in FORMS.values():
            # (FModifyDate, pk) makes keyset paging an index range scan instead of a sort.
            self.db_raw.execute(
                f'CREATE INDEX "ix_{form.table}_mod" ON "{form.table}" ("FModifyDate", "{form.pk}")'
            )
            self.db_raw.execute(
                f'CREATE INDEX "ix_{form.table}_no" ON "{form.table}" ("{form.number_column}")'
            )
            if form.entry_table:
                self.db_raw.execute(
                    f'CREATE INDEX "ix_{form.entry_table}_fid" ON "{form.entry_table}" ("FID")'
                )

    @property
    def db_raw(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    def _insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            marks = ",".join("?" * len(columns))
            self.db_raw.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)

    def _malformed_rng(self, form_id: str) -> tuple[random.Random, float]:
        rate = self._faults.value("malformed", 0.0)
        return FastRandom(f"{self.seed}:{form_id}:malformed"), rate

    # customers ------------------------------------------------------------------------------------
    def _seed_customers(self, n: int, start: int = 0) -> None:
        rng = FastRandom(f"{self.seed}:BD_Customer")
        mrng, rate = self._malformed_rng("BD_Customer")
        rows: list[tuple[Any, ...]] = []
        for i in range(start, start + n):
            row = self._rows.customer_row(i, rng)
            if rate and mrng.random() < rate:
                kdata.malform_customer(row, mrng.randrange(3))
            rows.append(tuple(row))
            if len(rows) >= _CHUNK:
                self._insert("customers", CUSTOMER_COLUMNS, rows)
                rows = []
        self._insert("customers", CUSTOMER_COLUMNS, rows)
        self._next_id["BD_Customer"] = start + n

    def _seed_orders(self, n: int, start: int = 0) -> None:
        rng = FastRandom(f"{self.seed}:SAL_SaleOrder")
        mrng, rate = self._malformed_rng("SAL_SaleOrder")
        n_customers = self._next_id.get("BD_Customer", 0)
        heads: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        for i in range(start, start + n):
            head, ls = self._rows.order_rows(i, rng, n_customers)
            if rate and mrng.random() < rate:
                kdata.malform_order(head, ls, mrng.randrange(3))
            heads.append(tuple(head))
            lines.extend(tuple(x) for x in ls)
            if len(heads) >= _CHUNK:
                self._insert("sale_orders", ORDER_COLUMNS, heads)
                self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
                heads, lines = [], []
        self._insert("sale_orders", ORDER_COLUMNS, heads)
        self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
        self._next_id["SAL_SaleOrder"] = start + n

    def _seed_receivables(self, n: int, start: int = 0) -> None:
        rng = FastRandom(f"{self.seed}:AR_receivable")
        mrng, rate = self._malformed_rng("AR_receivable")
        n_customers = self._next_id.get("BD_Customer", 0)
        n_orders = self._next_id.get("SAL_SaleOrder", 0)
        rows: list[tuple[Any, ...]] = []
        for i in range(start, start + n):
            row = self._rows.receivable_row(i, rng, n_customers, n_orders)
            if rate and mrng.random() < rate:
                kdata.malform_receivable(row, mrng.randrange(3))
            rows.append(tuple(row))
            if len(rows) >= _CHUNK:
                self._insert("receivables", RECEIVABLE_COLUMNS, rows)
                rows = []
        self._insert("receivables", RECEIVABLE_COLUMNS, rows)
        self._next_id["AR_receivable"] = start + n

    def _apply_row_faults(self) -> None:
        """``same_second`` and ``null_modify_date``: the same rows for the same seed, per form."""
        for name, stamp in (("same_second", kdata.SAME_SECOND), ("null_modify_date", None)):
            if not self._faults.enabled(name):
                continue
            rng = random.Random(f"{self.seed}:{name}")
            value = self._faults.value(name)
            for form in FORMS.values():
                ids = pick_rows(self._next_id.get(form.form_id, 0), value, rng)
                self.db_raw.executemany(
                    f'UPDATE "{form.table}" SET "FModifyDate" = ? WHERE "{form.pk}" = ?',
                    [(stamp, kdata.ID_BASE + i) for i in ids],
                )

    def _max_ts(self) -> int:
        best = 0
        for form in FORMS.values():
            v = self.db_raw.execute(f'SELECT MAX("FModifyDate") FROM "{form.table}"').fetchone()[0]
            best = max(best, int(v or 0))
        return best

    def _tick(self) -> int:
        """A new modification time: the wall clock (+08:00), never going backwards."""
        self._last_ts = max(now_local_ms(), self._last_ts + 1)
        return self._last_ts

    # -- control methods (also behind /_sim/...) ----------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Records per form (and sales order lines)."""
        with self.lock:
            db = self.db
            out = {
                f.form_id: db.execute(f'SELECT COUNT(*) FROM "{f.table}"').fetchone()[0]
                for f in FORMS.values()
            }
            out["SAL_SaleOrder.lines"] = db.execute('SELECT COUNT(*) FROM "sale_order_lines"').fetchone()[0]
            out["malformed"] = sum(
                db.execute(f'SELECT COUNT(*) FROM "{f.table}" WHERE "_malformed" IS NOT NULL').fetchone()[0]
                for f in FORMS.values()
            )
            return out

    def modify(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Change ``count`` random records of ``form`` and stamp them with one new ``FModifyDate``.

        All changed records share the timestamp (one bulk update), which is the case a plain
        ``FModifyDate >`` cursor gets wrong. ``modified_at`` (``'YYYY-MM-DD HH:MM:SS[.fff]'``) stamps an
        older time instead, to play a transaction that commits late.
        """
        fd = form_def(form)
        with self.lock:
            db = self.db
            ts = self._stamp(modified_at)
            total = db.execute(f'SELECT MAX("{fd.pk}") FROM "{fd.table}"').fetchone()[0]
            if total is None:
                return {"form": fd.form_id, "ids": [], "FModifyDate": kd_format(ts)}
            population = range(kdata.ID_BASE, int(total) + 1)
            ids = sorted(self._change_rng.sample(population, min(count, len(population))))
            rng = self._change_rng
            if fd.form_id == "BD_Customer":
                seller = [kdata.seller(rng) for _ in ids]
                db.executemany(
                    'UPDATE customers SET "FTEL" = ?, "FSELLER" = ?, "FSELLER_FNumber" = ?, "FSELLER_FName" = ?, '
                    '"FModifyDate" = ? WHERE "FCUSTID" = ?',
                    [
                        (f"021-{rng.randrange(10**7, 10**8)}", s[0], s[1], s[2], ts, i)
                        for s, i in zip(seller, ids, strict=True)
                    ],
                )
            elif fd.form_id == "SAL_SaleOrder":
                db.executemany(
                    'UPDATE sale_orders SET "FNote" = ?, "FModifyDate" = ? WHERE "FID" = ?',
                    [(f"变更：交期调整（{kd_format(ts)[:10]}）", ts, i) for i in ids],
                )
                # One more unit on the first line; amounts follow (malformed text stays as it is).
                db.executemany(
                    'UPDATE sale_order_lines SET "FQty" = "FQty" + 1, '
                    '"FAmount" = ROUND(("FQty" + 1) * "FPrice", 2), "FAllAmount" = ROUND(("FQty" + 1) * "FTaxPrice", 2) '
                    'WHERE "FEntryID" = (SELECT MIN("FEntryID") FROM sale_order_lines WHERE "FID" = ?) '
                    "AND typeof(\"FTaxPrice\") = 'real'",
                    [(i,) for i in ids],
                )
                db.executemany(
                    'UPDATE sale_orders SET "FBillAllAmount" = (SELECT ROUND(SUM("FAllAmount"), 2) FROM sale_order_lines '
                    'WHERE sale_order_lines."FID" = sale_orders."FID") WHERE "FID" = ? AND typeof("FBillAllAmount") = \'real\'',
                    [(i,) for i in ids],
                )
            else:
                # A payment arrives (回款) and is written off against the receivable in full.
                db.executemany(
                    'UPDATE receivables SET "FModifyDate" = ?, '
                    '"FWRITTENOFFAMOUNTFOR" = CASE WHEN typeof("FALLAMOUNTFOR") = \'real\' THEN "FALLAMOUNTFOR" '
                    'ELSE "FWRITTENOFFAMOUNTFOR" END, '
                    '"FNOTWRITTENOFFAMOUNTFOR" = CASE WHEN typeof("FALLAMOUNTFOR") = \'real\' THEN 0.0 '
                    'ELSE "FNOTWRITTENOFFAMOUNTFOR" END, "FWRITTENOFFSTATUS" = \'C\' WHERE "FID" = ?',
                    [(ts, i) for i in ids],
                )
            return {"form": fd.form_id, "ids": ids, "FModifyDate": kd_format(ts)}

    def insert(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Create ``count`` new records of ``form`` (new ids), stamped with one new ``FModifyDate``."""
        fd = form_def(form)
        with self.lock:
            self.db  # noqa: B018 - make sure the data exists
            ts = self._stamp(modified_at)
            start = self._next_id.get(fd.form_id, 0)
            rng = FastRandom(f"{self.seed}:{fd.form_id}:insert:{start}")
            n_customers = self._next_id.get("BD_Customer", 0)
            if fd.form_id == "BD_Customer":
                rows = [tuple(self._rows.customer_row(i, rng, ts)) for i in range(start, start + count)]
                self._insert("customers", CUSTOMER_COLUMNS, rows)
            elif fd.form_id == "SAL_SaleOrder":
                heads, lines = [], []
                for i in range(start, start + count):
                    h, ls = self._rows.order_rows(i, rng, n_customers, ts)
                    heads.append(tuple(h))
                    lines.extend(tuple(x) for x in ls)
                self._insert("sale_orders", ORDER_COLUMNS, heads)
                self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
            else:
                n_orders = self._next_id.get("SAL_SaleOrder", 0)
                rows = [
                    tuple(self._rows.receivable_row(i, rng, n_customers, n_orders, ts))
                    for i in range(start, start + count)
                ]
                self._insert("receivables", RECEIVABLE_COLUMNS, rows)
            self._next_id[fd.form_id] = start + count
            return {
                "form": fd.form_id,
                "ids": [kdata.ID_BASE + i for i in range(start, start + count)],
                "FModifyDate": kd_format(ts),
            }

    def delete(self, form: str, count: int, *, ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Hard-delete ``count`` random records of ``form`` (or exactly ``ids``), lines included, as
        a user deleting documents in the ERP does: nothing is left for an incremental read to see."""
        fd = form_def(form)
        with self.lock:
            db = self.db
            if ids is None:
                present = [r[0] for r in db.execute(f'SELECT "{fd.pk}" FROM "{fd.table}" ORDER BY "{fd.pk}"')]
                ids = sorted(self._change_rng.sample(present, min(max(0, count), len(present))))
            gone = [int(i) for i in ids]
            db.executemany(f'DELETE FROM "{fd.table}" WHERE "{fd.pk}" = ?', [(i,) for i in gone])
            if fd.entry_table:
                db.executemany(f'DELETE FROM "{fd.entry_table}" WHERE "FID" = ?', [(i,) for i in gone])
            return {"form": fd.form_id, "ids": gone}

    # -- the write path (Save, BatchSave, Submit, Audit, UnAudit, Delete, operations) -------------------
    def _writer(self) -> Writer:
        return Writer(self.db, self._tick, self._next_number)

    def _next_number(self, form: FormDef) -> str:
        """The coding rule's next number (CUST0000123 / XSDD00000123), skipping numbers in use."""
        n = int(self.db.execute(f'SELECT COUNT(*) FROM "{form.table}"').fetchone()[0]) + 1
        prefix, width = ("CUST", 7) if form.form_id == "BD_Customer" else ("XSDD", 8)
        while True:
            number = f"{prefix}{n:0{width}d}"
            taken = self.db.execute(
                f'SELECT 1 FROM "{form.table}" WHERE "{form.number_column}" = ?', (number,)
            ).fetchone()
            if taken is None:
                return number
            n += 1

    def save(self, form: str, data: dict[str, Any]) -> SaveResult:
        """``Save`` of one ``data`` object (``Model`` plus options); raises :class:`WriteError`."""
        with self.lock:
            result = self._writer().save(form, data, data.get("Model") or {}, 0)
            self._auto_audit(form, data, [result])
            return result

    def _auto_audit(self, form: str, data: dict[str, Any], results: list[SaveResult]) -> None:
        """``IsAutoSubmitAndAudit``: submit and audit what was just saved, in the same call."""
        if str(data.get("IsAutoSubmitAndAudit", "")).lower() not in ("true", "1"):
            return
        fd = form_def(form)
        writer = self._writer()
        for r in results:
            writer.transition(fd, "submit", r.id, r.number, 0)
            writer.transition(fd, "audit", r.id, r.number, 0)

    def batch_save(
        self, form: str, data: dict[str, Any]
    ) -> tuple[list[SaveResult | None], list[dict[str, Any]]]:
        """``BatchSave``: every entity of ``Model`` saved on its own (``DIndex`` = its position);
        returns the results (None where refused) and the errors."""
        models = data.get("Model")
        if not isinstance(models, list) or not models:
            raise WriteError([{"FieldName": "Model", "Message": "Model 必须是非空数组", "DIndex": 0}], 8)
        if len(models) > MAX_BATCH:
            raise WriteError(
                [{"FieldName": "Model", "Message": f"一次最多保存 {MAX_BATCH} 条", "DIndex": 0}], 8
            )
        results: list[SaveResult | None] = []
        errors: list[dict[str, Any]] = []
        with self.lock:
            writer = self._writer()
            for i, model in enumerate(models):
                try:
                    saved = writer.save(form, data, model, i)
                    self._auto_audit(form, data, [saved])
                    results.append(saved)
                except WriteError as exc:
                    results.append(None)
                    errors.extend({**e, "DIndex": i} for e in exc.errors)
        return results, errors

    def lifecycle(
        self, form: str, op: str, data: dict[str, Any]
    ) -> tuple[list[tuple[int, str, int]], list[dict[str, Any]]]:
        """Submit / Audit / UnAudit / CancelAssign / Delete / an ``ExcuteOperation`` of the entities
        named by ``Numbers`` or ``Ids``; returns ((id, number, DIndex) done, errors)."""
        fd = form_def(form)
        done: list[tuple[int, str, int]] = []
        errors: list[dict[str, Any]] = []
        with self.lock:
            writer = self._writer()
            for i, (the_id, label) in enumerate(writer.targets(fd, data)):
                if the_id is None:
                    errors.append(
                        {"FieldName": None, "Message": f"{label}：数据不存在或已被删除", "DIndex": i}
                    )
                    continue
                try:
                    number = writer.transition(fd, op, the_id, label, i)
                except WriteError as exc:
                    errors.extend(exc.errors)
                    continue
                done.append((the_id, number, i))
        return done, errors

    def edit(self, form: str, id_: int, fields: dict[str, Any]) -> dict[str, Any]:
        """A user's edit in the ERP's own screens: ``fields`` (Save Model keys) applied to one record
        as a modify with exactly those fields, the modification time bumped, whatever its status."""
        fd = form_def(form)
        with self.lock:
            row = self.db.execute(
                f'SELECT "FDocumentStatus" FROM "{fd.table}" WHERE "{fd.pk}" = ?', (int(id_),)
            ).fetchone()
            if row is None:
                raise KeyError(f"{fd.form_id} has no record {id_}")
            # The UI edits audited records after an implicit un-audit; keep their status as it was.
            self.db.execute(
                f'UPDATE "{fd.table}" SET "FDocumentStatus" = \'A\' WHERE "{fd.pk}" = ?', (int(id_),)
            )
            try:
                model = {fd.pk: int(id_), **fields}
                result = self._writer().save(form, {"NeedUpDateFields": list(fields)}, model, 0)
            finally:
                self.db.execute(
                    f'UPDATE "{fd.table}" SET "FDocumentStatus" = ? WHERE "{fd.pk}" = ?', (row[0], int(id_))
                )
            return {"form": fd.form_id, "id": result.id, "number": result.number}

    def tamper(self, form: str, id_: int, columns: dict[str, Any]) -> dict[str, Any]:
        """An out-of-band change straight in the database (a DBA's UPDATE, another integration):
        ``columns`` (stored column names, e.g. ``FTEL``) set with no ``FModifyDate`` bump, so no
        incremental read can see it; only a full compare (reconciliation) finds it."""
        fd = form_def(form)
        allowed = {c for c in (*fd.columns, *fd.entry_columns) if not c.startswith("_")} - {
            fd.pk,
            "FModifyDate",
        }
        bad = sorted(set(columns) - allowed)
        if bad:
            raise ValueError(f"{fd.form_id} has no stored column {bad[0]!r} that tamper may set")
        with self.lock:
            head = {c: v for c, v in columns.items() if c in fd.columns}
            if head:
                sets = ", ".join(f'"{c}" = ?' for c in head)
                n = self.db.execute(
                    f'UPDATE "{fd.table}" SET {sets} WHERE "{fd.pk}" = ?', [*head.values(), int(id_)]
                ).rowcount
                if n == 0:
                    raise KeyError(f"{fd.form_id} has no record {id_}")
            return {"form": fd.form_id, "id": int(id_), "columns": sorted(columns)}

    def _stamp(self, modified_at: str | None) -> int:
        if modified_at is None:
            return self._tick()
        ms = parse_literal_ms(modified_at)
        if ms is None:
            raise ValueError(f"modified_at {modified_at!r} is not 'YYYY-MM-DD HH:MM:SS[.fff]'")
        return ms

    def truth(self, form: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Ground truth of ``form`` in id order: every field by FieldKey, ``lines`` for orders and
        ``_malformed`` (the injected defect, or None)."""
        fd = form_def(form)
        with self.lock:
            db = self.db
            cols = [c for c in fd.columns]
            sql = f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)} FROM "{fd.table}" ORDER BY "{fd.pk}"'
            sql += " LIMIT ? OFFSET ?"
            rows = db.execute(sql, (-1 if limit is None else limit, offset)).fetchall()
            keys = _keys_of(cols)
            out = []
            for row in rows:
                rec = {}
                for key, col, value in zip(keys, cols, row, strict=True):
                    rec[key] = _out(fd.kinds.get(col, "text"), value)
                out.append(rec)
            if fd.entry_table and out:
                by_id: dict[int, list[dict[str, Any]]] = {r[fd.pk]: [] for r in out}
                ecols = [c for c in fd.entry_columns if c != "FID"]
                marks = ",".join("?" * len(by_id))
                lines = db.execute(
                    f'SELECT "FID", {", ".join(f"{chr(34)}{c}{chr(34)}" for c in ecols)} FROM "{fd.entry_table}" '
                    f'WHERE "FID" IN ({marks}) ORDER BY "FID", "{fd.entry_pk}"',
                    list(by_id),
                ).fetchall()
                ekeys = [f"{fd.entry_name}_{k}" for k in _keys_of(ecols)]
                for line in lines:
                    by_id[line[0]].append(
                        {
                            k: _out(fd.entry_kinds.get(c, "text"), v)
                            for k, c, v in zip(ekeys, ecols, line[1:], strict=True)
                        }
                    )
                for r in out:
                    r["lines"] = by_id[r[fd.pk]]
            return out

    # -- query engine -------------------------------------------------------------------------------
    def execute_bill_query(self, data: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run an ExecuteBillQuery ``data`` object; raises :class:`QueryError`."""
        form = form_def(str(data.get("FormId") or data.get("formid") or ""))
        keys = data.get("FieldKeys") or ""
        if isinstance(keys, list):
            keys = ",".join(str(k) for k in keys)
        order_text = str(data.get("OrderString") or "")
        if len(str(keys)) > MAX_KEYS_CHARS or len(order_text) > MAX_KEYS_CHARS:
            raise QueryError(f"FieldKeys/OrderString 过长：最多 {MAX_KEYS_CHARS} 个字符", MSG_BAD_PARAM)
        field_keys = [k.strip() for k in str(keys).split(",") if k.strip()]
        if not field_keys:
            raise QueryError("FieldKeys 不能为空", MSG_BAD_PARAM)
        selected = [form.field(k) for k in field_keys]
        translator = FilterTranslator(form)
        raw_filter = data.get("FilterString") or ""
        if isinstance(raw_filter, list):
            raw_filter = filter_array_to_string(raw_filter)
        where = translator.translate(str(raw_filter))
        order_fields, order_sql = self._order_by(form, order_text)
        try:
            start_row = max(0, int(data.get("StartRow") or 0))
            limit = int(data.get("Limit") or 0)
            top = int(data.get("TopRowCount") or 0)
        except (TypeError, ValueError):
            raise QueryError("StartRow/Limit/TopRowCount 必须是整数", MSG_BAD_PARAM) from None
        limit = DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
        if top > 0:  # TopRowCount behaves as an absolute end row
            limit = max(0, min(limit, top - start_row))
        used = selected + translator.used + order_fields
        with_entry = any(f.entry for f in used)
        joins = ""
        if with_entry:
            joins += f' LEFT JOIN "{form.entry_table}" e ON e."FID" = h."{form.pk}"'
        if any(f.join == "c" for f in used):
            joins += f' LEFT JOIN customers c ON c."FCUSTID" = h."{form.customer_ref}"'
        tiebreak = [f'h."{form.pk}"'] + ([f'e."{form.entry_pk}"'] if with_entry else [])
        order_sql = ", ".join(
            order_sql + [t for t in tiebreak if t not in {o.split(" ")[0] for o in order_sql}]
        )
        sql = (
            f'SELECT {", ".join(select_expr(f) for f in selected)} FROM "{form.table}" h{joins} '
            f"WHERE {where} ORDER BY {order_sql} LIMIT ? OFFSET ?"
        )
        with self.lock:
            try:
                return self.db.execute(sql, [*translator.params, limit, start_row]).fetchall()
            except sqlite3.Error as exc:
                raise QueryError(f"数据库操作失败：{exc}", 6) from exc
            except OverflowError as exc:  # a number SQLite cannot bind
                raise QueryError(f"数值超出范围：{exc}", MSG_BAD_PARAM) from exc

    @staticmethod
    def _order_by(form: FormDef, text: str) -> tuple[list[FieldDef], list[str]]:
        fields: list[FieldDef] = []
        parts: list[str] = []
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            bits = item.split()
            direction = bits[1].upper() if len(bits) > 1 else "ASC"
            if direction not in ("ASC", "DESC") or len(bits) > 2:
                raise QueryError(f"排序字段格式错误：{item}", MSG_BAD_PARAM)
            fd = form.field(bits[0])
            fields.append(fd)
            parts.append(f"{fd.sql} {direction}")
        return fields, parts

    def view(self, form_id: str, number: str | None = None, id_: Any = None) -> dict[str, Any] | None:
        """The View entity (ORM property names, multilingual names) or None when not found."""
        form = form_def(form_id)
        with self.lock:
            db = self.db
            if id_ not in (None, "", 0, "0"):
                where, arg = f'"{form.pk}" = ?', int(id_)
            elif number:
                where, arg = f'"{form.number_column}" = ?', number
            else:
                raise QueryError("Number 和 Id 不能同时为空", MSG_BAD_PARAM)
            cols = list(form.columns)
            row = db.execute(
                f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{form.table}" WHERE {where}',
                (arg,),
            ).fetchone()
            if row is None:
                return None
            entity = _orm_entity(cols, row, form.kinds, form.pk)
            if form.customer_ref:
                cust = db.execute(
                    'SELECT "FNumber", "FName" FROM customers WHERE "FCUSTID" = ?',
                    (entity.get(form.customer_ref[1:] + "_Id"),),
                ).fetchone()
                ref = form.customer_ref[1:]
                entity[ref] = (
                    None
                    if cust is None
                    else {
                        "Id": entity.get(ref + "_Id"),
                        "Number": cust[0],
                        "Name": [{"Key": LCID_ZH_CN, "Value": cust[1]}],
                    }
                )
            if form.entry_table:
                ecols = list(form.entry_columns)
                lines = db.execute(
                    f'SELECT {", ".join(chr(34) + c + chr(34) for c in ecols)} FROM "{form.entry_table}" '
                    f'WHERE "FID" = ? ORDER BY "{form.entry_pk}"',
                    (row[0],),
                ).fetchall()
                entity[(form.entry_name or "Entry")[1:]] = [
                    _orm_entity(ecols, line, form.entry_kinds, form.entry_pk or "", skip=("FID",))
                    for line in lines
                ]
            return entity


def _keys_of(cols: Sequence[str]) -> list[str]:
    return [field_key(c) for c in cols]


def _out(kind: str, value: Any) -> Any:
    if kind == "datetime" and isinstance(value, int):
        return kd_format(value)
    return value


_REF_ID_COLUMNS = frozenset(
    {
        "FCustId",
        "FCUSTOMERID",
        "FSELLER",
        "FSalerId",
        "FSaleOrgId",
        "FMaterialId",
        "FTRADINGCURRID",
        "FCreateOrgId",
        "FUseOrgId",
    }
)


def _orm_entity(
    cols: Sequence[str], row: Sequence[Any], kinds: dict[str, str], pk: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A row in View's ORM style: ``Id``, ``Number``, multilingual ``Name``, reference objects."""
    out: dict[str, Any] = {}
    refs: dict[str, dict[str, Any]] = {}
    for col, value in zip(cols, row, strict=True):
        if col.startswith("_") or col in skip:
            continue
        if kinds.get(col) == "datetime" and isinstance(value, int):
            value = kd_format(value)
        if col == pk:
            out["Id"] = value
            continue
        for suffix, prop in (
            ("_FNumber", "Number"),
            ("_FName", "Name"),
            ("_FSpecification", "Specification"),
        ):
            if col.endswith(suffix):
                ref = refs.setdefault(col[1 : -len(suffix)], {})
                ref[prop] = [{"Key": LCID_ZH_CN, "Value": value}] if prop != "Number" else value
                break
        else:
            if col in _REF_ID_COLUMNS:
                out[col[1:] + "_Id"] = value
            elif col == "FName":
                out["Name"] = [{"Key": LCID_ZH_CN, "Value": value}]
            else:
                out[col[1:]] = value
    for name, ref in refs.items():
        if name + "_Id" in out:
            ref = {"Id": out[name + "_Id"], **ref}
        out[name] = ref
    return out
