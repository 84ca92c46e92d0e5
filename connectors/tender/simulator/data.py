"""The simulated procurement notices (标讯): projects, their revisions, and every field as parsed values.

A *project* (one 项目编号) is published as a tender notice (公开招标 / 竞争性磋商 / 询价 / …), then maybe
corrected (更正公告), then awarded (中标 / 成交公告, several lots) or terminated (终止公告). Each notice
is one record of the ``notices`` stream; :func:`generate` builds them deterministically from the seed,
so the benchmark can build a million of them without a server, and the simulator serves the first
``records`` by publish time. Every value a tap must parse is kept here already parsed (amounts in 元
as two-decimal strings, times ISO 8601 at +08:00), next to the raw text the page shows, so tests
compare a tap's records with the truth field by field.

Buyers are a mix of public bodies (大学, 人民医院, 教育局 …) and companies from
:mod:`connectors.kit.fakedata` (:func:`buyer_company` — the same names and credit codes a test seeds
into the CRM as accounts); suppliers of awards come from their own company pool (:func:`supplier`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.kit import fakedata

CST = dt.timezone(dt.timedelta(hours=8), "+08:00")
#: the first tender is published at this time (+08:00)
BASE = dt.datetime(2024, 5, 1, 8, 30, tzinfo=CST)
ID_BASE = 8_000_000

#: province -> (zone id, GBK page without a charset declaration)
REGIONS: dict[str, tuple[str, bool]] = {}
for _city in fakedata.CITIES:
    _short = _city.province.removesuffix("省").removesuffix("市")
    REGIONS.setdefault(_short, (_city.division[:2] + "0000", _short in {"山东", "河南", "湖南"}))

#: notice type -> (kind, search ``bidType``, channel folder)
NOTICE_TYPES: dict[str, tuple[str, int, str]] = {
    "公开招标公告": ("tender", 1, "gkzb"),
    "询价公告": ("tender", 2, "qtgg"),
    "竞争性谈判公告": ("tender", 3, "qtgg"),
    "单一来源公告": ("tender", 4, "qtgg"),
    "邀请招标公告": ("tender", 6, "qtgg"),
    "竞争性磋商公告": ("tender", 10, "qtgg"),
    "中标公告": ("result", 7, "zbgg"),
    "成交公告": ("result", 11, "zbgg"),
    "更正公告": ("correction", 8, "gzgg"),
    "终止公告": ("termination", 12, "qtgg"),
}
BID_TYPES: dict[int, str] = {code: name for name, (_, code, _) in NOTICE_TYPES.items()}
TENDER_TYPES = (
    "公开招标公告",
    "公开招标公告",
    "竞争性磋商公告",
    "询价公告",
    "竞争性谈判公告",
    "邀请招标公告",
)
#: search ``pinMu``: 1 goods, 2 engineering, 3 services
PINMU = {1: "货物", 2: "工程", 3: "服务"}

#: (subject, 品目) — the vocabulary titles and bodies are made of; subscriptions pick keywords from it
SUBJECTS: tuple[tuple[str, str], ...] = (
    ("智慧校园信息化平台建设", "服务/信息技术服务/信息系统集成实施服务"),
    ("医疗设备采购", "货物/专用设备/医疗设备"),
    ("办公家具采购", "货物/家具用具/办公家具"),
    ("网络安全等级保护测评服务", "服务/信息技术服务/信息安全服务"),
    ("服务器及存储设备采购", "货物/通用设备/计算机设备/服务器"),
    ("财务管理软件采购", "货物/通用设备/计算机软件/应用软件"),
    ("数据中心机房改造工程", "工程/建筑安装工程/智能化安装工程"),
    ("物业管理服务", "服务/物业管理服务"),
    ("食堂食材配送服务", "服务/餐饮服务"),
    ("视频监控系统升级改造", "工程/建筑安装工程/安防工程"),
    ("实验室仪器设备采购", "货物/专用设备/仪器仪表"),
    ("图书采购", "货物/图书和档案/图书"),
    ("校园绿化养护服务", "服务/环境服务/园林绿化管理服务"),
    ("客户关系管理系统开发", "服务/信息技术服务/软件开发服务"),
    ("云计算资源租赁服务", "服务/信息技术服务/运行维护服务"),
    ("教学用计算机采购", "货物/通用设备/计算机设备/台式计算机"),
    ("道路维修工程", "工程/市政工程/道路工程"),
    ("公务用车采购", "货物/通用设备/车辆/乘用车"),
    ("印刷服务", "服务/印刷和出版服务"),
    ("档案数字化加工服务", "服务/信息技术服务/数据处理服务"),
)
PUBLIC_BODIES = (
    "大学",
    "人民医院",
    "教育局",
    "中学",
    "卫生健康委员会",
    "公安局",
    "财政局",
    "疾病预防控制中心",
)
ITEMS = {
    "货物": (
        ("台式计算机", "联想", "启天M437"),
        ("服务器", "华为", "FusionServer 2288H"),
        ("办公桌", "震旦", "AD-1600"),
    ),
    "工程": (("施工服务", "/", "/"), ("材料及安装", "/", "/")),
    "服务": (("技术服务", "/", "/"), ("运维服务", "/", "年")),
}
ORDINALS = "一二三四五六七八九十"


@dataclass(frozen=True)
class Region:
    """Where a buyer is: province (short name), its zone id, and whether its pages are GBK."""

    province: str
    city: str
    zone_id: str
    gbk: bool


def _region(city: fakedata.City) -> Region:
    province = city.province.removesuffix("省").removesuffix("市")
    zone, gbk = REGIONS[province]
    return Region(province, city.name, zone, gbk)


def buyer_company(index: int, seed: int) -> fakedata.Company:
    """The ``index``-th company that buys through tenders (tests seed these as CRM accounts)."""
    return fakedata.company(index, fakedata.KeyedDraw(seed, index, 11), seed)


def supplier(index: int, seed: int) -> fakedata.Company:
    """The ``index``-th supplier that wins awards (a pool of its own, distinct from the buyers)."""
    return fakedata.company(500_000 + index, fakedata.KeyedDraw(seed, index, 13), seed)


def yuan(value: Decimal) -> str:
    """An amount in 元 as the truth keeps it: two decimals, no grouping."""
    return f"{value.quantize(Decimal('0.01'))}"


def money_text(value: Decimal, d: fakedata.Draw) -> str:
    """How a page writes an amount: 元 with or without grouping and ¥, or 万元 (with up to 6 decimals)."""
    style = d.randrange(5)
    if style == 0:
        return f"￥{value:,.2f}元"
    if style == 1:
        return f"{value:.2f}元"
    if style == 2:
        return f"{int(value)}元" if value == int(value) else f"{value:.2f}元"
    wan = (value / 10_000).normalize()
    text = f"{wan:f}"
    return f"{text}万元" if style == 3 else f"￥{text} 万元（人民币）"


def _amount(d: fakedata.Draw, low: int, high: int) -> Decimal:
    # whole hundreds of 元 so that 万元 renderings stay exact with at most six decimals
    return Decimal(d.randrange(low // 100, high // 100)) * 100


def _iso(t: dt.datetime) -> str:
    return t.astimezone(CST).isoformat(timespec="seconds")


def _project(p: int, seed: int, spacing: int) -> list[dict[str, Any]]:
    """Every notice of project ``p`` (tenders ``spacing`` seconds apart on average), in publication order."""
    d = fakedata.KeyedDraw(seed, p, 3)
    city = d.choice(fakedata.CITIES)
    if d.randrange(10) < 4:  # a company buyer (the CRM may know it)
        company = buyer_company(d.randrange(2000), seed)
        buyer, credit, city = company.name, company.credit_code, company.city
        buyer_address = fakedata.address(d, city)
    else:
        body = d.choice(PUBLIC_BODIES)
        buyer = f"{city.name}市{d.choice(fakedata.TRADE_CHARS)}{d.choice(fakedata.TRADE_CHARS)}{body}"
        if body in {"教育局", "公安局", "财政局", "卫生健康委员会"}:
            buyer = f"{city.name}市{fakedata.CITIES[p % len(fakedata.CITIES)].districts[0]}{body}"
        credit = fakedata.credit_code(p, city.division, seed, prefix="12") if d.randrange(3) == 0 else None
        buyer_address = fakedata.address(d, city)
    region = _region(city)
    subject, category = d.choice(SUBJECTS)
    year = 2024
    project_no = f"{region.zone_id[:2]}{year}-{d.choice('ABCDGJ')}{p:06d}"
    name = f"{buyer}{subject}项目"
    agency_city = d.choice(fakedata.CITIES)
    agency = (
        f"{agency_city.name}{d.choice(fakedata.TRADE_CHARS)}{d.choice(fakedata.TRADE_CHARS)}招标代理有限公司"
    )
    contact = fakedata.person(d)
    budget = _amount(d, 50_000, 20_000_000)
    published = BASE + dt.timedelta(seconds=p * spacing + d.randrange(spacing))
    doc_from = (published + dt.timedelta(days=1)).date()
    doc_to = doc_from + dt.timedelta(days=5)
    bid_open = (published + dt.timedelta(days=20)).replace(hour=9, minute=30, second=0)
    tender_type = d.choice(TENDER_TYPES)
    pinmu = category.split("/")[0]
    common = {
        "project_no": project_no,
        "project_name": name,
        "region": region.province,
        "city": region.city,
        "zone_id": region.zone_id,
        "category": category,
        "buyer": buyer,
        "buyer_credit_code": credit,
        "buyer_address": buyer_address,
        "buyer_phone": fakedata.landline(d, city),
        "agency": agency,
        "agency_address": fakedata.address(d, agency_city),
        "agency_phone": fakedata.landline(d, agency_city),
        "contact_person": contact.name,
        "contact_phone": fakedata.mobile(d),
        "_gbk": region.gbk,
        "_pinmu": pinmu,
    }
    empty = {
        "budget": None,
        "budget_raw": None,
        "doc_time": None,
        "bid_open_time": None,
        "bid_open_place": None,
        "original_title": None,
        "first_notice_date": None,
        "correction_date": None,
        "correction_items": None,
        "termination_reason": None,
        "lots": [],
        "items": [],
    }
    tender_title = f"{name}{tender_type}"
    notices: list[dict[str, Any]] = []
    tender = {
        **common,
        **empty,
        "id": ID_BASE + p * 4,
        "notice_type": tender_type,
        "title": tender_title,
        "publish_time": _iso(published),
        "budget": yuan(budget),
        "budget_raw": money_text(budget, d),
        "doc_time": f"{doc_from:%Y年%m月%d日} 至 {doc_to:%Y年%m月%d日}，每天上午09:00至11:30，下午13:30至17:00",
        "bid_open_time": _iso(bid_open),
        "bid_open_place": f"{agency_city.name}市公共资源交易中心{d.randrange(1, 9)}楼开标室",
        "summary": f"{buyer}就{subject}项目进行{tender_type.removesuffix('公告')}，欢迎合格供应商参加。",
    }
    notices.append(tender)
    t = published
    roll = d.randrange(100)
    if roll < 30:  # a correction, then usually an award
        t = t + dt.timedelta(days=1, seconds=d.randrange(86_400))
        new_open = bid_open + dt.timedelta(days=7)
        notices.append(
            {
                **common,
                **empty,
                "id": ID_BASE + p * 4 + 1,
                "notice_type": "更正公告",
                "title": f"{name}更正公告",
                "publish_time": _iso(t),
                "original_title": tender_title,
                "first_notice_date": published.date().isoformat(),
                "correction_date": t.date().isoformat(),
                "correction_items": f"开标时间更正为{new_open:%Y年%m月%d日 %H:%M}",
                "summary": f"{name}的开标时间更正。",
            }
        )
    if roll < 85:  # an award with one to three lots
        t = t + dt.timedelta(days=4, seconds=d.randrange(6 * 86_400))
        result_type = "中标公告" if tender_type == "公开招标公告" else "成交公告"
        lots, items = [], []
        for n in range(1, d.randrange(1, 4) + 1):
            win = supplier(d.randrange(300), seed)
            amount = _amount(d, 20_000, int(budget) + 200)
            lots.append(
                {
                    "lot_no": n,
                    "supplier": win.name,
                    "supplier_address": fakedata.address(d, win.city),
                    "amount": yuan(amount),
                    "amount_raw": money_text(amount, d),
                }
            )
            name_, brand, model = d.choice(ITEMS[pinmu])
            qty = d.randrange(1, 200)
            price = Decimal(d.randrange(100, 1_000_000)) / 100
            items.append(
                {
                    "lot_no": n,
                    "name": name_,
                    "brand": brand,
                    "model": model,
                    "quantity": str(qty),
                    "unit_price": yuan(price),
                    "unit_price_raw": f"{price:.2f}元",
                }
            )
        notices.append(
            {
                **common,
                **empty,
                "id": ID_BASE + p * 4 + 2,
                "notice_type": result_type,
                "title": f"{name}{result_type}",
                "publish_time": _iso(t),
                "lots": lots,
                "items": items,
                "summary": f"{name}评审结束，现将{result_type.removesuffix('公告')}结果公告如下。",
            }
        )
    elif roll >= 92:  # terminated
        t = t + dt.timedelta(days=4, seconds=d.randrange(4 * 86_400))
        notices.append(
            {
                **common,
                **empty,
                "id": ID_BASE + p * 4 + 3,
                "notice_type": "终止公告",
                "title": f"{name}终止公告",
                "publish_time": _iso(t),
                "termination_reason": d.choice(
                    ("因采购需求发生变化，项目终止。", "有效供应商不足三家，项目废标。")
                ),
                "summary": f"{name}终止。",
            }
        )
    for notice in notices:
        notice["content"] = body_text(notice)
    return notices


def content_blocks(n: dict[str, Any]) -> list[str | list[list[str]]]:
    """The 正文 of a notice: paragraphs (str) and tables (rows of cells), in page order.

    The detail page renders them as ``<p>`` and ``<table>`` in ``div.vF_detail_content``; the vendor
    feed carries the same HTML in ``content``; :func:`body_text` is their plain text.
    """
    kind = NOTICE_TYPES[n["notice_type"]][0]
    out: list[str | list[list[str]]] = [
        f"一、项目编号：{n['project_no']}",
        f"二、项目名称：{n['project_name']}",
    ]
    if kind == "tender":
        out += [
            f"预算金额：{n['budget_raw']}",
            f"采购需求：{n['project_name'].removeprefix(n['buyer'])}，品目：{n['category']}",
            "三、获取招标文件",
            f"时间：{n['doc_time']}",
            f"四、开标时间：{_local(n['bid_open_time'])}",
            f"开标地点：{n['bid_open_place']}",
        ]
    elif kind == "correction":
        out += [
            f"原公告名称：{n['original_title']}",
            f"首次公告日期：{n['first_notice_date']}",
            "三、更正信息",
            f"更正事项：{n['correction_items']}",
            f"更正日期：{n['correction_date']}",
        ]
    elif kind == "result":
        out.append("三、中标（成交）信息")
        for lot in n["lots"]:
            out.append(f"包号：{lot['lot_no']}")
            out.append(
                f"供应商名称：{lot['supplier']}；供应商地址：{lot['supplier_address']}；"
                f"中标（成交）金额：{lot['amount_raw']}"
            )
        out.append("四、主要标的信息")
        if n["region"] == "山东":  # Shandong flattens the table into text, one item per line
            for it in n["items"]:
                out.append(
                    f"包号{it['lot_no']} 名称：{it['name']} 品牌：{it['brand']} 规格型号：{it['model']} "
                    f"数量：{it['quantity']} 单价：{it['unit_price_raw']}"
                )
        else:
            rows = [["包号", "名称", "品牌", "规格型号", "数量", "单价"]]
            rows += [
                [
                    str(it["lot_no"]),
                    it["name"],
                    it["brand"],
                    it["model"],
                    it["quantity"],
                    it["unit_price_raw"],
                ]
                for it in n["items"]
            ]
            out.append(rows)
    else:
        out += ["三、项目终止的原因", f"终止原因：{n['termination_reason']}"]
    out += ["五、联系方式", f"采购人：{n['buyer']}", f"代理机构：{n['agency']}"]
    return out


def body_text(n: dict[str, Any]) -> str:
    """The plain text of a notice's 正文: one line per paragraph and per table row (cells joined by
    `` | ``), what a tap extracts and full-text search indexes."""
    lines: list[str] = []
    for block in content_blocks(n):
        if isinstance(block, str):
            lines.append(block)
        else:
            lines.extend(" | ".join(row) for row in block)
    return "\n".join(lines)


def _local(iso: str | None) -> str:
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone(CST).strftime("%Y年%m月%d日 %H:%M")


def spacing_for(records: int) -> int:
    """Seconds between tenders so that ``records`` notices span about three weeks (awards appear)."""
    return max(30, 21 * 86_400 * 2 // max(1, records))


def generate(
    count: int, seed: int, spacing: int | None = None, first_project: int = 0
) -> Iterator[dict[str, Any]]:
    """Notices project by project (not in publish order): at least ``count`` of them."""
    made, p = 0, first_project
    gap = spacing or spacing_for(count)
    while made < count:
        for notice in _project(p, seed, gap):
            made += 1
            yield notice
        p += 1


def public(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice as the tap emits it (internal ``_`` keys dropped)."""
    return {k: v for k, v in notice.items() if not k.startswith("_")}


