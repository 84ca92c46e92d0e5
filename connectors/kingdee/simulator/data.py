"""Deterministic Kingdee master and transaction data: customers, sales orders (with lines), receivables.

Companies, people, phone numbers, addresses and credit codes come from the kit's shared generator
(:mod:`connectors.kit.fakedata`); what is Kingdee's own (departments, sellers, materials, document
states, the column order of each form) lives here. Each ``*_row`` returns the values in the form's
column order; ``malform_*`` plants one named defect for the ``malformed`` fault.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from connectors.kingdee.simulator.forms import (
    CUSTOMER_COLUMNS,
    ORDER_COLUMNS,
    ORDER_LINE_COLUMNS,
    RECEIVABLE_COLUMNS,
    to_ms,
)
from connectors.kit import fakedata as fd
from connectors.kit import uscc

SEED_FROM = to_ms(dt.datetime(2023, 1, 1))
SEED_TO = to_ms(dt.datetime(2025, 6, 30, 23, 59, 59))
SAME_SECOND = to_ms(dt.datetime(2024, 6, 28, 18, 0, 0))  # a bulk job stamped many rows at once
_FOUND_FROM = (dt.datetime(1993, 1, 1) - dt.datetime(1970, 1, 1)).days * 86_400_000
_DAY = 86_400_000
ID_BASE = 100_000  # internal ids (FCUSTID, FID) of record i are ID_BASE + i

_DEPTS = (
    ("BM001", "华东销售部"),
    ("BM002", "华南销售部"),
    ("BM003", "华北销售部"),
    ("BM004", "西南销售部"),
    ("BM005", "华中销售部"),
    ("BM006", "大客户部"),
)
_SELLERS = tuple(
    (100_500 + i, f"YG{i + 1:04d}", name, _DEPTS[i % len(_DEPTS)])
    for i, name in enumerate(
        ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵强", "黄敏", "周杰", "吴婷", "徐涛", "孙丽")
    )
)
_CUST_TYPES = (("KHLB001_SYS", "普通销售客户"),) * 8 + (
    ("KHLB002_SYS", "寄售客户"),
    ("KHLB003_SYS", "内部结算客户"),
)
_GROUPS = (
    ("A", "A类客户"),
    ("B", "B类客户"),
    ("B", "B类客户"),
    ("C", "C类客户"),
    ("C", "C类客户"),
    ("C", "C类客户"),
)
_CURRENCIES = ((1, "PRE001", "人民币"),) * 9 + ((7, "PRE007", "美元"),)
_ORG = (1, "100", "总部")
_DOC_STATUS = "C" * 17 + "ABDZ"  # mostly 已审核
# (number, name, specification, unit number, unit name, low price, high price, tax rate %)
_MATERIALS = (
    ("1.01.001", "伺服电机", "SGM7J-08A 750W", "Pcs", "台", 1800, 2600, 13),
    ("1.01.002", "交流伺服驱动器", "SGD7S-5R5 1.5kW", "Pcs", "台", 2500, 3800, 13),
    ("1.02.001", "变频器", "ACS580 11kW", "Pcs", "台", 5200, 7600, 13),
    ("1.03.001", "PLC控制器", "S7-1200 CPU1214C", "Pcs", "台", 2100, 2900, 13),
    ("1.03.002", "PLC扩展模块", "SM1223 DI8/DQ8", "Pcs", "块", 900, 1300, 13),
    ("1.04.001", "工业触摸屏", "10英寸 TP1000", "Pcs", "台", 2800, 4200, 13),
    ("1.05.001", "增量型编码器", "1024线 E6B2", "Pcs", "个", 380, 620, 13),
    ("1.06.001", "行星减速机", "PLF090 1:10", "Pcs", "台", 1500, 2300, 13),
    ("1.07.001", "光电传感器", "漫反射型 E3Z-D61", "Pcs", "个", 120, 260, 13),
    ("1.07.002", "接近开关", "M12 NPN常开", "Pcs", "个", 45, 90, 13),
    ("1.08.001", "交流接触器", "LC1D25 AC220V", "Pcs", "个", 160, 260, 13),
    ("1.08.002", "小型断路器", "C32 3P", "Pcs", "个", 55, 120, 13),
    ("1.09.001", "工业相机", "500万像素 GigE", "Pcs", "台", 3600, 5800, 13),
    ("1.10.001", "直线导轨", "HGR20 1000mm", "Pcs", "根", 260, 420, 13),
    ("1.11.001", "滚珠丝杠", "SFU1605 500mm", "Pcs", "根", 300, 520, 13),
    ("1.12.001", "标准气缸", "SC63x100", "Pcs", "个", 210, 360, 13),
    ("1.12.002", "电磁阀", "4V210-08 DC24V", "Pcs", "个", 65, 110, 13),
    ("2.01.001", "工业控制软件授权", "V3.0 单机版", "Set", "套", 12000, 30000, 13),
    ("3.01.001", "设备安装调试服务", "现场服务", "Time", "次", 2000, 8000, 6),
    ("3.02.001", "年度维保服务", "7x24 响应", "Year", "年", 8000, 25000, 6),
)
_NOTES = (
    "",
    "",
    "",
    "加急",
    "客户要求分批发货",
    "含安装调试",
    "月结60天",
    "需开具增值税专用发票",
    "框架协议下单",
)

_round2 = fd.round2


def _dates(rng: random.Random, modified: int | None, max_age_days: int) -> tuple[int, int, str, int | None]:
    """(modified, created, document status, approved) of a record; ``modified`` stamps an edit."""
    mod = modified if modified is not None else rng.randrange(SEED_FROM, SEED_TO)
    created = mod - rng.randrange(0, max_age_days * _DAY) if modified is None else mod
    status = rng.choice(_DOC_STATUS)
    approve = created + rng.randrange(0, max(1, mod - created + 1)) if status == "C" else None
    return mod, created, status, approve


class RowFactory:
    """Makes the rows of one simulated database; the same seed always makes the same rows."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.next_entry_id = 0

    def customer_row(self, i: int, rng: random.Random, modified: int | None = None) -> list[Any]:
        """Customer ``i`` in :data:`CUSTOMER_COLUMNS` order."""
        cid = ID_BASE + i
        comp = fd.company(i, rng, self.seed)
        city = comp.city
        seller_id, seller_no, seller_name, (dept_no, dept_name) = rng.choice(_SELLERS)
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        mod, created, status, approve = _dates(rng, modified, 400)
        found = _FOUND_FROM + rng.randrange(0, 11_000) * _DAY
        address = fd.address(rng, city)
        group_no, group_name = rng.choice(_GROUPS)
        type_no, type_name = rng.choice(_CUST_TYPES)
        return [
            cid,
            f"CUST{i + 1:07d}",
            comp.name,
            comp.short_name,
            comp.credit_code,
            comp.credit_code,
            fd.person(rng).name,
            f"{rng.choice((50, 100, 200, 500, 1000, 2000, 5000))}万元人民币",
            found,
            fd.landline(rng, city),
            fd.landline(rng, city),
            address,
            city.postcode,
            f"www.{cid}.com.cn",
            comp.domain,
            "China",
            "中国",
            city.division[:2] + "0000",
            city.province,
            type_no,
            type_name,
            group_no,
            group_name,
            seller_id,
            seller_no,
            seller_name,
            dept_no,
            dept_name,
            cur_id,
            cur_no,
            cur_name,
            _ORG[0],
            _ORG[1],
            _ORG[0],
            _ORG[1],
            status,
            "B" if rng.random() < 0.04 else "A",
            created,
            mod,
            approve,
            # Credit limit and receivable balance from the id alone (no draw from rng: the rest of
            # the seeded data stays exactly as it was before these columns existed).
            float((cid * 7919) % 20 + 1) * 50_000.0,
            float((cid * 104_729) % 800) * 125.0,
            None,
            None,
        ]

    def order_rows(
        self, i: int, rng: random.Random, n_customers: int, modified: int | None = None
    ) -> tuple[list[Any], list[list[Any]]]:
        """Sales order ``i``: its header (:data:`ORDER_COLUMNS`) and 1-4 lines (:data:`ORDER_LINE_COLUMNS`)."""
        fid = ID_BASE + i
        cust = ID_BASE + (rng.randrange(n_customers) if n_customers else 0)
        mod, created, status, approve = _dates(rng, modified, 90)
        day = created - created % _DAY
        seller_id, seller_no, seller_name, (dept_no, dept_name) = rng.choice(_SELLERS)
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        address = fd.address(rng, rng.choice(fd.CITIES))
        lines: list[list[Any]] = []
        total = 0.0
        for seq in range(1, rng.choice((1, 1, 2, 2, 3, 3, 4)) + 1):
            m_i = rng.randrange(len(_MATERIALS))
            number, mname, spec, unit_no, unit_name, low, high, rate = _MATERIALS[m_i]
            qty = float(rng.choice((1, 1, 2, 2, 3, 5, 10, 20, 50)))
            tax_price = _round2(rng.uniform(low, high))
            price = _round2(tax_price / (1 + rate / 100))
            all_amount = _round2(qty * tax_price)
            amount = _round2(qty * price)
            total += all_amount
            self.next_entry_id += 1
            lines.append(
                [
                    self.next_entry_id,
                    fid,
                    seq,
                    200_000 + m_i,
                    number,
                    mname,
                    spec,
                    unit_no,
                    unit_name,
                    qty,
                    price,
                    tax_price,
                    float(rate),
                    amount,
                    all_amount,
                    day + rng.randrange(3, 45) * _DAY,
                ]
            )
        header = [
            fid,
            f"XSDD{i + 1:08d}",
            "XSDD01_SYS",
            "标准销售订单",
            day,
            cust,
            _ORG[0],
            _ORG[1],
            _ORG[2],
            dept_no,
            dept_name,
            seller_id,
            seller_no,
            seller_name,
            cur_no,
            cur_name,
            _round2(total),
            status,
            "B" if status == "C" and rng.random() < 0.3 else "A",
            "B" if rng.random() < 0.02 else "A",
            fd.person(rng).name,
            fd.mobile(rng),
            address,
            rng.choice(_NOTES),
            created,
            mod,
            approve,
            None,
            None,
        ]
        return header, lines

    def receivable_row(
        self, i: int, rng: random.Random, n_customers: int, n_orders: int, modified: int | None = None
    ) -> list[Any]:
        """Receivable ``i`` in :data:`RECEIVABLE_COLUMNS` order."""
        fid = ID_BASE + i
        cust = ID_BASE + (rng.randrange(n_customers) if n_customers else 0)
        mod, created, status, approve = _dates(rng, modified, 60)
        day = created - created % _DAY
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        amount = fd.amount(rng, 500, 300_000)
        state = rng.choice("AAABC")
        written = (
            0.0
            if state == "A"
            else (amount if state == "C" else _round2(amount * (0.1 + 0.8 * rng.random())))
        )
        order_no = f"XSDD{rng.randrange(n_orders) + 1:08d}" if n_orders and rng.random() < 0.8 else None
        return [
            fid,
            f"AR{i + 1:08d}",
            "YSD01_SYS",
            "标准应收单",
            day,
            day + rng.choice((30, 60, 90)) * _DAY,
            cust,
            cur_no,
            cur_name,
            _ORG[1],
            _ORG[1],
            amount,
            state,
            written,
            _round2(amount - written),
            order_no,
            status,
            "B" if rng.random() < 0.02 else "A",
            created,
            mod,
            approve,
            None,
        ]


