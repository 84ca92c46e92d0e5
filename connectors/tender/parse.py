"""Parsing procurement pages (search results, detail pages, the vendor feed's ``content``) into notices.

Pages are untrusted: they are size-bounded before they get here (:data:`MAX_PAGE_BYTES`), decoded
strictly (declared charset, else UTF-8, else GB18030 — GBK provinces send no charset at all), tested
for the anti-bot page with a substring check before any parsing, and parsed with ``selectolax``
(lexbor: linear time, no recursion limits to trip); the regular expressions here are anchored and
free of nested quantifiers, and run on single lines.

Values come out normalised: amounts as two-decimal 元 strings (万元 × 10 000) with the raw text kept
next to them, times as ISO 8601 at +08:00.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from connectors.tender.regions import zone_of

MAX_PAGE_BYTES = 2 * 1024 * 1024
CST = dt.timezone(dt.timedelta(hours=8))
_ANTIBOT_MARKERS = ("安全验证", "访问过于频繁", 'id="verify"')


class PageError(ValueError):
    """A page that is not what it should be (too big, undecodable, missing its parts)."""


# -- bytes -> text ----------------------------------------------------------------------------------
def decode(raw: bytes, content_type: str | None = None) -> str:
    """The page's text: the declared charset if it decodes strictly, else UTF-8, else GB18030."""
    if len(raw) > MAX_PAGE_BYTES:
        raise PageError(f"page of {len(raw)} bytes is over the {MAX_PAGE_BYTES}-byte limit")
    declared = None
    if content_type and "charset=" in content_type.lower():
        declared = content_type.lower().split("charset=", 1)[1].split(";")[0].strip().strip('"') or None
    for encoding in (declared, "utf-8", "gb18030"):
        if not encoding:
            continue
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    raise PageError("page is neither UTF-8 nor GB18030")


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})")
#: elements that never nest (void) or close themselves (optional end tags): not counted as depth
_FLAT = frozenset(
    (
        *("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source"),
        *("track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option", "optgroup", "thead"),
        *("tbody", "tfoot", "colgroup", "rb", "rt", "rp", "html", "head", "body"),
    )
)
MAX_DEPTH = 512


def guard(text: str) -> None:
    """Refuse what would make the HTML parser slow: tree construction is quadratic in nesting depth
    (200 000 nested ``<div>`` take minutes), so the depth is measured first, in one linear scan."""
    if len(text) > MAX_PAGE_BYTES:
        raise PageError(f"page of {len(text)} characters is over the limit")
    depth = 0
    for m in _TAG.finditer(text):
        name = m.group(2).lower()
        if name in _FLAT:
            continue
        depth += -1 if m.group(1) else 1
        if depth > MAX_DEPTH:
            raise PageError(f"page nests elements deeper than {MAX_DEPTH}")
        depth = max(depth, 0)


def is_antibot(text: str) -> bool:
    """Whether this is the site's anti-bot page rather than content (a cheap check, before parsing)."""
    head = text[:4096]
    return any(marker in head for marker in _ANTIBOT_MARKERS)


# -- values -----------------------------------------------------------------------------------------
_AMOUNT = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*(万元|万|元)?")


def amount(text: str | None) -> str | None:
    """``"￥123.45万元（人民币）"`` → ``"1234500.00"`` (元, two decimals); None when there is no number."""
    if not text:
        return None
    m = _AMOUNT.search(text[:200])
    if not m:
        return None
    try:
        value = Decimal(m.group(1).replace(",", ""))
    except InvalidOperation:
        return None
    if m.group(2) in ("万元", "万"):
        value *= 10_000
    return f"{value.quantize(Decimal('0.01'))}"


_TIME = re.compile(
    r"(\d{4})\s*[年.\-/]\s*(\d{1,2})\s*[月.\-/]\s*(\d{1,2})\s*日?(?:\s*(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def cn_time(text: str | None) -> str | None:
    """``2024.05.06 10:21:33`` / ``2024年05月06日 10:21`` (local +08:00) → ISO 8601 with the offset."""
    if not text:
        return None
    m = _TIME.search(text[:100])
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=CST).isoformat(timespec="seconds")


def cn_date(text: str | None) -> str | None:
    """The date part of :func:`cn_time` (``2024-05-06``)."""
    value = cn_time(text)
    return value[:10] if value else None


def notice_kind(notice_type: str) -> str:
    """tender | correction | result | termination | other, from the notice type's name."""
    if "更正" in notice_type:
        return "correction"
    if "中标" in notice_type or "成交" in notice_type or "结果" in notice_type:
        return "result"
    if "终止" in notice_type or "废标" in notice_type:
        return "termination"
    if any(w in notice_type for w in ("招标", "磋商", "谈判", "询价", "单一来源", "资格预审", "采购公告")):
        return "tender"
    return "other"


