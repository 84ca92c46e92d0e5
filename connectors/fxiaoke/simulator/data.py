"""The simulated Fxiaoke tenant: records per object in memory, the query engine, writes and their
side effects (approval and work flows), seeded from :mod:`connectors.kit.fakedata`.

Seeding overlaps the Kingdee simulator's companies: with the same ``seed``, account ``i`` is the
Kingdee customer ``i`` (the same credit code; the name drawn again, so a share of them differ the way
names typed twice differ), except every fifth one, which is a company only Fxiaoke knows
(and so Kingdee's every fifth customer is only in Kingdee).

Query cost: records sit in ``_id`` order and in ``(last_modified_time, _id)`` order (sorted lists,
bisected), so the two ways a reader pages (``_id GT last``; ``last_modified_time GTE t`` ordered by
time then ``_id``) cost O(log n + page); any other filter scans the object.
"""

from __future__ import annotations

import bisect
import copy
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from connectors.fxiaoke.objects import (
    OBJECTS,
    STAGE_PROBABILITY,
    ObjectDesc,
    ValueError_,
    check_value,
)
from connectors.kit import fakedata
from connectors.kit.simulator import FaultConfig, pick_rows

__all__ = ["EPOCH_MS", "QueryError", "TenantStore", "WriteRefused"]

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z, the first seeded change
MAX_LIMIT = 100
MAX_OFFSET = 10_000
OPERATORS = ("EQ", "N", "GT", "GTE", "LT", "LTE", "IN", "NIN", "LIKE", "IS", "ISN")
#: error codes (HTTP 200, errorCode != 0), as the OpenAPI answers
ERR_PARAM = 10001  # 参数错误
ERR_NOT_FOUND = 320001401  # 数据不存在
ERR_VALIDATION = 320001400  # 字段校验失败
ERR_LOCKED = 320001402  # 数据已锁定（审批中）
ERR_OWNER = 320001403  # 负责人只能通过更换负责人接口修改
ERR_STATE = 320001404  # 状态不允许此操作（删除前须先作废）
OWNERS = ("FSUID_1000", "FSUID_1001", "FSUID_1002", "FSUID_1003", "FSUID_1004")
PRODUCTS = (
    ("1.01.002", "工业机器人 R2", "3000"),
    ("1.02.010", "伺服电机 S10", "1280"),
    ("1.07.001", "传感器模块", "200"),
    ("2.01.003", "安装调试服务", "5000"),
)


class QueryError(ValueError):
    """A query the OpenAPI refuses (``errorCode`` ``code``)."""

    def __init__(self, message: str, code: int = ERR_PARAM) -> None:
        super().__init__(message)
        self.code = code