def detail_path(notice: dict[str, Any]) -> str:
    """The detail page's path, national style: ``/cggg/dfgg/gkzb/202405/t20240506_8000004.htm``."""
    published = dt.datetime.fromisoformat(notice["publish_time"])
    channel = NOTICE_TYPES[notice["notice_type"]][2]
    return f"/cggg/dfgg/{channel}/{published:%Y%m}/t{published:%Y%m%d}_{notice['id']}.htm"


class NoticeStore:
    """The notices the simulator serves: the first ``records`` by publish time, plus later ones."""

    def __init__(self, records: int, seed: int) -> None:
        self.lock = threading.Lock()
        self.seed = seed
        # Enough projects that the first ``records`` notices by time are complete histories' prefixes.
        pool = sorted(
            generate(records * 3, seed, spacing_for(records)), key=lambda n: (n["publish_time"], n["id"])
        )
        self.notices: list[dict[str, Any]] = pool[:records]
        self._pending = pool[records:]  # published by ``publish`` (the future, in order)
        self.by_id = {n["id"]: n for n in self.notices}

    def publish(self, count: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Publish the next ``count`` notices now (their publish time moves to now or later)."""
        with self.lock:
            newest = dt.datetime.fromisoformat(self.notices[-1]["publish_time"]) if self.notices else BASE
            stamp = max(
                (now or dt.datetime.now(CST)).replace(microsecond=0), newest + dt.timedelta(seconds=1)
            )
            out = []
            for _ in range(count):
                if not self._pending:
                    break
                notice = self._pending.pop(0)
                notice["publish_time"] = _iso(stamp)
                notice["content"] = body_text(notice)
                self.notices.append(notice)
                self.by_id[notice["id"]] = notice
                out.append(notice)
            # Notices published in one second are served in id order, like every other tie.
            self.notices.sort(key=lambda n: (n["publish_time"], n["id"]))
            return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The published notices in publish order (a copy of the list, safe to iterate)."""
        with self.lock:
            return list(self.notices)