def _text(node: LexborNode | None) -> str:
    return "" if node is None else " ".join((node.text(separator=" ") or "").split())


# -- search result page -----------------------------------------------------------------------------
def search_page(text: str) -> tuple[int, list[dict[str, Any]]]:
    """(the total in the result header, the list items) of a search result page."""
    guard(text)
    tree = LexborHTMLParser(text)
    header = tree.css_first("div.vT_z > p")
    spans = header.css("span") if header is not None else []
    if len(spans) < 2:
        raise PageError("search page without its result header")
    try:
        total = int(_text(spans[1]).replace(",", ""))
    except ValueError:
        raise PageError("search page: the total is not a number") from None
    items = []
    for li in tree.css("ul.vT-srch-result-list-bid > li"):
        link = li.css_first("a")
        span = li.css_first("span")
        if link is None or span is None:
            raise PageError("search result item without its link or span line")
        items.append(
            list_item(link.attributes.get("href") or "", _text(link), _text(li.css_first("p")), _text(span))
        )
    return total, items


def list_item(url: str, title: str, summary: str, span: str) -> dict[str, Any]:
    """One result: the span line ``time | 采购人：… | 代理机构：… | type | region | category`` split."""
    parts = [p.strip() for p in span.split("|")]
    if len(parts) < 6:
        raise PageError(f"search result span has {len(parts)} parts, expected 6")
    return {
        "id": notice_id(url),
        "url": url,
        "title": title,
        "summary": summary,
        "publish_time": cn_time(parts[0]),
        "buyer": parts[1].removeprefix("采购人：").strip(),
        "agency": parts[2].removeprefix("代理机构：").strip(),
        "notice_type": parts[3],
        "region": parts[4],
        "category": parts[5],
    }


_ID = re.compile(r"_(\d{1,12})\.htm$")


def notice_id(url: str) -> int:
    """The numeric id at the end of a detail URL (``…/t20240506_8583080.htm`` → 8583080)."""
    m = _ID.search(url[-64:])
    if not m:
        raise PageError(f"not a detail URL: {url[:120]}")
    return int(m.group(1))


def channel_page(text: str) -> tuple[int, int, list[dict[str, str]]]:
    """(page, pages, [{url, title, time}]) of a channel list page."""
    guard(text)
    tree = LexborHTMLParser(text)
    pager = tree.css_first("div.pager")
    if pager is None:
        raise PageError("channel page without its pager")
    out = []
    for li in tree.css("ul.c_list_bid > li"):
        link, ems = li.css_first("a"), li.css("em")
        if link is None or not ems:
            raise PageError("channel item without its link or time")
        out.append(
            {"url": link.attributes.get("href") or "", "title": _text(link), "time": cn_time(_text(ems[0]))}
        )
    return int(pager.attributes.get("data-page") or 0), int(pager.attributes.get("data-pages") or 1), out


# -- detail page ------------------------------------------------------------------------------------
_TABLE_FIELDS = {
    "采购项目名称": "project_name",
    "品目": "category",
    "采购单位": "buyer",
    "行政区域": "region",
    "公告时间": "publish_time",
    "获取招标文件时间": "doc_time",
    "开标时间": "bid_open_time",
    "开标地点": "bid_open_place",
    "预算金额": "budget_raw",
    "项目联系人": "contact_person",
    "项目联系电话": "contact_phone",
    "采购单位地址": "buyer_address",
    "采购单位联系方式": "buyer_phone",
    "代理机构名称": "agency",
    "代理机构地址": "agency_address",
    "代理机构联系方式": "agency_phone",
    "统一社会信用代码": "buyer_credit_code",
}


def detail_page(text: str) -> dict[str, Any]:
    """The fields of a detail page: the 公告概要 table, the title, and the parsed 正文."""
    guard(text)
    tree = LexborHTMLParser(text)
    title = tree.css_first("div.vF_detail_header h2")
    content = tree.css_first("div.vF_detail_content")
    if title is None or content is None:
        raise PageError("detail page without its title or 正文")
    raw: dict[str, str] = {}
    for cell in tree.css("div.table td.title"):
        value = cell.next
        while value is not None and value.tag != "td":
            value = value.next
        label = _text(cell)
        if label in _TABLE_FIELDS and value is not None:
            raw[_TABLE_FIELDS[label]] = _text(value)
    region, _, city = raw.get("region", "").partition("-")
    fields: dict[str, Any] = {
        "title": _text(title),
        "project_name": raw.get("project_name") or None,
        "category": raw.get("category") or None,
        "buyer": raw.get("buyer") or None,
        "region": region or None,
        "city": city or None,
        "zone_id": zone_of(region),
        "publish_time": cn_time(raw.get("publish_time")),
        "doc_time": raw.get("doc_time") or None,
        "bid_open_time": cn_time(raw.get("bid_open_time")),
        "bid_open_place": raw.get("bid_open_place") or None,
        "budget_raw": raw.get("budget_raw") or None,
        "budget": amount(raw.get("budget_raw")),
        "contact_person": raw.get("contact_person") or None,
        "contact_phone": raw.get("contact_phone") or None,
        "buyer_address": raw.get("buyer_address") or None,
        "buyer_phone": raw.get("buyer_phone") or None,
        "agency": raw.get("agency") or None,
        "agency_address": raw.get("agency_address") or None,
        "agency_phone": raw.get("agency_phone") or None,
        "buyer_credit_code": raw.get("buyer_credit_code") or None,
    }
    fields.update(content_fields(content))
    return fields


