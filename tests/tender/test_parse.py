"""The page parser on the simulator's pages, and on the quirks the real sites have."""

from __future__ import annotations

import httpx
import pytest

from connectors.tender import parse
from connectors.tender.simulator import TenderSimulator
from connectors.tender.simulator.data import public


@pytest.fixture(scope="module")
def sim():
    with TenderSimulator(records=400, seed=21) as s:
        yield s


def test_every_detail_page_parses_to_the_truth_field_by_field(sim: TenderSimulator) -> None:
    truth = {n["id"]: n for n in sim.truth("notices")}
    gbk = 0
    with httpx.Client(base_url=sim.base_url) as http:
        for notice in truth.values():
            response = http.get(notice["url"].removeprefix(sim.base_url))
            if "charset" not in response.headers["content-type"]:
                gbk += 1
                with pytest.raises(UnicodeDecodeError):
                    response.content.decode("utf-8")
            fields = parse.detail_page(parse.decode(response.content, response.headers["content-type"]))
            for key, value in fields.items():
                assert value == notice[key], (notice["id"], key)
    assert gbk > 20, "no GBK province among the notices"


def test_the_search_page_lists_twenty_per_page_newest_first_with_the_total(sim: TenderSimulator) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        page = http.get(
            "/bxsearch", params={"page_index": 2, "start_time": "2024:05:01", "end_time": "2030:01:01"}
        )
        total, items = parse.search_page(page.text)
        assert total == 400 and len(items) == 20
        truth = list(reversed(sim.truth("notices")))[20:40]
        assert [i["id"] for i in items] == [n["id"] for n in truth]
        for item, notice in zip(items, truth, strict=True):
            for key in (
                "title",
                "summary",
                "publish_time",
                "buyer",
                "agency",
                "notice_type",
                "region",
                "category",
            ):
                assert item[key] == notice[key], key
        narrow = http.get("/bxsearch", params={"kw": "软件", "zoneId": "440000", "bidType": 7})
        total, items = parse.search_page(narrow.text)
        expect = [n for n in sim.truth("notices") if n["zone_id"] == "440000" and n["notice_type"] == "中标公告"
                  and ("软件" in n["title"] or "软件" in n["content"])]  # fmt: skip
        assert total == len(expect)
        bad = http.get("/bxsearch", params={"start_time": "2024-05-01"})
        assert bad.status_code == 400 and "2024:05:01" in bad.text


def test_amounts_times_and_kinds() -> None:
    assert parse.amount("￥123.45万元（人民币）") == "1234500.00"
    assert parse.amount("¥1,234,500.00元") == "1234500.00"
    assert parse.amount("单价：12.78元") == "12.78"
    assert parse.amount("0.0125 万元") == "125.00"
    assert parse.amount("详见招标文件") is None
    assert parse.cn_time("2024.05.06 10:21:33") == "2024-05-06T10:21:33+08:00"
    assert parse.cn_time("2024年05月06日 09:30") == "2024-05-06T09:30:00+08:00"
    assert parse.cn_date("2024年5月6日") == "2024-05-06"
    assert [parse.notice_kind(t) for t in ("公开招标公告", "更正公告", "成交公告", "终止公告", "合同公告")] == [
        "tender", "correction", "result", "termination", "other",
    ]  # fmt: skip


def test_decoding_is_strict_utf8_then_gb18030_and_bounded() -> None:
    text = "采购人：山东省济南市某某局"
    assert parse.decode(text.encode("gbk")) == text
    assert parse.decode(text.encode()) == text
    assert parse.decode(text.encode("gbk"), "text/html; charset=utf-8") == text  # a wrong header
    with pytest.raises(parse.PageError, match="limit"):
        parse.decode(b"x" * (parse.MAX_PAGE_BYTES + 1))


def test_the_antibot_page_is_recognised_before_parsing(sim: TenderSimulator) -> None:
    sim.set_faults("throttle=1")
    try:
        page = httpx.get(f"{sim.base_url}/bxsearch")
    finally:
        sim.set_faults(None)
    assert page.status_code == 200 and parse.is_antibot(page.text)
    with pytest.raises(parse.PageError):
        parse.search_page(page.text)


def test_broken_and_hostile_pages_fail_with_a_page_error_quickly() -> None:
    for page in ("", "<html><body>nothing</body></html>", "<div class='vT_z'><p><span>x</span></p></div>"):
        with pytest.raises(parse.PageError):
            parse.search_page(page)
    deep = "<div>" * 200_000 + "x"
    with pytest.raises(parse.PageError):
        parse.detail_page(deep)
    line = "包号：1" + "：" * 100_000
    parse.content_html(f"<div class='vF_detail_content'><p>{line}</p></div>")


def test_vendor_records_equal_the_html_records(sim: TenderSimulator) -> None:
    from connectors.tender.tap import TapTender

    tap = TapTender(config=sim.vendor_config(lookback_seconds=0), parse_env_config=False)
    got = list(tap.streams["notices"].get_records(None))
    truth = {n["id"]: n for n in sim.truth("notices")}
    assert sorted(r["id"] for r in got) == sorted(truth)
    for record in got:
        for key, value in public(truth[record["id"]]).items():
            if key != "_malformed":
                assert record[key] == value, (record["id"], key)


def test_vendor_incremental_reads_every_notice_published_in_one_second() -> None:
    from connectors.tender.tap import TapTender

    with TenderSimulator(records=60, seed=4) as sim:
        cfg = sim.vendor_config(lookback_seconds=0, page_size=7)
        tap = TapTender(config=cfg, parse_env_config=False)
        stream = tap.streams["notices"]
        first = list(stream.get_records(None))
        published = sim.publish(25)["ids"]  # one publish second for all 25
        stream.start_cursor_from(stream.cursor_for_record(first[-1]))
        again = [r["id"] for r in stream.get_records(None)]
        assert sorted(again) == sorted(published)
