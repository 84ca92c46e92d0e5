"""Value profiles: what the sample values of a field look like.

Each sample is classified into a *value kind* (mobile, landline, email, USCC with a valid check digit,
date and its format, epoch seconds / milliseconds, amount, 万元 amount, code, id, person or company
name, address, ...).  A field's profile is the distribution of kinds plus a few statistics, the
normalised value set (for overlap when both sides have data) and character bigrams (for "looks alike"
when the entities differ).  Kinds use the vocabulary of the glossary's value kinds so that a target
without samples can still be compared through the kinds its name implies.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stdnum.cn.uscc import is_valid as is_valid_uscc

from mappings.suggest.text import cjk_ratio, fold

KINDS = (
    "bool",
    "email",
    "url",
    "mobile",
    "phone",
    "landline",
    "uscc",
    "taxno",
    "bank_account",
    "zip",
    "epoch_s",
    "epoch_ms",
    "date",
    "datetime",
    "money",
    "amount_wan",
    "integer",
    "number",
    "percent",
    "uuid",
    "hex_id",
    "ext_id",
    "token",
    "code",
    "currency",
    "country",
    "province",
    "city",
    "district",
    "region",
    "address",
    "company_name",
    "company_short",
    "bank_name",
    "person_name",
    "zh_text",
    "en_text",
    "text",
    "version",
    "ip",
    "coord",
    "enum",
    "path",
    "ref",
)
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_URL = re.compile(r"^(https?://|www\.)\S+$", re.I)
_DOMAIN = re.compile(
    r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.(com|cn|net|org|io|co|gov|edu|info|biz)(\.[a-z]{2})?$", re.I
)
_MOBILE_CN = re.compile(r"^(\+?86[- ]?)?1[3-9]\d{9}$")
_PHONE_INTL = re.compile(r"^\+\d{7,15}$")
_LANDLINE_CN = re.compile(r"^(\(?0\d{2,3}\)?[- ]?)?\d{7,8}([- ]\d{1,6})?$")
_ZIP = re.compile(r"^(\d{6}|\d{5}(-\d{4})?|[A-Z]\d[A-Z] ?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|\d{4})$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_HEX = re.compile(r"^[0-9a-f]{16,40}$", re.I)
_EXT_ID = re.compile(r"^(wm|wo|wr|o)[A-Za-z0-9_\-]{20,40}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,}$")
_CODE = re.compile(r"^[A-Za-z\u4e00-\u9fff]{0,6}[-_]?[A-Za-z]*\d[\dA-Za-z\-_/]{0,20}$")
_CURRENCY = {
    "CNY",
    "RMB",
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "HKD",
    "TWD",
    "KRW",
    "SGD",
    "AUD",
    "CAD",
    "CHF",
    "人民币",
    "美元",
    "欧元",
    "港币",
    "日元",
}
_COUNTRIES = {
    "中国",
    "china",
    "cn",
    "united states",
    "usa",
    "us",
    "united kingdom",
    "uk",
    "gb",
    "canada",
    "australia",
    "japan",
    "germany",
    "france",
    "singapore",
    "美国",
    "英国",
    "日本",
    "德国",
    "法国",
    "新加坡",
    "中国香港",
    "hong kong",
}
_MUNICIPALITIES = {"北京", "上海", "天津", "重庆"}
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_DATE_COMPACT = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_DATETIME = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?[ T](\d{1,2}):(\d{2})(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$"
)
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_MONEY_STR = re.compile(
    r"^[¥￥$€]?\s*[+-]?\d+(,\d{3})*(\.\d+)?\s*(万元|万|元|亿元|万人民币|人民币)?([（(]人民币[)）])?$"
)
_PERCENT = re.compile(r"^[+-]?\d+(\.\d+)?\s*%$")
_VERSION = re.compile(r"^(v\d+(\.\d+){1,3}|\d+\.\d+\.\d+)([-.][A-Za-z0-9]+)?$", re.I)
_IP = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")
_PERSON_HONORIFIC = re.compile(
    r"^[\u4e00-\u9fff]{1,2}(先生|女士|老师|经理|总|工|主任|部长|小姐|会计|主管|文员)$"
)
_COMPANY_SUFFIX = re.compile(
    r"(公司|集团|企业|厂|学院|大学|医院|中心|局|委员会|研究院|研究所|事务所|银行|学校|政府|LLC|Inc\.?|Ltd\.?|Co\.?|GmbH|Corp\.?|Company|Cafe|Studio|Traders)$",
    re.I,
)
_BANK_NAME = re.compile(r"银行.*(支行|分行|营业部)$|银行$")
_ADDRESS = re.compile(
    r"(路|街|道|号|巷|弄|村|室|层|楼|幢|栋|大厦|广场|园)\d*|\b\d+\s+\w+\s+(St|Ave|Rd|Street|Avenue|Road|Blvd|Lane|Dr|Way|W|E)\b|PO Box",
    re.I,
)
_PROVINCE = re.compile(r"^[\u4e00-\u9fff]{2,8}(省|自治区|特别行政区)$")
_CITY = re.compile(r"^[\u4e00-\u9fff]{2,8}(市|州|盟)$")
_DISTRICT = re.compile(r"^[\u4e00-\u9fff]{1,8}(区|县|旗)$")
_REGION = re.compile(r"^[\u4e00-\u9fff]{2,6}(省|市|自治区)[\u4e00-\u9fff]{0,8}(市|区|县)?$")
_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦"
    "付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
_ENUM_MAX_DISTINCT = 6


def _flatten(value: Any) -> list[Any]:
    """Scalars inside a sample: lookups ``{"FNumber": x}`` and arrays are opened one level deep."""
    if isinstance(value, dict):
        out: list[Any] = []
        for v in value.values():
            out.extend(_flatten(v) if isinstance(v, list | dict) else [v])
        return out
    if isinstance(value, list):
        out = []
        for v in value[:5]:
            out.extend(_flatten(v) if isinstance(v, dict | list) else [v])
        return out
    return [value]


def classify(value: Any) -> str:
    """The value kind of one scalar sample."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return _classify_int(value)
    if isinstance(value, float):
        if value.is_integer():
            return _classify_int(int(value))
        return "number"
    s = fold(str(value))
    if not s:
        return "text"
    low = s.lower()
    if low in ("true", "false", "yes", "no", "y", "n", "是", "否"):
        return "bool"
    if _EMAIL.match(s):
        return "email"
    if _URL.match(s) or _DOMAIN.match(s):
        return "url"
    if _DOTNET_DATE.match(s):
        return "epoch_ms"
    if s.startswith("gid://") or ("/" in s and not has_space(s) and s.count("/") >= 2 and not _DATE.match(s)):
        return "path"
    compact = s.replace(" ", "").replace("-", "")
    if _MOBILE_CN.match(compact):
        return "mobile"
    if _PHONE_INTL.match(compact):
        return "phone"
    if len(s) == 18 and is_valid_uscc(s):
        return "uscc"
    if _DOTNET_DATE.match(s):
        return "epoch_ms"
    if _DATETIME.match(s):
        return "datetime"
    if _DATE.match(s):
        return "date"
    if _LANDLINE_CN.match(s) and s.startswith("0") and len(compact) >= 10:
        return "landline"
    if _UUID.match(s):
        return "uuid"
    if _IP.match(s):
        return "ip"
    if _PERCENT.match(s):
        return "percent"
    if _VERSION.match(s):
        return "version"
    if len(s) == 6 and s.isdigit() and s[0] != "0":
        return "zip"  # a 6-digit text: Chinese postal code (numbers would be sent as numbers)
    if _NUMBER.match(s):
        num = float(s.replace(",", ""))
        if "." in s:
            return "number" if not re.search(r"\.\d{1,2}$", s) else "money"
        if s.startswith("0") and len(s) > 1:
            return "zip" if _ZIP.match(s) else "code"
        return _classify_int(int(num), text=s)
    if _MONEY_STR.match(s):
        return "amount_wan" if "万" in s or "亿" in s else "money"
    if re.fullmatch(r"[0-9A-Z]{15}|[0-9A-Z]{17}[0-9X]|[0-9A-Z]{20}", s) and sum(c.isdigit() for c in s) >= 12:
        return "taxno"
    if s.upper() in _CURRENCY:
        return "currency"
    if low in _COUNTRIES:
        return "country"
    if _ZIP.match(s) and not s.isalpha():
        return "zip"
    if _HEX.match(s) and any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
        return "hex_id"
    if _EXT_ID.match(s):
        return "ext_id"
    cjk = cjk_ratio(s)
    if cjk > 0:
        return _classify_chinese(s, cjk)
    if (
        _TOKEN.match(s)
        and any(c.isdigit() for c in s)
        and any(c.isupper() for c in s)
        and any(c.islower() for c in s)
    ):
        return "token"
    if _CODE.match(s) and any(c.isdigit() for c in s) and " " not in s:
        return "code"
    if _COMPANY_SUFFIX.search(s):
        return "company_name"
    if _ADDRESS.search(s):
        return "address"
    if re.fullmatch(r"[A-Z0-9_]{1,20}", s):
        return "enum"
    if " " in s:
        return "en_text"
    return "text"