# -- the malformed fault: one named defect per chosen row --------------------------------------------
_C_NAME, _C_CODE, _C_FOUND = (CUSTOMER_COLUMNS.index(c) for c in ("FName", "FSOCIALCRECODE", "FFoundDate"))
_O_DATE, _O_TOTAL = ORDER_COLUMNS.index("FDate"), ORDER_COLUMNS.index("FBillAllAmount")
_L_TAXPRICE = ORDER_LINE_COLUMNS.index("FTaxPrice")
_R_DATE, _R_END, _R_AMOUNT = (RECEIVABLE_COLUMNS.index(c) for c in ("FDATE", "FENDDATE_H", "FALLAMOUNTFOR"))


def malform_customer(row: list[Any], kind: int) -> None:
    """Plant defect ``kind`` (0-2) in a customer row; the last column names it."""
    if kind == 0:
        row[_C_NAME], row[-1] = None, "FName: missing customer name"
    elif kind == 1:
        good = row[_C_CODE]
        bad = good[:17] + uscc.ALPHABET[(uscc.ALPHABET.index(good[17]) + 1) % 31]
        row[_C_CODE], row[-1] = bad, "FSOCIALCRECODE: invalid check character"
    else:
        row[_C_FOUND], row[-1] = "2019-02-30T00:00:00", "FFoundDate: unparsable date"