def content_html(text: str) -> dict[str, Any]:
    """:func:`content_fields` of a 正文 given as HTML (the vendor feed's ``content``)."""
    guard(text)
    tree = LexborHTMLParser(text)
    node = tree.css_first("div.vF_detail_content") or tree.body
    if node is None:
        raise PageError("content without a body")
    return content_fields(node)


_LOT = re.compile(r"^包号[：:]\s*(\d+)$")
_FLAT_ITEM = re.compile(r"^包号(\d+) 名称：(.*?) 品牌：(.*?) 规格型号：(.*?) 数量：(\S+) 单价：(\S+)$")


def content_fields(node: LexborNode) -> dict[str, Any]:
    """The 正文's text (one line per paragraph or table row) and what it says: 项目编号, correction
    details, award lots and 主要标的信息 items (as a table, or flattened into text as in Shandong),
    the termination reason."""
    lines: list[str] = []
    tables: list[list[list[str]]] = []
    for child in node.iter():
        if child.tag == "table":
            rows = [[_text(c) for c in tr.css("th, td")] for tr in child.css("tr")]
            tables.append(rows)
            lines.extend(" | ".join(r) for r in rows)
        elif child.tag in ("p", "div"):
            line = _text(child)
            if line:
                lines.append(line)
    out: dict[str, Any] = {
        "project_no": None,
        "original_title": None,
        "first_notice_date": None,
        "correction_date": None,
        "correction_items": None,
        "termination_reason": None,
        "lots": [],
        "items": [],
        "content": "\n".join(lines),
    }
    lot: dict[str, Any] | None = None
    for line in lines:
        key, sep, value = line.partition("：")
        key = key.lstrip("一二三四五六七八九十、 ")
        if sep and key == "项目编号" and out["project_no"] is None:
            out["project_no"] = value.strip()
        elif sep and key == "原公告名称":
            out["original_title"] = value.strip()
        elif sep and key == "首次公告日期":
            out["first_notice_date"] = cn_date(value) or value.strip()
        elif sep and key == "更正日期":
            out["correction_date"] = cn_date(value) or value.strip()
        elif sep and key == "更正事项":
            out["correction_items"] = value.strip()
        elif sep and key == "终止原因":
            out["termination_reason"] = value.strip()
        elif m := _LOT.match(line):
            lot = {
                "lot_no": int(m.group(1)),
                "supplier": None,
                "supplier_address": None,
                "amount": None,
                "amount_raw": None,
            }
            out["lots"].append(lot)
        elif line.startswith("供应商名称："):
            if lot is None:  # a single award without 包号
                lot = {
                    "lot_no": 1,
                    "supplier": None,
                    "supplier_address": None,
                    "amount": None,
                    "amount_raw": None,
                }
                out["lots"].append(lot)
            for part in line.split("；"):
                k, _, v = part.partition("：")
                if k == "供应商名称":
                    lot["supplier"] = v.strip()
                elif k == "供应商地址":
                    lot["supplier_address"] = v.strip()
                elif k.startswith("中标") or k.startswith("成交"):
                    lot["amount_raw"] = v.strip()
                    lot["amount"] = amount(v)
        elif m := _FLAT_ITEM.match(line):
            out["items"].append(_item(m.group(1), *m.groups()[1:]))
    for rows in tables:
        if rows and rows[0][:2] == ["包号", "名称"]:
            out["items"].extend(_item(*row[:6]) for row in rows[1:] if len(row) >= 6)
    return out


def _item(lot: str, name: str, brand: str, model: str, qty: str, price: str) -> dict[str, Any]:
    return {
        "lot_no": int(lot) if lot.isdigit() else None,
        "name": name,
        "brand": brand,
        "model": model,
        "quantity": qty,
        "unit_price": amount(price),
        "unit_price_raw": price,
    }
