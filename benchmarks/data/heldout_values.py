"""Deterministic sample values for the held-out pair builder (``build_heldout.py``).

A value is a function of (kind, entity index): two fields of the same kind on two systems show the
same value for the same entity, which is how ``overlap: shared`` pairs share rows, and a pair with
``disjoint`` entities draws from another index range.  Stdlib only.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

_COMPANY = [
    ("杭州", "云栖", "科技"),
    ("苏州", "恒润", "精密机械"),
    ("深圳", "前海微链", "信息技术"),
    ("成都", "蜀锦", "食品"),
    ("武汉", "江城", "环保设备"),
    ("青岛", "海岳", "电气"),
    ("西安", "秦川", "汽车零部件"),
    ("宁波", "甬港", "物流"),
    ("南京", "金陵", "医疗器械"),
    ("天津", "渤海", "化工"),
    ("厦门", "鹭岛", "纺织"),
    ("合肥", "庐州", "新能源"),
    ("长沙", "湘江", "工程机械"),
    ("郑州", "中原", "农业科技"),
    ("济南", "泉城", "软件"),
    ("福州", "闽江", "茶业"),
]
_FORM = ["有限公司", "股份有限公司", "有限责任公司"]
_EN_CO = [
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
    "Adatum",
    "Proseware",
    "Wingtip",
    "Lucerne",
    "Margie",
    "Alpine",
    "Coho",
    "Fourth Coffee",
    "Humongous",
    "Trey",
    "Woodgrove",
]
_EN_SUFFIX = ["Ltd", "Inc", "GmbH", "Co., Ltd.", "LLC", "Pte Ltd"]
_SURNAME = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "建华",
    "晓东",
    "海燕",
    "志强",
]
_FIRST = [
    "James",
    "Mary",
    "Wei",
    "Li",
    "Anna",
    "Peter",
    "Linda",
    "Chen",
    "Olivia",
    "Noah",
    "Emma",
    "Lucas",
    "Mia",
    "Ethan",
]
_LAST = [
    "Smith",
    "Wang",
    "Johnson",
    "Zhang",
    "Brown",
    "Liu",
    "Miller",
    "Chen",
    "Davis",
    "Garcia",
    "Wilson",
    "Lee",
]
_PLACES = [
    ("浙江省", "杭州市", "西湖区", "310012"),
    ("江苏省", "苏州市", "工业园区", "215021"),
    ("广东省", "深圳市", "南山区", "518057"),
    ("四川省", "成都市", "武侯区", "610041"),
    ("湖北省", "武汉市", "洪山区", "430074"),
    ("山东省", "青岛市", "崂山区", "266061"),
    ("陕西省", "西安市", "雁塔区", "710061"),
    ("浙江省", "宁波市", "鄞州区", "315100"),
    ("江苏省", "南京市", "玄武区", "210018"),
    ("天津市", "天津市", "滨海新区", "300450"),
    ("福建省", "厦门市", "思明区", "361001"),
    ("安徽省", "合肥市", "蜀山区", "230031"),
]
_ROADS = [
    "文三路",
    "星湖街",
    "科技园南路",
    "天府大道",
    "光谷大道",
    "香港东路",
    "科技路",
    "天童南路",
    "中山路",
    "第三大街",
]
_US = [
    ("Seattle", "WA", "98101"),
    ("Austin", "TX", "73301"),
    ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"),
    ("Chicago", "IL", "60601"),
    ("Portland", "OR", "97201"),
]
_STREETS = ["Pine St", "Main Street", "Elm Ave", "Harbor Blvd", "Lake Dr", "Market St"]
_PRODUCTS = [
    "智能温控器 T3",
    "不锈钢保温杯 500ml",
    "无线蓝牙耳机 Pro",
    "有机绿茶 250g",
    "工业网关 G200",
    "空气净化滤芯",
    "儿童安全座椅",
    "LED 平板灯 600x600",
    "电动螺丝刀套装",
    "真丝枕套",
]
_EN_PRODUCTS = [
    "Ceramic Mug",
    "Linen Shirt",
    "Trail Backpack",
    "Desk Lamp",
    "Wool Scarf",
    "Espresso Beans 1kg",
]
_REMARKS = [
    "请尽快发货",
    "周末不收货",
    "老客户，优先处理",
    "需要开专票",
    "节前送达",
    "",
    "电话联系后再送",
    "月结客户",
]
_USCC_ALPHA = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_W = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _rng(kind: str, i: int) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{kind}:{i}".encode()).hexdigest()[:12], 16))


def uscc(i: int) -> str:
    """A unified social credit code with a valid check character."""
    r = _rng("uscc", i)
    div = _PLACES[i % len(_PLACES)][3][:2] + "0" + str(r.randint(100, 999))
    body = "91" + div + "".join(r.choice(_USCC_ALPHA[:10] + "ABCDEFGH") for _ in range(9))
    total = sum(_USCC_ALPHA.index(c) * w for c, w in zip(body, _USCC_W, strict=True))
    return body + _USCC_ALPHA[(31 - total % 31) % 31]


def company_zh(i: int) -> str:
    c = _COMPANY[i % len(_COMPANY)]
    return f"{c[0]}{c[1]}{c[2]}{_FORM[(i // len(_COMPANY)) % 3]}"


def person_zh(i: int) -> str:
    r = _rng("pz", i)
    return r.choice(_SURNAME) + r.choice(_GIVEN)


def mobile(i: int) -> str:
    r = _rng("mob", i)
    return r.choice(["138", "139", "186", "135", "159", "177", "188"]) + f"{r.randint(0, 99999999):08d}"


def epoch(i: int, lo: int = 1_640_995_200, hi: int = 1_733_011_200) -> int:
    return _rng("ts", i).randint(lo, hi)


def _iso(ts: int, sep: str = "T", tz: str = "") -> str:
    import datetime as dt

    d = dt.datetime.fromtimestamp(ts, dt.UTC) + dt.timedelta(hours=8)
    return d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + tz


def _date(ts: int, fmt: str = "%Y-%m-%d") -> str:
    import datetime as dt

    return (dt.datetime.fromtimestamp(ts, dt.UTC) + dt.timedelta(hours=8)).strftime(fmt)


def _money(i: int, lo: float, hi: float, salt: str) -> float:
    return round(_rng("m" + salt, i).uniform(lo, hi), 2)


Gen = Callable[[int], Any]

KINDS: dict[str, Gen] = {
    "company_zh": company_zh,
    "company_short_zh": lambda i: _COMPANY[i % len(_COMPANY)][1] + _COMPANY[i % len(_COMPANY)][2][:2],
    "company_en": lambda i: f"{_EN_CO[i % len(_EN_CO)]} {_EN_SUFFIX[(i // 3) % len(_EN_SUFFIX)]}",
    "person_zh": person_zh,
    "first_en": lambda i: _FIRST[i % len(_FIRST)],
    "last_en": lambda i: _LAST[(i * 7) % len(_LAST)],
    "person_en": lambda i: f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 7) % len(_LAST)]}",
    "mobile": mobile,
    "mobile_intl": lambda i: "+86 " + mobile(i),
    "landline": lambda i: (
        f"0{_rng('ll', i).choice(['571', '512', '755', '28', '27'])}-{_rng('ll2', i).randint(10000000, 89999999)}"
    ),
    "phone_us": lambda i: f"+1 {_rng('pu', i).randint(200, 989)}-555-{_rng('pu2', i).randint(1000, 9999)}",
    "email": lambda i: (
        f"{['sales', 'info', 'li.wei', 'zhang', 'buyer', 'ops'][i % 6]}{i}@{_COMPANY[i % len(_COMPANY)][1] and ['yunqi', 'hengrun', 'wl', 'shujin', 'jc-env', 'haiyue'][i % 6]}.com.cn"
    ),
    "email_en": lambda i: (
        f"{_FIRST[i % len(_FIRST)].lower()}.{_LAST[(i * 7) % len(_LAST)].lower()}@{_EN_CO[i % len(_EN_CO)].lower().replace(' ', '')}.com"
    ),
    "url": lambda i: (
        f"https://www.{['yunqi', 'hengrun', 'qhwl', 'shujin', 'jcep', 'haiyue'][i % 6]}{i % 9}.cn"
    ),
    "uscc": uscc,
    "province": lambda i: _PLACES[i % len(_PLACES)][0],
    "city": lambda i: _PLACES[i % len(_PLACES)][1],
    "district": lambda i: _PLACES[i % len(_PLACES)][2],
    "postcode": lambda i: _PLACES[i % len(_PLACES)][3],
    "street_zh": lambda i: f"{_ROADS[i % len(_ROADS)]}{_rng('no', i).randint(1, 999)}号",
    "address_zh": lambda i: (
        f"{_PLACES[i % len(_PLACES)][0]}{_PLACES[i % len(_PLACES)][1]}{_PLACES[i % len(_PLACES)][2]}{_ROADS[i % len(_ROADS)]}{_rng('no', i).randint(1, 999)}号"
    ),
    "city_en": lambda i: _US[i % len(_US)][0],
    "state_en": lambda i: _US[i % len(_US)][1],
    "zip_en": lambda i: _US[i % len(_US)][2],
    "street_en": lambda i: f"{_rng('sn', i).randint(10, 9999)} {_STREETS[i % len(_STREETS)]}",
    "country2": lambda i: ["CN", "CN", "CN", "US", "DE", "SG"][i % 6],
    "country_zh": lambda i: ["中国", "中国", "中国", "美国", "德国"][i % 5],
    "currency": lambda i: ["CNY", "CNY", "USD", "EUR", "HKD"][i % 5],
    "money": lambda i: _money(i, 50, 20000, "a"),
    "money_big": lambda i: _money(i, 20000, 3_000_000, "b"),
    "money_small": lambda i: _money(i, 0, 80, "c"),
    "money_str": lambda i: f"{_money(i, 50, 20000, 'a'):.2f}",
    "money_fen": lambda i: int(_money(i, 50, 20000, "a") * 100),
    "wan": lambda i: round(_money(i, 20000, 3_000_000, "b") / 10000, 2),
    "qty": lambda i: _rng("q", i).randint(1, 12),
    "int_small": lambda i: _rng("is", i).randint(0, 30),
    "headcount": lambda i: _rng("hc", i).choice([12, 45, 80, 150, 320, 600, 1200, 5000]),
    "percent": lambda i: round(_rng("pc", i).uniform(0, 100), 1),
    "epoch_s": lambda i: epoch(i),
    "epoch_ms": lambda i: epoch(i) * 1000,
    "epoch_s2": lambda i: epoch(i + 500),
    "epoch_ms2": lambda i: epoch(i + 500) * 1000,
    "dt_space": lambda i: _iso(epoch(i), " "),
    "dt_space2": lambda i: _iso(epoch(i + 500), " "),
    "dt_iso": lambda i: _iso(epoch(i), "T", "+08:00"),
    "dt_iso2": lambda i: _iso(epoch(i + 500), "T", "+08:00"),
    "dt_z": lambda i: _iso(epoch(i) - 8 * 3600, "T", "Z"),
    "dt_z2": lambda i: _iso(epoch(i + 500) - 8 * 3600, "T", "Z"),
    "date": lambda i: _date(epoch(i)),
    "date2": lambda i: _date(epoch(i + 500)),
    "date_future": lambda i: _date(epoch(i, 1_735_689_600, 1_767_225_600)),
    "dt_future": lambda i: _iso(epoch(i, 1_735_689_600, 1_767_225_600), " "),
    "date_slash": lambda i: _date(epoch(i), "%m/%d/%Y"),
    "uuid": lambda i: str(__import__("uuid").UUID(int=_rng("uu", i).getrandbits(128))),
    "uuid2": lambda i: str(__import__("uuid").UUID(int=_rng("uu2", i).getrandbits(128))),
    "hex32": lambda i: f"{_rng('h32', i).getrandbits(128):032x}",
    "int_id": lambda i: 10000 + i * 37,
    "int_id2": lambda i: 880000 + i * 13,
    "int_id3": lambda i: 52000 + i * 7,
    "big_id": lambda i: 3_700_000_000_000_000_000 + i * 7919,
    "order_no": lambda i: f"{_date(epoch(i), '%y%m%d')}{_rng('on', i).randint(10**9, 10**10 - 1)}",
    "order_no2": lambda i: f"SO{_date(epoch(i), '%Y%m')}{i:05d}",
    "cust_code": lambda i: f"C{i:05d}",
    "emp_code": lambda i: f"E{1000 + i * 3}",
    "staff_id": lambda i: f"ou_{_rng('ou', i).getrandbits(64):016x}",
    "user_id_dt": lambda i: f"{_rng('dt', i).randint(10**15, 10**16)}",
    "sku": lambda i: f"SKU-{_rng('sku', i).randint(10000, 99999)}",
    "product_zh": lambda i: _PRODUCTS[i % len(_PRODUCTS)],
    "product_en": lambda i: _EN_PRODUCTS[i % len(_EN_PRODUCTS)],
    "remark_zh": lambda i: _REMARKS[i % len(_REMARKS)] or "无",
    "text_en": lambda i: [
        "Key account, quarterly review",
        "Prefers email",
        "Met at trade fair",
        "Net 30 agreed",
    ][i % 4],
    "bool": lambda i: i % 3 == 0,
    "bool01": lambda i: i % 3 == 0 and 1 or 0,
    "ip": lambda i: f"10.{i % 20}.{(i * 7) % 250}.{(i * 13) % 250}",
    "mac": lambda i: ":".join(f"{(i * k * 37) % 256:02X}" for k in range(1, 7)),
    "imei": lambda i: f"86{_rng('imei', i).randint(10**12, 10**13 - 1)}",
    "lat": lambda i: round(22.5 + (i % 12) * 1.37, 6),
    "lng": lambda i: round(104.0 + (i % 12) * 1.71, 6),
    "temp": lambda i: round(_rng("t", i).uniform(18, 75), 1),
    "hours": lambda i: _rng("h", i).randint(100, 30000),
    "version": lambda i: f"v{1 + i % 3}.{i % 7}.{i % 4}",
    "device_name": lambda i: f"GW-{_PLACES[i % len(_PLACES)][1][:2]}-{i:03d}",
    "model_code": lambda i: ["TY-WF3", "TY-ZB2", "TY-BLE1", "GW200"][i % 4],
    "dept_zh": lambda i: ["华东销售部", "华南大区", "渠道部", "大客户部", "售后服务部"][i % 5],
    "title_zh": lambda i: ["销售经理", "采购主管", "总经理", "工程师", "财务"][i % 5],
    "title_en": lambda i: ["Sales Manager", "Buyer", "CEO", "Engineer", "Accountant"][i % 5],
    "tracking": lambda i: f"SF{_rng('sf', i).randint(10**11, 10**12 - 1)}",
    "carrier": lambda i: ["顺丰速运", "中通快递", "圆通速递", "京东物流"][i % 4],
    "avatar": lambda i: (
        f"https://s3-imfile.feishucdn.com/static-resource/v1/v2_{_rng('av', i).getrandbits(48):012x}~?image_size=72x72"
    ),
    "tender_title": lambda i: (
        f"{_PLACES[i % len(_PLACES)][1]}{['人民医院', '第一中学', '城投集团', '水务公司'][i % 4]}{['医疗设备', '智慧校园', '环卫车辆', '监控系统'][i % 4]}采购项目"
    ),
    "tender_no": lambda i: f"ZB{_date(epoch(i), '%Y')}-{_PLACES[i % len(_PLACES)][3][:3]}-{i:04d}",
    "org_zh": lambda i: (
        f"{_PLACES[i % len(_PLACES)][1]}{['人民医院', '第一中学', '城投集团', '水务公司'][i % 4]}"
    ),
    "agency_zh": lambda i: ["浙江省成套招标代理有限公司", "江苏省国际招标公司", "广东元正招标采购有限公司"][
        i % 3
    ],
}

ENUMS: dict[str, list[Any]] = {}


def values(kind: str, start: int, n: int = 6) -> list[Any]:
    """``n`` distinct non-empty values of a kind for entities ``start, start+1, …``."""
    if kind.startswith("enum:"):
        opts = kind[5:].split("|")
        return opts[: max(2, min(len(opts), n))]
    if kind == "none":
        return []
    gen = KINDS[kind]
    out: list[Any] = []
    for i in range(start, start + 60):
        v = gen(i)
        if v not in out and v != "":
            out.append(v)
        if len(out) >= n:
            break
    return out
