"""HTML the simulated procurement site serves, in the shapes of the national site (中国政府采购网).

* the search result page (``/bxsearch``): the total in the result header (``p[1]/span[2]``), then
  ``ul.vT-srch-result-list-bid`` items with the title link, a ``<p>`` summary and the span line
  ``2024.05.06 10:21:33 | 采购人：… | 代理机构：… | 公开招标公告 | 北京 | 货物/…``;
* channel list pages (``/cggg/dfgg/{gkzb|zbgg|gzgg|qtgg}/index.htm``, ``index_1.htm`` …);
* detail pages in the national templates: the 公告概要 table (``td.title`` + value cell) and the
  正文 (``div.vF_detail_content``), with the 中标（成交）信息 lots and the 主要标的信息 table for awards;
  Shandong's award pages flatten that table into plain text;
* the anti-bot page (HTTP 200, a verification form and no results).
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from connectors.tender.simulator.data import CST, NOTICE_TYPES, content_blocks, detail_path

esc = html.escape


def _local(iso: str | None, fmt: str = "%Y年%m月%d日 %H:%M") -> str:
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone(CST).strftime(fmt)


def _page(title: str, body: str) -> str:
    # No <meta charset>: provincial GBK pages come without one, and the national pages are served
    # with ``charset=utf-8`` in the header only.
    return (
        f"<!DOCTYPE html>\n<html><head><title>{esc(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )


def search_page(base: str, kw: str, total: int, page_index: int, items: list[dict[str, Any]]) -> str:
    """The search result page: header with the total, then the result list."""
    lis = "\n".join(_search_item(base, n) for n in items)
    pages = max(1, -(-total // 20))
    body = (
        '<div class="vT_z">\n'
        f'<p><span>搜索条件：{esc(kw)}</span> 共找到 <span style="color:#c00000">{total}</span> 条内容</p>\n'
        f'<ul class="vT-srch-result-list-bid">\n{lis}\n</ul>\n'
        f'<p class="pager">第 {page_index} 页 / 共 {pages} 页</p>\n</div>'
    )
    return _page("中国政府采购网-搜索", body)


def _search_item(base: str, n: dict[str, Any]) -> str:
    published = _local(n["publish_time"], "%Y.%m.%d %H:%M:%S")
    return (
        f'<li><a href="{base}{detail_path(n)}" target="_blank">{esc(n["title"])}</a>\n'
        f"<p>{esc(n['summary'])}</p>\n"
        f"<span>{published} | 采购人：{esc(n['buyer'])} | 代理机构：{esc(n['agency'])} | "
        f'<strong>{esc(n["notice_type"])}</strong> | <a href="javascript:void(0)">{esc(n["region"])}</a> | '
        f"<strong>{esc(n['category'])}</strong></span></li>"
    )


def channel_page(base: str, channel: str, page: int, pages: int, items: list[dict[str, Any]]) -> str:
    """A channel list page (newest first, 20 per page)."""
    lis = "\n".join(
        f'<li><a href="{base}{detail_path(n)}" title="{esc(n["title"])}">{esc(n["title"])}</a>'
        f"<em>{_local(n['publish_time'], '%Y-%m-%d %H:%M')}</em><em>{esc(n['region'])}</em>"
        f"<em>{esc(n['buyer'])}</em></li>"
        for n in items
    )
    body = (
        f'<div class="vF_deail_maincontent"><ul class="c_list_bid">\n{lis}\n</ul>\n'
        f'<div class="pager" data-page="{page}" data-pages="{pages}"></div></div>'
    )
    return _page(f"中国政府采购网-{channel}", body)


def antibot_page() -> str:
    """What the site serves instead of results when a client asks too often."""
    body = (
        '<div id="verify"><h3>安全验证</h3><p>您的访问过于频繁，请完成验证后继续访问。</p>'
        '<form action="/_verify" method="post"><input name="captcha"/></form></div>'
    )
    return _page("安全验证", body)


def _row(*cells: tuple[str, str | None]) -> str:
    tds = "".join(f'<td class="title">{esc(k)}</td><td>{esc(v or "")}</td>' for k, v in cells)
    return f"<tr>{tds}</tr>"


def detail_page(n: dict[str, Any]) -> str:
    """A detail page in the national template for the notice's kind."""
    kind = NOTICE_TYPES[n["notice_type"]][0]
    rows = [
        _row(("采购项目名称", n["project_name"])),
        _row(("品目", n["category"])),
        _row(("采购单位", n["buyer"]), ("行政区域", f"{n['region']}-{n['city']}")),
        _row(("公告时间", _local(n["publish_time"], "%Y年%m月%d日 %H:%M:%S"))),
    ]
    if kind == "tender":
        rows += [
            _row(("获取招标文件时间", n["doc_time"])),
            _row(("开标时间", _local(n["bid_open_time"]))),
            _row(("开标地点", n["bid_open_place"])),
            _row(("预算金额", n["budget_raw"])),
        ]
    rows += [
        _row(("项目联系人", n["contact_person"]), ("项目联系电话", n["contact_phone"])),
        _row(("采购单位地址", n["buyer_address"]), ("采购单位联系方式", n["buyer_phone"])),
        _row(("代理机构名称", n["agency"]), ("代理机构地址", n["agency_address"])),
        _row(("代理机构联系方式", n["agency_phone"])),
    ]
    if n["buyer_credit_code"]:
        rows.append(_row(("统一社会信用代码", n["buyer_credit_code"])))
    table = '<div class="table"><table>\n' + "\n".join(rows) + "\n</table></div>"
    header = (
        f'<div class="vF_detail_header"><h2 class="tc">{esc(n["title"])}</h2>'
        f'<p class="tc"><span id="pubTime">{_local(n["publish_time"], "%Y年%m月%d日 %H:%M")}</span>'
        f"<span>来源：{esc(n['region'])}政府采购网</span></p></div>"
    )
    return _page(n["title"], header + "\n" + table + "\n" + content_html(n))


def content_html(n: dict[str, Any]) -> str:
    """The 正文 (``div.vF_detail_content``): the same HTML the vendor feed carries in ``content``."""
    parts = []
    for block in content_blocks(n):
        if isinstance(block, str):
            parts.append(f"<p>{esc(block)}</p>")
        else:
            head, *rows = block
            trs = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>"
            trs += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append(f'<table class="items">{trs}</table>')
    return '<div class="vF_detail_content">\n' + "\n".join(parts) + "\n</div>"