def has_space(s: str) -> bool:
    """True when ``s`` contains whitespace."""
    return any(ch.isspace() for ch in s)


def _classify_int(v: int, text: str | None = None) -> str:
    a = abs(v)
    if 10**9 <= a < 2.2 * 10**9:
        return "epoch_s"
    if 10**12 <= a < 2.2 * 10**12:
        return "epoch_ms"
    if 19000101 <= a <= 20991231 and _DATE_COMPACT.match(str(a)):
        return "date"
    s = text or str(v)
    if _MOBILE_CN.match(s):
        return "mobile"
    if len(s) >= 12:
        return "bank_account" if len(s) <= 21 else "token"
    return "integer"


def _classify_chinese(s: str, cjk: float) -> str:
    if _BANK_NAME.search(s):
        return "bank_name"
    if _COMPANY_SUFFIX.search(s) and len(s) >= 4:
        return "company_name"
    if s in _MUNICIPALITIES or _PROVINCE.match(s) or (s.endswith("市") and s[:-1] in _MUNICIPALITIES):
        return "province"
    if _DISTRICT.match(s) and len(s) <= 5:
        return "district"
    if _CITY.match(s) and len(s) <= 5:
        return "city"
    if _REGION.match(s):
        return "region"
    if _ADDRESS.search(s) and len(s) >= 6:
        return "address"
    if _PERSON_HONORIFIC.match(s) or (2 <= len(s) <= 3 and cjk == 1.0 and s[0] in _SURNAMES):
        return "person_name"
    if s in {"中国", "中华人民共和国"}:
        return "country"
    if len(s) > 14:
        return "zh_text"
    if cjk == 1.0 and len(s) == 4:
        return "company_short"
    return "text"


