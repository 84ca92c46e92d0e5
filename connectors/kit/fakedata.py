"""Realistic Chinese business data for every simulator, generated deterministically.

One vocabulary (cities with their province, administrative division, telephone area code, postcode
and districts; surnames and given names with pinyin; trade names, industries) and one set of
generators: companies with distinct names and valid, distinct unified social credit codes, people,
mobile and landline numbers, addresses, amounts.

Generators draw through a :class:`Draw` (anything with ``random``/``choice``/``randrange``), so a
simulator can seed them two ways:

* :class:`FastRandom`: a seeded sequential RNG, for simulators that materialise rows (Kingdee);
* :class:`KeyedDraw`: draws that are a pure function of a key such as ``(seed, index, salt)``, for
  simulators that generate a record on demand and keep nothing (WeCom).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from connectors.kit import uscc

__all__ = [
    "CITIES",
    "COMPANY_SUFFIXES",
    "GIVEN_NAMES",
    "INDUSTRIES",
    "MOBILE_PREFIXES",
    "SURNAMES",
    "City",
    "Company",
    "Draw",
    "FastRandom",
    "KeyedDraw",
    "Person",
    "address",
    "amount",
    "company",
    "credit_code",
    "landline",
    "mix",
    "mobile",
    "person",
]

T = TypeVar("T")
_MASK64 = (1 << 64) - 1


def mix(*parts: int) -> int:
    """splitmix64-style hash of integers: fast, deterministic, well spread."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = ((h ^ (p & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 29
    return h


class Draw(Protocol):
    """The three draws every generator here needs."""

    def random(self) -> float: ...

    def choice(self, seq: Sequence[T]) -> T: ...

    def randrange(self, start: int, stop: int | None = None) -> int: ...


class FastRandom(random.Random):
    """``random.Random`` with float-based ``choice``/``randrange``: ~10x faster, still seeded.

    Seeding a million rows makes ~20 draws per row; the exact-uniform rejection sampling of the
    stock methods dominated the seeding time and buys nothing for synthetic data.
    """

    def choice(self, seq: Sequence[Any]) -> Any:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()


class KeyedDraw:
    """Draws that depend only on ``key`` and on how many draws came before (no stored state)."""

    __slots__ = ("_key", "_n")

    def __init__(self, *key: int) -> None:
        self._key = mix(*key)
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return mix(self._key, self._n)

    def random(self) -> float:
        return (self._next() >> 11) / float(1 << 53)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self._next() % len(seq)]

    def randrange(self, start: int, stop: int | None = None) -> int:
        if stop is None:
            start, stop = 0, start
        return start + self._next() % (stop - start)


# -- vocabulary -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class City:
    """A city with what addresses, phone numbers and credit codes need."""

    name: str
    province: str
    division: str  # 6-digit administrative division code (行政区划代码)
    area_code: str  # telephone area code (区号)
    postcode: str
    districts: tuple[str, ...]