def malform_order(head: list[Any], lines: list[list[Any]], kind: int) -> None:
    """Plant defect ``kind`` (0-2) in a sales order (header or first line)."""
    if kind == 0:
        head[_O_DATE], head[-1] = "2024-13-45T00:00:00", "FDate: unparsable date"
    elif kind == 1:
        head[_O_TOTAL], head[-1] = "1,2O4.5", "FBillAllAmount: not a number"
    else:
        lines[0][_L_TAXPRICE], head[-1] = "N/A", "FSaleOrderEntry_FTaxPrice: not a number (line 1)"


def malform_receivable(row: list[Any], kind: int) -> None:
    """Plant defect ``kind`` (0-2) in a receivable row."""
    if kind == 0:
        row[_R_AMOUNT], row[-1] = "￥12,000.00", "FALLAMOUNTFOR: not a number"
    elif kind == 1:
        row[_R_DATE], row[-1] = "0000-00-00", "FDATE: unparsable date"
    else:
        row[_R_END], row[-1] = "2024-02-30T00:00:00", "FENDDATE_H: unparsable date"


def seller(rng: random.Random) -> tuple[int, str, str]:
    """A random seller (id, number, name) for edits."""
    s = rng.choice(_SELLERS)
    return s[0], s[1], s[2]
