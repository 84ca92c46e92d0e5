"""Deterministic WeCom data for the simulator, generated on demand: ids, and WeCom's own vocabulary.

People, companies and phone numbers come from the kit's shared generator
(:mod:`connectors.kit.fakedata`, keyed draws); what is WeCom's own (nicknames, positions, tag
groups, chat names, add_way values) and the id scheme live here.

Nothing here is stored per contact: a contact, its follow relations and a group chat are pure
functions of ``(seed, index)``, so 100,000 contacts cost a few megabytes (the follow-relation index)
and the same seed always yields the same corp. The simulator keeps only what changed (overrides).

Ids look like the real ones (external_userid ``wm…``/``wo…``, chats ``wr…``, tags ``et…``) and are
*decodable*: the contact index is hidden in a keyed 32-bit permutation inside the id, and the rest is
a keyed hash the simulator checks, so looking an id up needs no dictionary.
"""

from __future__ import annotations

import hashlib

from connectors.kit import fakedata
from connectors.kit.fakedata import mix

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHA_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_MULT = 0x2545F491  # odd, so multiplication mod 2**32 is a bijection
_MULT_INV = pow(_MULT, -1, 1 << 32)

BASE_EPOCH = 1546272000  # 2019-01-01 00:00:00 +08:00: first relations of the simulated corp
SPAN_SECONDS = 6 * 365 * 86400


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
ADD_WAYS = (1, 1, 1, 2, 3, 3, 4, 5, 6, 7, 201, 202)
TAG_GROUPS = (
    ("客户等级", ("A类客户", "B类客户", "C类客户", "D类客户")),
    ("客户来源", ("展会", "官网咨询", "老客户转介绍", "电话营销", "线上广告")),
    ("意向产品", ("工业机器人", "数控机床", "自动化产线", "工业软件", "售后服务")),
    ("所属行业", ("汽车制造", "电子电器", "医疗器械", "食品饮料", "新能源")),
)
CHAT_SUFFIXES = ("项目交流群", "客户服务群", "技术支持群", "采购对接群", "VIP客户群")
NOTICES = ("文明沟通，拒绝广告", "工作日 9:00-18:00 在线答疑", "新品资料已上传群文件", "")


def person(*key: int) -> fakedata.Person:
    """The person keyed by ``key`` (name, pinyin, surname), from the kit's shared vocabulary."""
    return fakedata.person(fakedata.KeyedDraw(*key))


def company(seed: int, index: int) -> fakedata.Company:
    """The ``index``-th customer company of the corp (``short_name`` as a WeCom user shows it)."""
    return fakedata.company(index, fakedata.KeyedDraw(seed, index, 21), seed)


def mobile(*key: int) -> str:
    """A mainland mobile number keyed by ``key``."""
    return fakedata.mobile(fakedata.KeyedDraw(*key))


def epoch_in_span(*parts: int) -> int:
    """A deterministic epoch second between 2019 and 2025."""
    return BASE_EPOCH + mix(*parts) % SPAN_SECONDS