class WriteRefused(ValueError):
    """A write the OpenAPI refuses, nothing applied."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _hexid(seed: int, n: int) -> str:
    """A 24-hex-digit id (Fxiaoke's ``_id`` shape) that sorts in creation order."""
    return f"{(seed * 2654435761) & 0xFFFFFFFF:08x}{n:016x}"


class TenantStore:
    """One tenant's data, thread-safe (the API runs on the event loop, control calls in threads)."""

    def __init__(
        self, seed: int, counts: Mapping[str, int], faults: FaultConfig, clock: Callable[[], float]
    ) -> None:
        self.seed = seed
        self.counts_wanted = dict(counts)
        self.faults = faults
        self.clock = clock
        self.lock = threading.RLock()
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in OBJECTS}
        self._by_id: dict[str, list[str]] = {name: [] for name in OBJECTS}
        self._by_time: dict[str, list[tuple[int, str]]] = {name: [] for name in OBJECTS}
        self.malformed: dict[tuple[str, str], str] = {}
        self._next = 0
        self._numbers: dict[str, int] = {}
        self._last_ms = 0
        self.populated = False
        #: counters the app exposes (fields written, work-flow runs, approvals)
        self.stats: dict[str, int] = {"fields_written": 0, "workflow_runs": 0, "approvals_started": 0}

    # -- ids, time, numbering -------------------------------------------------------------------
    def new_id(self) -> str:
        self._next += 1
        return _hexid(self.seed, self._next)

    def now_ms(self) -> int:
        """The server's clock in ms, strictly increasing (two writes never share a millisecond here;
        seeded ``same_second`` rows do)."""
        ms = int(self.clock() * 1000)
        self._last_ms = max(ms, self._last_ms + 1)
        return self._last_ms

    def _number(self, prefix: str) -> str:
        n = self._numbers.get(prefix, 0) + 1
        self._numbers[prefix] = n
        return f"{prefix}{n:08d}"

    # -- indexing ---------------------------------------------------------------------------------
    def _put(self, obj: str, row: dict[str, Any], old_ms: int | None = None) -> None:
        rid = row["_id"]
        table = self.rows[obj]
        if rid not in table:
            ids = self._by_id[obj]
            if not ids or ids[-1] < rid:
                ids.append(rid)
            else:
                bisect.insort(ids, rid)
        elif old_ms is not None:
            times = self._by_time[obj]
            i = bisect.bisect_left(times, (old_ms, rid))
            if i < len(times) and times[i] == (old_ms, rid):
                del times[i]
        table[rid] = row
        key = (row["last_modified_time"], rid)
        times = self._by_time[obj]
        if not times or times[-1] < key:
            times.append(key)
        else:
            bisect.insort(times, key)

    def _remove(self, obj: str, rid: str) -> None:
        row = self.rows[obj].pop(rid)
        ids = self._by_id[obj]
        del ids[bisect.bisect_left(ids, rid)]
        times = self._by_time[obj]
        del times[bisect.bisect_left(times, (row["last_modified_time"], rid))]

    def touch(self, obj: str, row: dict[str, Any], user: str) -> None:
        """Stamp ``row`` modified now by ``user`` and re-index it."""
        old = row["last_modified_time"]
        row["last_modified_time"] = self.now_ms()
        row["last_modified_by"] = [user]
        self._put(obj, row, old_ms=old)

    # -- seeding ------------------------------------------------------------------------------------
    def populate(self) -> None:
        """Seed every object once (row-level faults apply now)."""
        with self.lock:
            if self.populated:
                return
            self.populated = True
            self._seed()

    def _base(self, obj: str, rng: fakedata.FastRandom, ms: int) -> dict[str, Any]:
        owner = rng.choice(OWNERS)
        return {
            "_id": self.new_id(),
            "owner": [owner],
            "owner_department": "销售部",
            "data_own_department": ["1001"],
            "created_by": [owner],
            "create_time": ms - 86_400_000 * rng.randrange(1, 400),
            "last_modified_by": [owner],
            "last_modified_time": ms,
            "life_status": "normal",
            "lock_status": "0",
            "is_deleted": False,
            "record_type": "default__c",
            "tongbu_key__c": None,
            "object_describe_api_name": obj,
        }

    def _seed(self) -> None:
        n_accounts = self.counts_wanted.get("AccountObj", 0)
        rng = fakedata.FastRandom(f"{self.seed}:fxiaoke")
        stamps = self._seed_stamps(n_accounts)
        accounts: list[dict[str, Any]] = []
        levels = ("1", "2", "3", "4")
        industries = ("manufacturing", "it", "trade", "service", "construction", "other")
        for i in range(n_accounts):
            # Every fifth account is a company Kingdee does not have (index past Kingdee's range).
            index = i if i % 5 != 4 else 1_000_000 + i
            comp = fakedata.company(index, rng, self.seed)
            row = self._base("AccountObj", rng, stamps[i])
            cid = 100_000 + i  # Kingdee's FCUSTID of the same company: the same derived ERP figures
            row.update(
                name=comp.name,
                account_no=self._number("KH"),
                # Companies Kingdee also has always carry their credit code (it links them); a share of
                # the Fxiaoke-only ones were entered without one, as real CRM data is.
                uniform_social_credit_code=comp.credit_code if (i % 5 != 4 or rng.random() > 0.3) else None,
                account_level=rng.choice(levels),
                industry_level1=rng.choice(industries),
                tel=fakedata.landline(rng, comp.city),
                address=fakedata.address(rng, comp.city),
                url=f"https://www.{comp.domain}.example.cn",
                remark=None,
                high_seas_id=None,
                credit_limit__c=format(Decimal((cid * 7919) % 20 + 1) * 50_000, "f"),
                receivable_balance__c=format(Decimal((cid * 104_729) % 800) * 125, "f"),
                erp_number__c=None,
                level_changed_time__c=None,
            )
            accounts.append(row)
            self._put("AccountObj", row)
        self._malform(accounts)
        people = max(0, self.counts_wanted.get("ContactObj", 0))
        for i in range(people):
            acct = accounts[i % len(accounts)] if accounts else None
            p = fakedata.person(rng)
            row = self._base("ContactObj", rng, EPOCH_MS + i * 997)
            row.update(
                name=p.name,
                account_id=acct["_id"] if acct else None,
                job_title=rng.choice(("总经理", "采购经理", "财务总监", "技术主管", "销售代表")),
                department=rng.choice(("采购部", "财务部", "技术部", "总经办")),
                mobile1=fakedata.mobile(rng),
                tel1=None,
                email=f"{p.pinyin}@example.cn",
                gender=rng.choice(("1", "2")),
            )
            self._put("ContactObj", row)
        for i in range(max(0, self.counts_wanted.get("LeadsObj", 0))):
            p = fakedata.person(rng)
            comp = fakedata.company(2_000_000 + i, rng, self.seed)
            row = self._base("LeadsObj", rng, EPOCH_MS + i * 991)
            row.update(
                name=p.name,
                company=comp.name,
                mobile=fakedata.mobile(rng),
                email=f"{p.pinyin}@example.cn",
                source=rng.choice(("1", "2", "3", "4")),
                biz_status=rng.choice(("un_processed", "processed", "closed")),
                budget__c=str(rng.randrange(5, 500) * 1000),
            )
            self._put("LeadsObj", row)
        for i in range(max(0, self.counts_wanted.get("NewOpportunityObj", 0))):
            if not accounts:
                break
            acct = accounts[(i * 3) % len(accounts)]
            stage = rng.choice(("1", "2", "3", "4", "5"))
            row = self._base("NewOpportunityObj", rng, EPOCH_MS + i * 983)
            row.update(
                name=f"{acct['name'][:12]}-{rng.choice(('产线改造', '年度采购', '设备更新', '运维服务'))}",
                account_id=acct["_id"],
                sales_stage=stage,
                probability=STAGE_PROBABILITY[stage],
                amount=str(rng.randrange(10, 900) * 1000),
                close_date=EPOCH_MS + rng.randrange(30, 400) * 86_400_000,
            )
            self._put("NewOpportunityObj", row)
        for i in range(max(0, self.counts_wanted.get("SalesOrderObj", 0))):
            if not accounts:
                break
            acct = accounts[(i * 7) % len(accounts)]
            row = self._base("SalesOrderObj", rng, EPOCH_MS + i * 977)
            row.update(
                name=self._number("XSDD"),
                account_id=acct["_id"],
                order_time=EPOCH_MS + rng.randrange(0, 300) * 86_400_000,
                order_amount="0",
                currency__c="CNY",
                erp_bill_no__c=None,
                erp_status__c=None,
                remark=None,
            )
            self._put("SalesOrderObj", row)
            lines = [
                {
                    "product_code__c": code,
                    "product_name__c": pname,
                    "quantity": str(rng.randrange(1, 20)),
                    "sales_price": price,
                    "tax_rate__c": "13",
                    "line_no__c": str(n + 1),
                }
                for n, (code, pname, price) in enumerate(rng.sample(PRODUCTS, rng.randrange(1, 4)))
            ]
            self._replace_lines(row, lines, row["owner"][0], stamp=False)
        for i in range(max(0, self.counts_wanted.get("PaymentObj", 0))):
            if not accounts:
                break
            acct = accounts[(i * 11) % len(accounts)]
            row = self._base("PaymentObj", rng, EPOCH_MS + i * 971)
            row.update(
                name=self._number("HK"),
                account_id=acct["_id"],
                order_id=None,
                payment_amount=format(Decimal(str(fakedata.amount(rng, 1000, 90000))), "f"),
                payment_time=EPOCH_MS + rng.randrange(0, 300) * 86_400_000,
                payment_term=rng.choice(("4", "5")),
                erp_bill_no__c=None,
                currency__c="CNY",
            )
            self._put("PaymentObj", row)

    def _seed_stamps(self, n: int) -> list[int]:
        stamps = [EPOCH_MS + i * 1000 for i in range(n)]
        share = self.faults.value("same_second", 0.0)
        if share > 0 and n:
            import random

            picked = pick_rows(n, share, random.Random(self.seed * 31 + 3))
            for i in picked:
                stamps[i] = EPOCH_MS + 500  # to the millisecond
            stamps.sort()
        return stamps

    def _malform(self, accounts: list[dict[str, Any]]) -> None:
        import random

        rate = self.faults.value("malformed", 0.0)
        if rate <= 0:
            return
        rng = random.Random(self.seed * 131 + 7)
        for row in accounts:
            if rng.random() < rate:
                # The kind of junk a real tenant holds: a credit limit typed as words.
                row["credit_limit__c"] = "五十万"
                self.malformed[("AccountObj", row["_id"])] = "credit_limit__c is not a number"

    # -- reads ----------------------------------------------------------------------------------------
    def query(self, obj: str, info: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int, int, int]:
        """``search_query_info`` -> (page, total, offset, limit), or :class:`QueryError`."""
        desc = self.describe_of(obj)
        limit, offset = info.get("limit", 20), info.get("offset", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit 须为 1 到 {MAX_LIMIT} 的整数 (got {str(limit)[:20]})")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueryError("offset 须为非负整数")
        if offset % limit:
            raise QueryError(f"offset 须为 limit 的整数倍 (offset {offset}, limit {limit})")
        if offset > MAX_OFFSET:
            raise QueryError(f"offset 不能超过 {MAX_OFFSET}; 请按 _id 升序翻页 (_id GT 上一页最后一条)")
        filters = _filters(info.get("filters") or [], desc)
        orders = _orders(info.get("orders") or [], desc)
        projection = info.get("fieldProjection") or []
        if not isinstance(projection, list) or len(projection) > 200:
            raise QueryError("fieldProjection 须为字段列表")
        with self.lock:
            rows = self._candidates(obj, filters, orders)
            total = len(rows)
            page = rows[offset : offset + limit]
            out = [self.public(r, projection) for r in page]
        return out, total, offset, limit

    def _candidates(
        self, obj: str, filters: list[tuple[str, str, list[Any]]], orders: list[tuple[str, bool]]
    ) -> list[dict[str, Any]]:
        table = self.rows[obj]
        by_id = orders in ([("_id", True)], [])
        by_time = orders in ([("last_modified_time", True), ("_id", True)], [("last_modified_time", True)])
        if by_id and all(f == "_id" and op in ("GT", "GTE") for f, op, _ in filters):
            ids = self._by_id[obj]
            lo = max(
                (
                    (
                        bisect.bisect_right(ids, str(v[0]))
                        if op == "GT"
                        else bisect.bisect_left(ids, str(v[0]))
                    )
                    for _, op, v in filters
                ),
                default=0,
            )
            return [table[i] for i in ids[lo:]]
        if not filters and orders == [("last_modified_time", False), ("_id", False)]:
            return [table[rid] for _, rid in reversed(self._by_time[obj])]
        if by_time:
            times = self._by_time[obj]
            lo, hi = 0, len(times)
            rest = []
            for f, op, v in filters:
                if f == "last_modified_time" and op in ("GT", "GTE", "EQ", "LT", "LTE"):
                    t = _int(v[0])
                    if op == "GT":
                        lo = max(lo, bisect.bisect_right(times, (t, "~")))
                    elif op == "GTE":
                        lo = max(lo, bisect.bisect_left(times, (t, "")))
                    elif op == "EQ":
                        lo = max(lo, bisect.bisect_left(times, (t, "")))
                        hi = min(hi, bisect.bisect_right(times, (t, "~")))
                    elif op == "LT":
                        hi = min(hi, bisect.bisect_left(times, (t, "")))
                    else:
                        hi = min(hi, bisect.bisect_right(times, (t, "~")))
                else:
                    rest.append((f, op, v))
            rows = (table[rid] for _, rid in times[lo:hi])
            return [r for r in rows if _matches(r, rest)] if rest else list(rows)
        rows = [r for r in (table[i] for i in self._by_id[obj]) if _matches(r, filters)]
        desc = OBJECTS[obj]
        for f, asc in reversed(orders):
            numeric = desc.by_name[f].type in ("number", "currency", "percentile")
            rows.sort(key=lambda r, f=f, numeric=numeric: _sort_key(r.get(f), numeric), reverse=not asc)
        return rows

    def get(self, obj: str, rid: str) -> dict[str, Any]:
        self.describe_of(obj)
        with self.lock:
            row = self.rows[obj].get(str(rid))
            if row is None:
                raise WriteRefused(f"数据不存在: {obj} {str(rid)[:40]}", ERR_NOT_FOUND)
            return self.public(row, [])

    def public(self, row: Mapping[str, Any], projection: list[Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(row))
        if projection:
            keep = {str(p) for p in projection} | {"_id"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    @staticmethod
    def describe_of(obj: str) -> ObjectDesc:
        desc = OBJECTS.get(str(obj))
        if desc is None:
            raise QueryError(f"对象不存在: {str(obj)[:60]}", ERR_NOT_FOUND)
        return desc

    # -- writes -----------------------------------------------------------------------------------------
    def create(
        self,
        obj: str,
        data: Mapping[str, Any],
        details: Mapping[str, Any],
        user: str,
        *,
        approval: bool,
        workflow: bool,
    ) -> str:
        desc = self.describe_of(obj)
        if desc.api_name == "SalesOrderProductObj":
            raise WriteRefused("订单产品须随销售订单的 details 创建", ERR_PARAM)
        values = self._checked(desc, data, creating=True)
        lines = self._checked_lines(desc, details)
        with self.lock:
            self._check_refs(desc, values)
            ms = self.now_ms()
            row = {f.api_name: None for f in desc.fields}
            row.update(
                _id=self.new_id(),
                owner=values.pop("owner", None) or [user],
                owner_department="销售部",
                data_own_department=["1001"],
                created_by=[user],
                create_time=ms,
                last_modified_by=[user],
                last_modified_time=ms,
                life_status="normal",
                lock_status="0",
                is_deleted=False,
                record_type=values.pop("record_type", None) or "default__c",
                object_describe_api_name=obj,
            )
            row.update(values)
            if obj == "AccountObj":
                row["account_no"] = self._number("KH")
            elif obj == "SalesOrderObj":
                row["name"] = self._number("XSDD")
                row["order_amount"] = "0"
            elif obj == "PaymentObj":
                row["name"] = self._number("HK")
            if obj == "NewOpportunityObj" and row.get("sales_stage"):
                row["probability"] = STAGE_PROBABILITY[row["sales_stage"]]
            self._put(obj, row)
            self.stats["fields_written"] += len(values)
            if desc.detail:
                self._replace_lines(row, lines or [], user, stamp=False)
            if desc.approval and approval:
                row["life_status"], row["lock_status"] = "under_review", "1"
                self.stats["approvals_started"] += 1
            return str(row["_id"])

    def update(
        self,
        obj: str,
        data: Mapping[str, Any],
        details: Mapping[str, Any] | None,
        user: str,
        *,
        approval: bool,
        workflow: bool,
    ) -> None:
        desc = self.describe_of(obj)
        rid = str(data.get("_id") or "")
        if "owner" in data:
            raise WriteRefused("负责人不能通过更新接口修改, 请使用更换负责人接口 (changeOwner)", ERR_OWNER)
        values = self._checked(desc, {k: v for k, v in data.items() if k != "_id"}, creating=False)
        lines = self._checked_lines(desc, details) if details else None
        with self.lock:
            row = self.rows[obj].get(rid)
            if row is None:
                raise WriteRefused(f"数据不存在: {obj} {rid[:40]}", ERR_NOT_FOUND)
            if row["lock_status"] == "1":
                raise WriteRefused("数据已锁定 (审批中), 不能编辑", ERR_LOCKED)
            if row["life_status"] == "invalid":
                raise WriteRefused("数据已作废, 不能编辑", ERR_STATE)
            self._check_refs(desc, values)
            level_before = row.get("account_level")
            row.update(values)
            self.stats["fields_written"] += len(values)
            if obj == "NewOpportunityObj" and "sales_stage" in values and values["sales_stage"]:
                row["probability"] = STAGE_PROBABILITY[values["sales_stage"]]
            if lines is not None and desc.detail:
                self._replace_lines(row, lines, user, stamp=False)
            self.touch(obj, row, user)
            if desc.approval and approval:
                row["life_status"], row["lock_status"] = "under_review", "1"
                self.stats["approvals_started"] += 1
            if workflow and obj == "AccountObj" and row.get("account_level") != level_before:
                # The tenant's work flow "客户级别变更" stamps the change: a second modification by
                # the system user, as a real work flow's field update is.
                row["level_changed_time__c"] = self.now_ms()
                self.touch(obj, row, "FSUID_SYSTEM")
                self.stats["workflow_runs"] += 1

    def invalid(self, obj: str, rid: str, user: str) -> None:
        self.describe_of(obj)
        with self.lock:
            row = self.rows[obj].get(str(rid))
            if row is None:
                raise WriteRefused(f"数据不存在: {obj} {str(rid)[:40]}", ERR_NOT_FOUND)
            if row["lock_status"] == "1":
                raise WriteRefused("数据已锁定 (审批中), 不能作废", ERR_LOCKED)
            row["life_status"] = "invalid"
            self.touch(obj, row, user)

    def delete(self, obj: str, ids: Iterable[str]) -> int:
        self.describe_of(obj)
        with self.lock:
            wanted = [str(i) for i in ids]
            for rid in wanted:
                row = self.rows[obj].get(rid)
                if row is None:
                    raise WriteRefused(f"数据不存在: {obj} {rid[:40]}", ERR_NOT_FOUND)
                if row["life_status"] != "invalid":
                    raise WriteRefused(f"{rid} 未作废: 删除前须先作废 (invalid)", ERR_STATE)
            for rid in wanted:
                self._remove(obj, rid)
                if obj == "SalesOrderObj":
                    for line in [
                        r for r in self.rows["SalesOrderProductObj"].values() if r["order_id"] == rid
                    ]:
                        self._remove("SalesOrderProductObj", line["_id"])
            return len(wanted)

    def change_owner(self, obj: str, rid: str, owner: list[str], user: str) -> None:
        desc = self.describe_of(obj)
        check_value(desc.by_name["owner"], owner)
        if not owner:
            raise WriteRefused("ownerId 不能为空", ERR_PARAM)
        with self.lock:
            row = self.rows[obj].get(str(rid))
            if row is None:
                raise WriteRefused(f"数据不存在: {obj} {str(rid)[:40]}", ERR_NOT_FOUND)
            row["owner"] = list(owner)
            self.stats["fields_written"] += 1
            self.touch(obj, row, user)

    def approve(self, obj: str, rid: str, *, reject: bool = False) -> None:
        """Finish a record's approval flow (``/_sim/approve``): normal and unlocked, or rejected."""
        with self.lock:
            row = self.rows[obj][str(rid)]
            row["life_status"] = "ineffective" if reject else "normal"
            row["lock_status"] = "0"
            self.touch(obj, row, "FSUID_SYSTEM")

    def edit(
        self, obj: str, rid: str, values: Mapping[str, Any], *, stamp: bool = True, user: str = "FSUID_1001"
    ) -> None:
        """An edit by a user in the CRM's own UI (``stamp``: False edits without a modification time,
        the out-of-band change no feed shows)."""
        desc = self.describe_of(obj)
        with self.lock:
            row = self.rows[obj][str(rid)]
            for k, v in values.items():
                if k not in desc.by_name:
                    raise KeyError(f"{obj} has no field {k!r}")
                row[k] = v
            if obj == "NewOpportunityObj" and values.get("sales_stage"):
                row["probability"] = STAGE_PROBABILITY[values["sales_stage"]]
            if stamp:
                self.touch(obj, row, user)

    def _replace_lines(
        self, order: dict[str, Any], lines: list[dict[str, Any]], user: str, *, stamp: bool
    ) -> None:
        """Master-detail semantics: the lines given become the order's lines (kept by ``_id``)."""
        current = {
            r["_id"]: r for r in self.rows["SalesOrderProductObj"].values() if r["order_id"] == order["_id"]
        }
        keep: set[str] = set()
        total = Decimal(0)
        for line in lines:
            lid = line.get("_id")
            if lid and lid in current:
                row = current[lid]
                changed = {k: v for k, v in line.items() if k != "_id" and row.get(k) != v}
                row.update(changed)
                keep.add(lid)
                if changed:
                    row["subtotal"] = _mul(row["quantity"], row["sales_price"])
                    self.touch("SalesOrderProductObj", row, user)
            else:
                ms = self.now_ms()
                row = {f.api_name: None for f in OBJECTS["SalesOrderProductObj"].fields}
                row.update(
                    _id=self.new_id(),
                    owner=order["owner"],
                    created_by=[user],
                    create_time=ms,
                    last_modified_by=[user],
                    last_modified_time=ms,
                    life_status="normal",
                    lock_status="0",
                    is_deleted=False,
                    record_type="default__c",
                    object_describe_api_name="SalesOrderProductObj",
                    order_id=order["_id"],
                )
                row.update({k: v for k, v in line.items() if k != "_id"})
                row["subtotal"] = _mul(row["quantity"], row["sales_price"])
                self._put("SalesOrderProductObj", row)
                keep.add(row["_id"])
            total += Decimal(row["subtotal"])
        for lid in set(current) - keep:
            self._remove("SalesOrderProductObj", lid)
        order["order_amount"] = format(total.normalize(), "f") if total else "0"

    def _checked(self, desc: ObjectDesc, data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("dataObjectApiName", "object_describe_api_name"):
                continue
            f = desc.by_name.get(key)
            if f is None:
                raise WriteRefused(f"字段不存在: {desc.api_name}.{str(key)[:60]}", ERR_VALIDATION)
            if f.readonly:
                raise WriteRefused(f"字段只读: {desc.api_name}.{key}", ERR_VALIDATION)
            try:
                out[key] = check_value(f, value)
            except ValueError_ as exc:
                raise WriteRefused(f"字段校验失败 {desc.api_name}.{exc}", ERR_VALIDATION) from None
        if creating:
            for f in desc.fields:
                if f.required and not f.readonly and f.api_name != "owner" and out.get(f.api_name) is None:
                    raise WriteRefused(f"字段必填: {desc.api_name}.{f.api_name} ({f.label})", ERR_VALIDATION)
        return out

    def _checked_lines(self, desc: ObjectDesc, details: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        if not details:
            return []
        if not desc.detail or set(details) - {desc.detail}:
            raise WriteRefused(f"details: {desc.api_name} 只有从对象 {desc.detail}", ERR_PARAM)
        raw = details.get(desc.detail) or []
        if not isinstance(raw, list) or len(raw) > 500:
            raise WriteRefused("details 须为列表 (最多 500 行)", ERR_PARAM)
        line_desc = OBJECTS[desc.detail]
        out = []
        for item in raw:
            if not isinstance(item, Mapping):
                raise WriteRefused("details 的每一行须为对象", ERR_PARAM)
            lid = item.get("_id")
            checked = self._checked(
                line_desc, {k: v for k, v in item.items() if k != "_id"}, creating=not lid
            )
            if lid:
                checked["_id"] = str(lid)
            out.append(checked)
        return out

    def _check_refs(self, desc: ObjectDesc, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            f = desc.by_name[key]
            target = self.rows.get(f.target or "")
            if (
                f.type == "object_reference"
                and value is not None
                and target is not None
                and str(value) not in target
            ):
                raise WriteRefused(
                    f"关联数据不存在: {desc.api_name}.{key} = {str(value)[:40]}", ERR_VALIDATION
                )

    # -- truth ------------------------------------------------------------------------------------------
    def truth(self, obj: str, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``obj`` in ``_id`` order, with ``_malformed`` (the reason, or None); sales
        orders carry their ``lines``."""
        self.describe_of(obj)
        with self.lock:
            ids = self._by_id[obj]
            end = len(ids) if limit is None else offset + limit
            out = []
            for rid in ids[offset:end]:
                row = self.public(self.rows[obj][rid], [])
                row["_malformed"] = self.malformed.get((obj, rid))
                if obj == "SalesOrderObj":
                    row["lines"] = self.lines_of(rid)
                out.append(row)
            return out

    def lines_of(self, order_id: str) -> list[dict[str, Any]]:
        lines = [
            self.public(r, [])
            for r in self.rows["SalesOrderProductObj"].values()
            if r["order_id"] == order_id
        ]
        return sorted(lines, key=lambda r: r["_id"])


def _mul(qty: Any, price: Any) -> str:
    value = (Decimal(str(qty)) * Decimal(str(price))).quantize(Decimal("0.01"))
    return format(value.normalize(), "f")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise QueryError("时间过滤值须为毫秒时间戳")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise QueryError(f"时间过滤值须为毫秒时间戳 (got {str(value)[:30]})") from None


def _filters(raw: Any, desc: ObjectDesc) -> list[tuple[str, str, list[Any]]]:
    if not isinstance(raw, list) or len(raw) > 50:
        raise QueryError("filters 须为列表 (最多 50 个条件)")
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise QueryError("filters 的每一项须为对象")
        name, op, values = item.get("field_name"), item.get("operator"), item.get("field_values")
        if name not in desc.by_name:
            raise QueryError(f"过滤字段不存在: {str(name)[:60]}")
        if op not in OPERATORS:
            raise QueryError(f"operator 不支持: {str(op)[:20]} (支持 {', '.join(OPERATORS)})")
        if not isinstance(values, list) or len(values) > 500:
            raise QueryError("field_values 须为列表, 即使只有一个值")
        if op not in ("IS", "ISN") and not values:
            raise QueryError(f"{name} {op}: field_values 不能为空")
        out.append((str(name), str(op), values))
    return out


def _orders(raw: Any, desc: ObjectDesc) -> list[tuple[str, bool]]:
    if not isinstance(raw, list) or len(raw) > 5:
        raise QueryError("orders 须为列表 (最多 5 项)")
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or item.get("fieldName") not in desc.by_name:
            raise QueryError(f"排序字段不存在: {str(item)[:60]}")
        out.append((str(item["fieldName"]), bool(item.get("isAsc", True))))
    return out


def _sort_key(value: Any, numeric: bool) -> tuple[int, Any]:
    """Nulls first; numbers (ms times, and number fields held as strings) by value; text as text
    (a hex ``_id`` such as ``…00e0`` is not the number 0)."""
    if value is None:
        return (0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    if numeric:
        try:
            return (1, float(value))
        except (TypeError, ValueError):
            pass
    return (2, str(value))


_NUMERIC_TYPES = ("number", "currency", "percentile")


def _cmp(value: Any, target: Any, numeric: bool) -> tuple[Any, Any]:
    """The pair to compare: ms times as integers, number fields (strings) as decimals, the rest as
    text (a hex ``_id`` is never read as a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return value, int(target)
        except (TypeError, ValueError):
            return str(value), str(target)
    if numeric:
        try:
            return Decimal(str(value)), Decimal(str(target))
        except Exception:  # noqa: BLE001 - junk in a number field compares as text
            pass
    return str(value), str(target)


def _matches(row: Mapping[str, Any], filters: list[tuple[str, str, list[Any]]]) -> bool:
    desc = OBJECTS[str(row.get("object_describe_api_name"))]
    for name, op, values in filters:
        value = row.get(name)
        if op == "IS":
            if value not in (None, "", []):
                return False
            continue
        if op == "ISN":
            if value in (None, "", []):
                return False
            continue
        items = value if isinstance(value, list) else [value]
        if op in ("IN", "NIN"):
            hit = any(str(v) in {str(t) for t in values} for v in items)
            if hit != (op == "IN"):
                return False
            continue
        if op == "LIKE":
            if not any(str(values[0]) in str(v) for v in items if v is not None):
                return False
            continue
        if value is None:
            if op != "N":
                return False
            continue
        if isinstance(value, list):
            hit = str(values[0]) in value
            if hit != (op == "EQ"):
                return False
            continue
        a, b = _cmp(value, values[0], desc.by_name[name].type in _NUMERIC_TYPES)
        try:
            ok = {"EQ": a == b, "N": a != b, "GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b}[op]
        except TypeError:
            ok = False
        if not ok:
            return False
    return True


def monotonic_clock() -> float:
    """The default clock (wall time; tests shift it with ``advance``)."""
    return time.time()