# ----------------------------------------------------------------------------- normalisation


def normalise(value: Any) -> str:
    """Canonical string of a scalar for overlap: dates to their day, numbers to plain form, phones to digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        f = float(value)
        if f.is_integer():
            a = abs(int(f))
            if 10**12 <= a < 2.2 * 10**12:
                return _day(f / 1000.0)
            if 10**9 <= a < 2.2 * 10**9:
                return _day(f)
            return str(int(f))
        return f"{f:.2f}"
    s = fold(str(value)).lower()
    m = _DOTNET_DATE.match(s)
    if m:
        return _day(int(m.group(1)) / 1000.0)
    m = _DATETIME.match(s) or _DATE.match(s)
    if m:
        return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    if _NUMBER.match(s):
        f = float(s.replace(",", ""))
        return str(int(f)) if f.is_integer() else f"{f:.2f}"
    digits = re.sub(r"\D", "", s)
    if len(digits) >= 11 and (
        _MOBILE_CN.match(s.replace(" ", "").replace("-", "")) or _PHONE_INTL.match(s.replace(" ", ""))
    ):
        return digits[-11:]
    return re.sub(r"^https?://", "", s).strip()


def _day(epoch_seconds: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return str(epoch_seconds)


# ----------------------------------------------------------------------------- profiles


@dataclass
class ValueProfile:
    """What a field's samples look like."""

    n: int = 0
    kinds: dict[str, float] = field(default_factory=dict)  # kind -> share of scalar samples
    distinct: int = 0
    mean_len: float = 0.0
    cjk: float = 0.0
    digits: float = 0.0
    numeric_log: float | None = None  # log10 of the median absolute numeric value
    values: frozenset[str] = frozenset()  # normalised scalars
    bigrams: Counter[str] = field(default_factory=Counter)
    date_formats: tuple[str, ...] = ()
    enum_values: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No samples."""
        return self.n == 0

    def top_kind(self) -> str | None:
        """The most common kind."""
        return max(self.kinds, key=self.kinds.get) if self.kinds else None  # type: ignore[arg-type]


def profile_values(samples: list[Any]) -> ValueProfile:
    """Profile a field's sample list (up to 20 distinct non-null values, possibly nested)."""
    scalars: list[Any] = []
    for s in samples[:20]:
        scalars.extend(x for x in _flatten(s) if x is not None and x != "")
    if not scalars:
        return ValueProfile()
    kinds = Counter(classify(v) for v in scalars)
    texts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in scalars]
    strs = [fold(t) for t in texts]
    distinct = len(set(strs))
    nums: list[float] = []
    for v in scalars:
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            nums.append(abs(float(v)))
        elif isinstance(v, str) and _NUMBER.match(v.strip()):
            nums.append(abs(float(v.strip().replace(",", ""))))
    total_chars = sum(len(s) for s in strs) or 1
    bigrams: Counter[str] = Counter()
    for s in strs:
        t = s.lower()
        for i in range(len(t) - 1):
            bigrams[t[i : i + 2]] += 1
    n = len(scalars)
    kind_share = {k: c / n for k, c in kinds.items()}
    # Few distinct short values: an enum / code set.
    if distinct <= _ENUM_MAX_DISTINCT and all(len(s) <= 12 for s in strs) and n >= 1:
        top = max(kind_share, key=kind_share.get)  # type: ignore[arg-type]
        if top in ("text", "enum", "integer", "code", "company_short", "bool", "en_text") and distinct >= 1:
            kind_share = {k: v * 0.5 for k, v in kind_share.items()}
            kind_share["enum"] = kind_share.get("enum", 0.0) + 0.5
    return ValueProfile(
        n=n,
        kinds=kind_share,
        distinct=distinct,
        mean_len=sum(len(s) for s in strs) / n,
        cjk=sum(cjk_ratio(s) * len(s) for s in strs) / total_chars,
        digits=sum(ch.isdigit() for s in strs for ch in s) / total_chars,
        numeric_log=math.log10(1 + sorted(nums)[len(nums) // 2]) if len(nums) >= max(1, n // 2) else None,
        values=frozenset(normalise(v) for v in scalars),
        bigrams=bigrams,
        date_formats=tuple(sorted({_date_format(s) for s in strs if _date_format(s)})),
        enum_values=tuple(sorted(set(strs)))[:20] if distinct <= 12 else (),
    )


def _date_format(s: str) -> str | None:
    """A strftime-style description of a date string's format (None when it is not a date)."""
    if _DOTNET_DATE.match(s):
        return "/Date(ms)/"
    m = _DATETIME.match(s)
    if m:
        sep = s[4]
        fmt = "%Y年%m月%d日" if sep == "年" else f"%Y{sep}%m{sep}%d"
        fmt += "T" if "T" in s else " "
        fmt += "%H:%M" + (":%S" if m.group(6) else "") + (".%f" if m.group(7) else "")
        if m.group(8):
            fmt += "%z"
        return fmt
    if _DATE.match(s):
        sep = s[4]
        return "%Y年%m月%d日" if sep == "年" else f"%Y{sep}%m{sep}%d"
    if _DATE_COMPACT.match(s):
        return "%Y%m%d"
    return None


# ----------------------------------------------------------------------------- comparisons

# Which detected kinds satisfy a kind that a name implies (glossary kinds); 1 = fully, 0.5 = plausible.
_EXPECT: dict[str, dict[str, float]] = {
    "phone": {"phone": 1, "mobile": 1, "landline": 1},
    "mobile": {"mobile": 1, "phone": 1, "landline": 0.3},
    "landline": {"landline": 1, "phone": 0.8, "mobile": 0.3},
    "email": {"email": 1},
    "url": {"url": 1, "path": 0.5},
    "uscc": {"uscc": 1, "taxno": 0.7},
    "taxno": {"taxno": 1, "uscc": 0.9},
    "bank_account": {"bank_account": 1, "integer": 0.3, "token": 0.3, "code": 0.3},
    "bank_name": {"bank_name": 1, "text": 0.3},
    "zip": {"zip": 1, "integer": 0.3, "code": 0.3},
    "date": {"date": 1, "datetime": 0.9, "epoch_s": 0.9, "epoch_ms": 0.9, "integer": 0.2},
    "datetime": {"datetime": 1, "date": 0.8, "epoch_s": 1, "epoch_ms": 1},
    "money": {"money": 1, "number": 0.9, "integer": 0.8, "amount_wan": 1},
    "number": {"number": 1, "money": 0.9, "integer": 0.9, "coord": 0.5},
    "integer": {"integer": 1, "number": 0.5, "money": 0.4, "enum": 0.3},
    "percent": {"percent": 1, "number": 0.7, "integer": 0.5, "money": 0.3},
    "enum": {
        "enum": 1,
        "code": 0.6,
        "integer": 0.5,
        "bool": 0.5,
        "text": 0.4,
        "en_text": 0.3,
        "company_short": 0.2,
    },
    "bool": {"bool": 1, "enum": 0.6},
    "id": {
        "uuid": 1,
        "hex_id": 1,
        "ext_id": 1,
        "token": 0.8,
        "integer": 0.6,
        "code": 0.7,
        "bank_account": 0.4,
    },
    "code": {"code": 1, "integer": 0.5, "token": 0.4, "enum": 0.5, "hex_id": 0.3, "zip": 0.2},
    "currency": {"currency": 1, "enum": 0.5},
    "country": {"country": 1, "enum": 0.5},
    "province": {"province": 1, "region": 0.6, "city": 0.3},
    "city": {"city": 1, "province": 0.3, "region": 0.4},
    "district": {"district": 1, "region": 0.4},
    "region": {"region": 1, "province": 0.8, "city": 0.7, "district": 0.7},
    "address": {"address": 1, "region": 0.3, "en_text": 0.3},
    "company_name": {"company_name": 1, "text": 0.3, "zh_text": 0.2},
    "company_short": {"company_short": 1, "text": 0.5},
    "person_name": {"person_name": 1, "text": 0.5, "company_short": 0.3, "en_text": 0.4},
    "text": {"text": 1, "zh_text": 1, "en_text": 1, "company_short": 0.5, "person_name": 0.5, "enum": 0.4},
    "version": {"version": 1},
    "ip": {"ip": 1},
    "lat": {"coord": 1, "number": 0.8},
    "lon": {"coord": 1, "number": 0.8},
}


def expectation_match(profile: ValueProfile, expected: frozenset[str]) -> float | None:
    """How well observed samples fit the kinds a field name implies (None: no expectation or no data)."""
    if profile.empty or not expected:
        return None
    best = 0.0
    for exp in expected:
        table = _EXPECT.get(exp)
        if not table:
            continue
        best = max(best, sum(share * table.get(kind, 0.0) for kind, share in profile.kinds.items()))
    return best


def kind_similarity(a: ValueProfile, b: ValueProfile) -> float:
    """Cosine similarity of the kind distributions of two profiles."""
    if a.empty or b.empty:
        return 0.0
    dot = sum(v * b.kinds.get(k, 0.0) for k, v in a.kinds.items())
    na = math.sqrt(sum(v * v for v in a.kinds.values()))
    nb = math.sqrt(sum(v * v for v in b.kinds.values()))
    return dot / (na * nb) if na and nb else 0.0


def compatible_kind_similarity(a: ValueProfile, b: ValueProfile) -> float:
    """Kind agreement allowing for format changes (epoch ↔ ISO date, 万元 ↔ number, mobile ↔ phone)."""
    if a.empty or b.empty:
        return 0.0
    score = 0.0
    for ka, va in a.kinds.items():
        table = _EXPECT.get(_GROUP.get(ka, ka), {})
        best = max((table.get(kb, 0.0) if kb != ka else 1.0) for kb in b.kinds)
        score += va * best
    return score


_GROUP = {
    "epoch_s": "datetime",
    "epoch_ms": "datetime",
    "amount_wan": "money",
    "uuid": "id",
    "hex_id": "id",
    "ext_id": "id",
    "token": "id",
    "coord": "lat",
    "en_text": "text",
    "zh_text": "text",
}


def value_overlap(a: ValueProfile, b: ValueProfile) -> tuple[float, float]:
    """(Jaccard, containment of the smaller set) of normalised values."""
    if not a.values or not b.values:
        return 0.0, 0.0
    inter = len(a.values & b.values)
    if not inter:
        return 0.0, 0.0
    return inter / len(a.values | b.values), inter / min(len(a.values), len(b.values))


def bigram_cosine(a: ValueProfile, b: ValueProfile) -> float:
    """Cosine similarity of the character bigram bags of two profiles."""
    if not a.bigrams or not b.bigrams:
        return 0.0
    small, large = (a.bigrams, b.bigrams) if len(a.bigrams) <= len(b.bigrams) else (b.bigrams, a.bigrams)
    dot = sum(v * large.get(k, 0) for k, v in small.items())
    if not dot:
        return 0.0
    na = math.sqrt(sum(v * v for v in a.bigrams.values()))
    nb = math.sqrt(sum(v * v for v in b.bigrams.values()))
    return dot / (na * nb)


def stats_similarity(a: ValueProfile, b: ValueProfile) -> float:
    """Agreement of length, script and digit shares and numeric magnitude (0..1)."""
    if a.empty or b.empty:
        return 0.0
    length = 1.0 - abs(a.mean_len - b.mean_len) / max(a.mean_len, b.mean_len, 1.0)
    script = 1.0 - abs(a.cjk - b.cjk)
    digits = 1.0 - abs(a.digits - b.digits)
    parts = [length, script, digits]
    if a.numeric_log is not None and b.numeric_log is not None:
        parts.append(max(0.0, 1.0 - abs(a.numeric_log - b.numeric_log) / 3.0))
    return sum(parts) / len(parts)