CITIES: tuple[City, ...] = tuple(
    City(*row)
    for row in (
        ("上海", "上海市", "310115", "021", "200120", ("浦东新区", "闵行区", "徐汇区", "嘉定区", "松江区")),
        ("北京", "北京市", "110105", "010", "100020", ("朝阳区", "海淀区", "丰台区", "大兴区")),
        ("深圳", "广东省", "440305", "0755", "518057", ("南山区", "宝安区", "龙岗区", "福田区")),
        ("广州", "广东省", "440106", "020", "510630", ("天河区", "黄埔区", "番禺区", "白云区")),
        ("杭州", "浙江省", "330106", "0571", "310012", ("西湖区", "滨江区", "余杭区", "萧山区")),
        ("苏州", "江苏省", "320506", "0512", "215000", ("吴中区", "工业园区", "相城区", "吴江区")),
        ("成都", "四川省", "510107", "028", "610041", ("武侯区", "高新区", "双流区", "郫都区")),
        ("武汉", "湖北省", "420106", "027", "430071", ("武昌区", "洪山区", "东西湖区", "江夏区")),
        ("青岛", "山东省", "370202", "0532", "266001", ("市南区", "黄岛区", "城阳区", "李沧区")),
        ("西安", "陕西省", "610113", "029", "710061", ("雁塔区", "未央区", "长安区", "高新区")),
        ("南京", "江苏省", "320105", "025", "210019", ("建邺区", "江宁区", "鼓楼区", "浦口区")),
        ("天津", "天津市", "120116", "022", "300450", ("滨海新区", "西青区", "东丽区", "津南区")),
        ("重庆", "重庆市", "500112", "023", "401120", ("渝北区", "江北区", "九龙坡区", "沙坪坝区")),
        ("宁波", "浙江省", "330212", "0574", "315100", ("鄞州区", "北仑区", "镇海区", "江北区")),
        ("东莞", "广东省", "441900", "0769", "523000", ("长安镇", "松山湖", "虎门镇", "塘厦镇")),
        ("佛山", "广东省", "440606", "0757", "528300", ("顺德区", "南海区", "禅城区")),
        ("无锡", "江苏省", "320214", "0510", "214000", ("新吴区", "滨湖区", "惠山区", "梁溪区")),
        ("长沙", "湖南省", "430104", "0731", "410000", ("岳麓区", "雨花区", "开福区")),
        ("郑州", "河南省", "410105", "0371", "450000", ("金水区", "中原区", "管城回族区")),
        ("合肥", "安徽省", "340104", "0551", "230000", ("蜀山区", "包河区", "庐阳区")),
        ("厦门", "福建省", "350206", "0592", "361000", ("湖里区", "思明区", "集美区")),
        ("济南", "山东省", "370112", "0531", "250000", ("历下区", "历城区", "槐荫区")),
        ("常州", "江苏省", "320411", "0519", "213000", ("新北区", "武进区", "天宁区")),
        ("温州", "浙江省", "330302", "0577", "325000", ("鹿城区", "瓯海区", "龙湾区")),
    )
)
#: characters of 字号 (trade names); two make one
TRADE_CHARS = (
    "华瑞恒鑫达盛泰宏嘉创博源德信永丰汇安联科航远众诚润天晨海凯卓启明锦佳腾峰骏东新正和美星弘睿铭宇晟昊磊"
)
#: (name part, short form, 行业 domain)
INDUSTRIES: tuple[tuple[str, str, str], ...] = (
    ("机电设备", "机电", "制造业"),
    ("电子科技", "电子", "电子信息"),
    ("精密机械", "精密", "制造业"),
    ("新材料", "材料", "新材料"),
    ("生物医药", "医药", "医药"),
    ("信息技术", "信息", "信息技术"),
    ("建设工程", "建设", "建筑业"),
    ("物流", "物流", "交通运输"),
    ("食品", "食品", "食品饮料"),
    ("环保科技", "环保", "节能环保"),
    ("汽车零部件", "汽配", "汽车"),
    ("化工", "化工", "化工"),
    ("医疗器械", "医疗", "医疗器械"),
    ("新能源科技", "新能源", "能源"),
    ("纺织", "纺织", "纺织服装"),
    ("贸易", "贸易", "批发零售"),
    ("智能装备", "智能", "制造业"),
    ("自动化", "自动化", "制造业"),
    ("电气", "电气", "电力设备"),
    ("光电", "光电", "电子信息"),
    ("软件", "软件", "信息技术"),
    ("包装材料", "包装", "制造业"),
    ("模具", "模具", "制造业"),
    ("仪器仪表", "仪表", "制造业"),
    ("建材", "建材", "建筑业"),
)
COMPANY_SUFFIXES = ("有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司")
ROADS = (
    "人民路",
    "建设路",
    "科技路",
    "创新大道",
    "工业园路",
    "中山路",
    "解放路",
    "长江路",
    "滨河路",
    "发展大道",
)
#: (character, pinyin)
SURNAMES: tuple[tuple[str, str], ...] = tuple(
    zip(
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金萧傅",
        [
            "wang",
            "li",
            "zhang",
            "liu",
            "chen",
            "yang",
            "huang",
            "zhao",
            "wu",
            "zhou",
            "xu",
            "sun",
            "ma",
            "zhu",
            "hu",
            "guo",
            "he",
            "gao",
            "lin",
            "luo",
            "zheng",
            "liang",
            "xie",
            "song",
            "tang",
            "xu",
            "han",
            "feng",
            "deng",
            "cao",
            "peng",
            "zeng",
            "xiao",
            "tian",
            "dong",
            "yuan",
            "pan",
            "yu",
            "jiang",
            "cai",
            "yu",
            "du",
            "ye",
            "cheng",
            "su",
            "wei",
            "lv",
            "ding",
            "ren",
            "shen",
            "yao",
            "lu",
            "jiang",
            "cui",
            "zhong",
            "tan",
            "lu",
            "wang",
            "fan",
            "jin",
            "xiao",
            "fu",
        ],
        strict=True,
    )
)
GIVEN_NAMES: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"),
    ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("桂英", "guiying"), ("建华", "jianhua"),
    ("志强", "zhiqiang"), ("晓东", "xiaodong"), ("海燕", "haiyan"), ("建国", "jianguo"), ("丽娟", "lijuan"),
    ("文博", "wenbo"), ("子涵", "zihan"), ("宇轩", "yuxuan"), ("欣怡", "xinyi"), ("浩然", "haoran"),
    ("梓萱", "zixuan"), ("俊杰", "junjie"), ("雪梅", "xuemei"), ("国强", "guoqiang"), ("红梅", "hongmei"),
    ("春生", "chunsheng"), ("志明", "zhiming"), ("佳怡", "jiayi"), ("思远", "siyuan"), ("晨", "chen"),
    ("鹏", "peng"), ("斌", "bin"), ("婷", "ting"), ("琳", "lin"), ("慧", "hui"), ("秀兰", "xiulan"),
)  # fmt: skip
MOBILE_PREFIXES = tuple(
    [
        "130",
        "131",
        "132",
        "133",
        "135",
        "136",
        "137",
        "138",
        "139",
        "150",
        "151",
        "152",
        "153",
        "155",
        "156",
        "157",
        "158",
        "159",
        "176",
        "177",
        "178",
        "180",
        "181",
        "182",
        "183",
        "185",
        "186",
        "187",
        "188",
        "189",
        "198",
        "199",
    ]
)


