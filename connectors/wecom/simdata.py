"""Deterministic, realistic WeCom data for the simulator, generated on demand.

Nothing here is stored per contact: a contact, its follow relations and a group chat are pure
functions of ``(seed, index)``, so 100,000 contacts cost a few megabytes (the follow-relation index)
and the same seed always yields the same corp. The simulator keeps only what changed (overrides).

Ids look like the real ones (external_userid ``wm…``/``wo…``, chats ``wr…``, tags ``et…``) and are
*decodable*: the contact index is hidden in a keyed 32-bit permutation inside the id, and the rest is
a keyed hash the simulator checks, so looking an id up needs no dictionary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_MASK64 = (1 << 64) - 1
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHA_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_MULT = 0x2545F491  # odd, so multiplication mod 2**32 is a bijection
_MULT_INV = pow(_MULT, -1, 1 << 32)

BASE_EPOCH = 1546272000  # 2019-01-01 00:00:00 +08:00: first relations of the simulated corp
SPAN_SECONDS = 6 * 365 * 86400


def mix(*parts: int) -> int:
    """splitmix64-style hash of integers: fast, deterministic, well spread."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = ((h ^ (p & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 29
    return h


def pick(seq: tuple | list, *parts: int):
    """A deterministic choice from ``seq`` keyed by ``parts``."""
    return seq[mix(*parts) % len(seq)]


def chance(p: float, *parts: int) -> bool:
    """A deterministic coin that lands heads with probability ``p``."""
    return (mix(*parts) % 1_000_000) < p * 1_000_000


def _b64(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[n & 63])
        n >>= 6
    return "".join(out)


def _unb64(s: str) -> int:
    n = 0
    for c in reversed(s):
        n = (n << 6) | _ALPHA_INDEX[c]
    return n


class IdCodec:
    """Makes opaque, decodable ids: ``prefix + 6 chars (permuted index) + keyed hash``."""

    def __init__(self, seed: int, kind: str, prefix: str, length: int = 32) -> None:
        self.prefix = prefix
        self.length = length
        self._key = hashlib.blake2b(f"{seed}:{kind}".encode(), digest_size=16).digest()
        self._xor = int.from_bytes(self._key[:4], "big")

    def _tail(self, index: int) -> str:
        need = self.length - len(self.prefix) - 6
        digest = hashlib.blake2b(index.to_bytes(8, "big"), key=self._key, digest_size=24).digest()
        return _b64(int.from_bytes(digest, "big"), need)

    def encode(self, index: int) -> str:
        x = ((index ^ self._xor) * _MULT) & 0xFFFFFFFF
        return self.prefix + _b64(x, 6) + self._tail(index)

    def decode(self, ident: str) -> int | None:
        """The index behind an id, or None when the id was not made by this codec."""
        if not isinstance(ident, str) or len(ident) != self.length or not ident.startswith(self.prefix):
            return None
        core = ident[len(self.prefix) : len(self.prefix) + 6]
        if any(c not in _ALPHA_INDEX for c in core):
            return None
        x = _unb64(core) & 0xFFFFFFFF
        index = ((x * _MULT_INV) & 0xFFFFFFFF) ^ self._xor
        return index if self.encode(index) == ident else None


