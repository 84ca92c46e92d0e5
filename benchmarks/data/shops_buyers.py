"""A labelled set of shop buyers for identity resolution, generated (never hand-labelled).

Deliberately independent of the matcher (``connectors/kit/identity.py``): its own name, street and
carrier tables, its own full-width conversion and masking, no ``phonenumbers``. Each *person* has a
CRM record (70 %) and 0–3 shop records (Shopify, Youzan) written the ways real shops write them:

* phones: ``+8613812345678``, ``+86 138 1234 5678``, ``8613812345678``, ``138-1234-5678``, full-width
  digits, and Youzan's masked ``138****5678`` (always masked on Youzan records);
* e-mails in another case, with a one-letter slip, or missing; names with a one-character typo,
  a space inside, or missing (Youzan nicknames are not names: the name is then left out);
* addresses with spaces, full-width digits, or ``號``; a person who moved (a new address);
* the hard negatives: households (two to four people at one address, same surname, sometimes sharing a
  phone), namesakes (a common name in another city), and masked twins (two people whose numbers agree
  on the first three and last four digits).

``generate(n_persons, seed)`` returns records ``{"key", "person", "source", "name", "phone", "email",
"address"}``; ``person`` is the label.
"""

from __future__ import annotations

import random
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志鹏辉飞宇浩然晨欣怡子轩梓涵一诺雨桐思远佳琪俊杰文博嘉怡"
COMMON_NAMES = ("王伟", "李娜", "张伟", "王芳", "刘洋", "李静", "张敏", "王磊", "刘伟", "陈静")
CITIES = (
    ("上海市", "浦东新区", "021"),
    ("北京市", "朝阳区", "010"),
    ("广东省深圳市", "南山区", "0755"),
    ("浙江省杭州市", "西湖区", "0571"),
    ("江苏省南京市", "鼓楼区", "025"),
    ("四川省成都市", "武侯区", "028"),
    ("湖北省武汉市", "洪山区", "027"),
    ("陕西省西安市", "雁塔区", "029"),
)
STREETS = (
    "人民路",
    "中山路",
    "解放路",
    "建设路",
    "和平路",
    "新华路",
    "长江路",
    "光明街",
    "文化路",
    "科技园路",
)
ESTATES = ("阳光花园", "金色家园", "绿地小区", "万科城", "翠湖苑", "碧桂园", "幸福里", "锦绣江南")
CARRIERS = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "158",
    "159",
    "186",
    "188",
    "177",
)
DOMAINS = ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "0" <= c <= "9" else c for c in text)


def _mobile(r: random.Random) -> str:
    return r.choice(CARRIERS) + "".join(r.choice("0123456789") for _ in range(8))


def _name(r: random.Random, surname: str | None = None) -> str:
    given = r.choice(GIVEN) + (r.choice(GIVEN) if r.random() < 0.6 else "")
    return (surname or r.choice(SURNAMES)) + given


def _address(r: random.Random, city: tuple[str, str, str]) -> str:
    return (
        f"{city[0]}{city[1]}{r.choice(STREETS)}{r.randrange(1, 999)}号"
        f"{r.choice(ESTATES)}{r.randrange(1, 30)}栋{r.randrange(1, 30)}0{r.randrange(1, 5)}室"
    )


def _email(r: random.Random) -> str:
    local = "".join(r.choice(LETTERS) for _ in range(r.randrange(5, 10))) + str(r.randrange(10, 99))
    return f"{local}@{r.choice(DOMAINS)}"


def _phone_variant(r: random.Random, mobile: str) -> str:
    shapes = (
        f"+86{mobile}",
        f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}",
        f"86{mobile}",
        f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}",
        mobile,
        _full_width(mobile),
        f"＋86{_full_width(mobile)}",
        f"(+86) {mobile}",
    )
    return r.choice(shapes)


def _typo(r: random.Random, text: str, alphabet: str) -> str:
    i = r.randrange(len(text))
    return text[:i] + r.choice([c for c in alphabet if c != text[i]]) + text[i + 1 :]


