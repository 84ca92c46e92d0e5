"""Provinces of mainland China and their zone ids (行政区划代码, the search's ``zoneId``)."""

from __future__ import annotations

PROVINCES: dict[str, str] = {
    "北京": "110000", "天津": "120000", "河北": "130000", "山西": "140000", "内蒙古": "150000",
    "辽宁": "210000", "吉林": "220000", "黑龙江": "230000", "上海": "310000", "江苏": "320000",
    "浙江": "330000", "安徽": "340000", "福建": "350000", "江西": "360000", "山东": "370000",
    "河南": "410000", "湖北": "420000", "湖南": "430000", "广东": "440000", "广西": "450000",
    "海南": "460000", "重庆": "500000", "四川": "510000", "贵州": "520000", "云南": "530000",
    "西藏": "540000", "陕西": "610000", "甘肃": "620000", "青海": "630000", "宁夏": "640000",
    "新疆": "650000", "台湾": "710000", "香港": "810000", "澳门": "820000",
}  # fmt: skip
_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "特别行政区", "省", "市")


def province(name: str | None) -> str | None:
    """A province's short name from any spelling (``广东省`` → ``广东``); None when unknown."""
    if not name:
        return None
    text = name.strip()
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and text.removesuffix(suffix) in PROVINCES:
            return text.removesuffix(suffix)
    return text if text in PROVINCES else None


def zone_of(name: str | None) -> str | None:
    """The zone id of a province (any spelling), or None."""
    short = province(name)
    return PROVINCES.get(short) if short else None