# -- generators --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """A person's name in characters and in pinyin (pinyin makes plausible user ids)."""

    name: str
    pinyin: str
    surname: str


def person(d: Draw) -> Person:
    """A random person."""
    s_cn, s_py = d.choice(SURNAMES)
    g_cn, g_py = d.choice(GIVEN_NAMES)
    return Person(s_cn + g_cn, s_py + g_py, s_cn)


@dataclass(frozen=True)
class Company:
    """A company: 城市 + 字号 + 行业 + 组织形式, and its credit code."""

    name: str
    short_name: str
    trade: str
    industry: str
    domain: str
    city: City
    credit_code: str


# A bijection of the company index onto (city, 字号, industry), so names stay distinct up to ~1.4M.
_NAME_SPACE = len(CITIES) * len(TRADE_CHARS) ** 2 * len(INDUSTRIES)
_NAME_STEP = 1_000_003  # prime, coprime with _NAME_SPACE
_ORG_SPACE = 31**9
_ORG_STEP = 9_007_199_254_740_881  # not a multiple of 31, so index -> organisation code is a bijection


def company(index: int, d: Draw, seed: int = 0) -> Company:
    """The ``index``-th company: its name and credit code are distinct from every other index's."""
    x = (index * _NAME_STEP + 7919 + seed * 104_729) % _NAME_SPACE
    x, city_i = divmod(x, len(CITIES))
    x, ind_i = divmod(x, len(INDUSTRIES))
    a, b = divmod(x, len(TRADE_CHARS))
    trade = TRADE_CHARS[a % len(TRADE_CHARS)] + TRADE_CHARS[b]
    industry, short, domain = INDUSTRIES[ind_i]
    city = CITIES[city_i]
    return Company(
        name=f"{city.name}{trade}{industry}{d.choice(COMPANY_SUFFIXES)}",
        short_name=trade + short,
        trade=trade,
        industry=industry,
        domain=domain,
        city=city,
        credit_code=credit_code(index, city.division, seed),
    )


def credit_code(index: int, division: str, seed: int = 0, prefix: str = "91") -> str:
    """A valid 统一社会信用代码, distinct for every ``index`` (the organisation code comes from it)."""
    x = (index * _ORG_STEP + seed * 1_000_003 + 12_345_678_901) % _ORG_SPACE
    chars = []
    for _ in range(9):
        x, r = divmod(x, 31)
        chars.append(uscc.ALPHABET[r])
    body = prefix + division + "".join(chars)
    return body + uscc.check_char(body)


def mobile(d: Draw) -> str:
    """A mainland mobile number (11 digits, a real operator prefix)."""
    return d.choice(MOBILE_PREFIXES) + f"{d.randrange(100_000_000):08d}"


def landline(d: Draw, city: City) -> str:
    """A landline of ``city`` as ``area-number``, valid by the numbering plan ``phonenumbers`` knows."""
    lead, length = d.choice(_local_number_shapes(city.area_code))
    rest = length - 2
    return f"{city.area_code}-{lead}{d.randrange(10**rest):0{rest}d}"


@functools.cache
def _local_number_shapes(area_code: str) -> tuple[tuple[int, int], ...]:
    """(first two digits, length) of the local numbers the numbering plan allows in ``area_code``."""
    import phonenumbers  # only simulators need it, and only once per area code

    shapes = []
    for length in (8, 7):
        for lead in range(20, 90):
            number = phonenumbers.parse(f"0{area_code[1:]}{lead}{'5' * (length - 2)}", "CN")
            if phonenumbers.is_valid_number(number):
                shapes.append((lead, length))
        if shapes:  # where 8-digit numbers exist, the 7-digit ones are not issued any more
            break
    if not shapes:
        raise ValueError(f"no valid landline numbers in area code {area_code}")
    return tuple(shapes)


def address(d: Draw, city: City) -> str:
    """A street address in ``city`` (province prefix, district, road, number)."""
    prefix = city.province if city.province == city.name + "市" else city.province + city.name + "市"
    return f"{prefix}{d.choice(city.districts)}{d.choice(ROADS)}{d.randrange(1, 999)}号"


def amount(d: Draw, low: float, high: float) -> float:
    """An amount of money between ``low`` and ``high``, in yuan with two decimals."""
    return round2(low + (high - low) * d.random())


def round2(x: float) -> float:
    """Round to fen (two decimals), half up for the binary representation's sake."""
    return round(x + 1e-9, 2)