# -- vocabulary -------------------------------------------------------------------------------------
SURNAMES = (
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("高", "gao"),
    ("林", "lin"),
    ("罗", "luo"),
    ("郑", "zheng"),
    ("梁", "liang"),
    ("谢", "xie"),
    ("宋", "song"),
    ("唐", "tang"),
    ("许", "xu"),
    ("韩", "han"),
    ("冯", "feng"),
    ("邓", "deng"),
    ("曹", "cao"),
    ("彭", "peng"),
    ("曾", "zeng"),
    ("肖", "xiao"),
    ("田", "tian"),
    ("董", "dong"),
    ("袁", "yuan"),
    ("潘", "pan"),
    ("于", "yu"),
    ("蒋", "jiang"),
    ("蔡", "cai"),
    ("余", "yu"),
    ("杜", "du"),
    ("叶", "ye"),
    ("程", "cheng"),
    ("苏", "su"),
    ("魏", "wei"),
    ("吕", "lv"),
    ("丁", "ding"),
    ("任", "ren"),
    ("沈", "shen"),
    ("姚", "yao"),
    ("卢", "lu"),
    ("姜", "jiang"),
    ("崔", "cui"),
    ("钟", "zhong"),
    ("谭", "tan"),
    ("陆", "lu"),
    ("汪", "wang"),
    ("范", "fan"),
    ("金", "jin"),
)
GIVEN = (
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("娟", "juan"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀英", "xiuying"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("桂英", "guiying"),
    ("建华", "jianhua"),
    ("志强", "zhiqiang"),
    ("晓东", "xiaodong"),
    ("海燕", "haiyan"),
    ("建国", "jianguo"),
    ("丽娟", "lijuan"),
    ("文博", "wenbo"),
    ("子涵", "zihan"),
    ("宇轩", "yuxuan"),
    ("欣怡", "xinyi"),
    ("浩然", "haoran"),
    ("梓萱", "zixuan"),
    ("俊杰", "junjie"),
    ("雪梅", "xuemei"),
    ("国强", "guoqiang"),
    ("红梅", "hongmei"),
    ("春生", "chunsheng"),
    ("志明", "zhiming"),
    ("佳怡", "jiayi"),
    ("思远", "siyuan"),
    ("晨", "chen"),
    ("鹏", "peng"),
    ("斌", "bin"),
    ("婷", "ting"),
    ("琳", "lin"),
    ("慧", "hui"),
)
NICKNAMES = (
    "阳光",
    "小鱼儿",
    "追梦人",
    "静待花开",
    "老张",
    "Tony",
    "王姐",
    "海阔天空",
    "平安是福",
    "晨曦",
    "简单点",
    "A 李总",
    "清风徐来",
    "Lucky",
    "向日葵",
    "知足常乐",
    "Kevin",
    "远方",
    "一叶知秋",
    "大海",
)
CITIES = (
    "上海",
    "北京",
    "深圳",
    "广州",
    "苏州",
    "杭州",
    "南京",
    "成都",
    "武汉",
    "宁波",
    "东莞",
    "佛山",
    "无锡",
    "青岛",
    "天津",
    "重庆",
    "西安",
    "长沙",
    "合肥",
    "厦门",
    "常州",
    "温州",
    "济南",
    "郑州",
)
BRANDS = (
    "华信",
    "恒通",
    "鼎盛",
    "金石",
    "天成",
    "宏达",
    "瑞丰",
    "博远",
    "中科",
    "联创",
    "新元",
    "正泰",
    "海川",
    "东方",
    "长城",
    "远航",
    "启明",
    "德润",
    "嘉禾",
    "汇智",
    "盛世",
    "永泰",
    "华强",
    "精工",
    "凯达",
    "明辉",
    "百川",
    "荣昌",
    "安泰",
    "星河",
    "立信",
    "广汇",
    "睿达",
    "中晟",
    "同创",
    "宝丰",
)
INDUSTRIES = (
    ("机电设备", "机电"),
    ("精密机械", "精密"),
    ("电子科技", "电子"),
    ("医疗器械", "医疗"),
    ("食品", "食品"),
    ("新能源科技", "新能源"),
    ("汽车零部件", "汽配"),
    ("化工", "化工"),
    ("建材", "建材"),
    ("信息技术", "信息"),
    ("物流", "物流"),
    ("包装材料", "包装"),
    ("环保科技", "环保"),
)
FORMS = ("有限公司", "有限公司", "有限公司", "股份有限公司")
POSITIONS = (
    "采购经理",
    "采购专员",
    "总经理",
    "副总经理",
    "技术总监",
    "研发工程师",
    "设备主管",
    "生产经理",
    "财务经理",
    "行政主管",
    "项目经理",
    "销售总监",
    "董事长",
    "厂长",
    "质量经理",
)
DESCRIPTIONS = (
    "对接采购事务",
    "关注新品报价",
    "年底有采购计划",
    "技术选型阶段",
    "老客户，复购意向强",
    "展会认识，需跟进报价",
    "需要安排现场演示",
    "预算审批中",
    "对价格敏感",
    "关注交期",
    "",
)
STATES = ("展会二维码2024", "官网客服", "销售名片", "渠道活动", "")
MOBILE_PREFIXES = (
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
)
ADD_WAYS = (1, 1, 1, 2, 3, 3, 4, 5, 6, 7, 201, 202)
TAG_GROUPS = (
    ("客户等级", ("A类客户", "B类客户", "C类客户", "D类客户")),
    ("客户来源", ("展会", "官网咨询", "老客户转介绍", "电话营销", "线上广告")),
    ("意向产品", ("工业机器人", "数控机床", "自动化产线", "工业软件", "售后服务")),
    ("所属行业", ("汽车制造", "电子电器", "医疗器械", "食品饮料", "新能源")),
)
CHAT_SUFFIXES = ("项目交流群", "客户服务群", "技术支持群", "采购对接群", "VIP客户群")
NOTICES = ("文明沟通，拒绝广告", "工作日 9:00-18:00 在线答疑", "新品资料已上传群文件", "")


@dataclass(frozen=True)
class Company:
    """A customer company as a WeCom user shows it (corp_name / corp_full_name)."""

    short_name: str
    full_name: str


def person_name(*parts: int) -> tuple[str, str]:
    """(Chinese name, pinyin) for a person keyed by ``parts``."""
    s_cn, s_py = pick(SURNAMES, *parts, 11)
    g_cn, g_py = pick(GIVEN, *parts, 12)
    return s_cn + g_cn, s_py + g_py


def company(seed: int, index: int) -> Company:
    """The ``index``-th customer company of the corp."""
    city = pick(CITIES, seed, index, 21)
    brand = pick(BRANDS, seed, index, 22)
    industry, short = pick(INDUSTRIES, seed, index, 23)
    form = pick(FORMS, seed, index, 24)
    return Company(short_name=f"{brand}{short}", full_name=f"{city}{brand}{industry}{form}")


def mobile(*parts: int) -> str:
    """A plausible mainland mobile number."""
    return pick(MOBILE_PREFIXES, *parts, 31) + f"{mix(*parts, 32) % 100_000_000:08d}"


def epoch_in_span(*parts: int) -> int:
    """A deterministic epoch second between 2019 and 2025."""
    return BASE_EPOCH + mix(*parts) % SPAN_SECONDS