def _email_variant(r: random.Random, email: str) -> str | None:
    x = r.random()
    if x < 0.15:
        return None
    if x < 0.35:
        return email.upper() if r.random() < 0.5 else email.capitalize()
    if x < 0.42:
        local, _, domain = email.partition("@")
        return f"{_typo(r, local, LETTERS)}@{domain}"
    return email


def _name_variant(r: random.Random, name: str) -> str | None:
    x = r.random()
    if x < 0.08:
        return _typo(r, name, GIVEN) if len(name) > 1 else name
    if x < 0.18:
        return f"{name[0]} {name[1:]}"
    return name


def _address_variant(r: random.Random, address: str) -> str:
    x = r.random()
    if x < 0.2:
        return address.replace("号", "号 ").replace("栋", "栋 ")
    if x < 0.35:
        return _full_width(address)
    if x < 0.42:
        return address.replace("号", "號")
    return address


def generate(n_persons: int = 2000, seed: int = 12) -> list[dict[str, Any]]:
    """``n_persons`` people (households, namesakes and masked twins included) and their records."""
    r = random.Random(seed)
    persons: list[dict[str, Any]] = []
    while len(persons) < n_persons:
        city = r.choice(CITIES)
        if r.random() < 0.2:  # a household: 2–4 people, one address, one surname, sometimes one phone
            surname, address = r.choice(SURNAMES), _address(r, city)
            shared = _mobile(r) if r.random() < 0.3 else None
            for _ in range(r.randrange(2, 5)):
                persons.append(
                    {
                        "name": _name(r, surname),
                        "mobile": _mobile(r),
                        "shared": shared,
                        "email": _email(r),
                        "address": address,
                        "city": city,
                    }
                )
        else:
            persons.append(
                {
                    "name": _name(r),
                    "mobile": _mobile(r),
                    "shared": None,
                    "email": _email(r),
                    "address": _address(r, city),
                    "city": city,
                }
            )
    persons = persons[:n_persons]
    for p in r.sample(persons, n_persons // 20):  # namesakes: a common name, elsewhere
        p["name"] = r.choice(COMMON_NAMES)
    for a, b in zip(*[iter(r.sample(persons, n_persons // 10))] * 2, strict=False):  # masked twins
        b["mobile"] = a["mobile"][:3] + "".join(r.choice("0123456789") for _ in range(4)) + a["mobile"][7:]
    records: list[dict[str, Any]] = []
    for pid, p in enumerate(persons):
        if r.random() < 0.7:  # most buyers are already in the CRM; the rest are new customers
            records.append(
                {
                    "key": f"crm:{pid}",
                    "person": pid,
                    "source": "crm",
                    "name": p["name"],
                    "phone": p["mobile"],
                    "email": p["email"] if r.random() < 0.7 else None,
                    "address": p["address"],
                }
            )
        for n in range(r.choice((0, 1, 1, 1, 2, 2, 3))):
            source = "youzan" if r.random() < 0.4 else "shopify"
            mobile = p["shared"] if p["shared"] and r.random() < 0.5 else p["mobile"]
            moved = r.random() < 0.1
            address = _address(r, p["city"]) if moved else _address_variant(r, p["address"])
            if source == "youzan":
                phone = f"{mobile[:3]}****{mobile[7:]}"
                name = _name_variant(r, p["name"]) if r.random() < 0.85 else None
                email = None
            else:
                phone = _phone_variant(r, mobile) if r.random() < 0.9 else None
                name = _name_variant(r, p["name"])
                email = _email_variant(r, p["email"])
            records.append(
                {
                    "key": f"{source}:{pid}:{n}",
                    "person": pid,
                    "source": source,
                    "name": name,
                    "phone": phone,
                    "email": email,
                    "address": address,
                }
            )
    r.shuffle(records)
    # The CRM is there first (the shop buyers are matched against it and each other).
    records.sort(key=lambda rec: rec["source"] != "crm")
    return records
