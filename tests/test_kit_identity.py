"""Buyer identity resolution (connectors/kit/identity.py): evidence, decisions, and the hub's queue."""

from __future__ import annotations

from sqlalchemy import select

from connectors.kit.identity import Buyer, IdentityResolver, Matcher, decide_all, email_key, phone_key
from tongbu.db import get_engine
from tongbu.hub.models import BuyerLink
from tongbu.hub.store import HubStore


def test_phone_variants_normalise_to_one_number() -> None:
    same = [
        "13812345678",
        "+86 138 1234 5678",
        "8613812345678",
        "０08613812345678",
        "１３８１２３４５６７８",
        "(+86) 138-1234-5678",
        "＋86１３８１２３４５６７８",
    ]
    keys = {phone_key(p) for p in same}
    assert len(keys) == 1 and next(iter(keys)).full == "+8613812345678"  # type: ignore[union-attr]
    masked = phone_key("138****5678")
    assert masked is not None and masked.full is None and masked.masked == ("138", "5678")
    assert phone_key("138****56") is None and phone_key("not a phone") is None and phone_key("12345") is None
    assert email_key(" Li.Na@QQ.com ") == "li.na@qq.com" and email_key("li@na") is None


def _known() -> Matcher:
    m = Matcher()
    m.add(
        "p1",
        Buyer(
            "crm:1",
            name="王芳",
            phone="13812345678",
            email="wangfang@163.com",
            address="上海市浦东新区人民路100号阳光花园3栋201室",
        ),
    )
    m.add(
        "p2",
        Buyer("crm:2", name="王磊", phone="13987654321", address="上海市浦东新区人民路100号阳光花园3栋201室"),
    )
    return m


def test_a_masked_phone_never_merges_alone() -> None:
    m = _known()
    assert m.decide(Buyer("yz:1", phone="138****5678")).kind == "new"
    assert m.decide(Buyer("yz:2", name="王磊", phone="138****5678")).kind == "new"  # another person's name
    with_name = m.decide(Buyer("yz:3", name="王芳", phone="138****5678"))
    assert with_name.kind == "match" and with_name.ref == "p1"
    # A namesake whose number masks the same way: the masked phone cannot tell them apart.
    m.add("p3", Buyer("crm:3", name="王芳", phone="13800005678", address="北京市朝阳区建国路8号"))
    doubt = m.decide(Buyer("yz:4", name="王芳", phone="138****5678"))
    assert doubt.kind == "review" and {c[0] for c in doubt.candidates} == {"p1", "p3"}
    located = m.decide(
        Buyer("yz:5", name="王芳", phone="138****5678", address="上海市浦东新区人民路100号 阳光花园3栋201室")
    )
    assert located.kind == "match" and located.ref == "p1"


def test_full_phone_email_and_typos_match_but_a_household_does_not_merge() -> None:
    m = _known()
    assert m.decide(Buyer("s:1", name="王 芳", phone="+86 138 1234 5678")).ref == "p1"
    assert m.decide(Buyer("s:2", name="王芳", email="WangFang@163.com")).ref == "p1"
    # a slip in the surname of a two-character name, the rest agreeing
    assert m.decide(Buyer("s:5", name="汪芳", phone="13812345678")).ref == "p1"
    # two characters with another given name are another person, even with the same e-mail domain
    assert m.decide(Buyer("s:6", name="王方", email="wangfang2@163.com")).kind == "new"
    # Same household address, same surname, another given name and phone: another person.
    sibling = m.decide(
        Buyer("s:3", name="王强", phone="13700001111", address="上海市浦东新区人民路100号阳光花园3栋201室")
    )
    assert sibling.kind == "new"
    # A phone the household shares, with another name: a person must decide.
    shared = m.decide(Buyer("s:4", name="王强", phone="13812345678"))
    assert shared.kind in ("review", "new") and shared.ref is None


def test_decide_all_chains_new_buyers() -> None:
    out = decide_all(
        [Buyer("a", name="李娜", phone="13500000001"), Buyer("b", name="李娜", phone="+8613500000001")]
    )
    assert [d.kind for d in out] == ["new", "match"] and out[1].ref == "a"


def test_resolver_links_buyers_and_queues_doubtful_ones() -> None:
    engine = get_engine()
    store = HubStore(engine)
    with engine.begin() as conn:
        store.upsert(
            conn,
            "accounts",
            [{"source_id": "A1", "name": "宁波远航包装材料有限公司"}],
            source_system="kingdee",
        )
        store.upsert(
            conn,
            "contacts",
            [
                {"source_id": "w1", "name": "郑海燕", "mobile": "+8613811112222", "email": "zhy@yuanhang.cn"},
                {
                    "source_id": "w2",
                    "name": "陈静怡",
                    "mobile": "+8613933334444",
                    "address": "浙江省杭州市西湖区文三路1号",
                },
            ],
            source_system="wecom",
        )
        store.upsert(
            conn,
            "contacts",
            [
                {
                    "source_id": "101",
                    "name": "郑海燕",
                    "mobile": "138 1111 2222",
                    "extra": {"company": "宁波远航包装材料有限公司"},
                },
                # masked, the name with a slip, nothing else: a person decides
                {"source_id": "102", "name": "陈静宜", "mobile": "139****4444"},
                {"source_id": "103", "name": "赵云", "mobile": "+8615000000000"},  # nobody: new
            ],
            source_system="idshop",
        )
    resolver = IdentityResolver(engine)
    counts = resolver.resolve("idshop")
    assert counts == {"match": 1, "new": 1, "review": 1}
    assert resolver.resolve("idshop") == {"match": 0, "new": 0, "review": 0}  # idempotent
    links = {r.source_id: r for r in _links(engine)}
    with engine.connect() as conn:
        w1 = store.get(conn, "contacts", "wecom", "w1")
        own = store.get(conn, "contacts", "idshop", "103")
        account = store.get(conn, "accounts", "kingdee", "A1")
    assert links["101"].contact_id == w1["id"] and links["101"].rule == "phone"
    assert links["101"].account_id == account["id"]
    assert links["103"].contact_id == own["id"] and links["103"].rule == "new"
    queue = resolver.open_reviews("idshop")
    assert [q["source_id"] for q in queue] == ["102"] and queue[0]["candidates"][0]["reasons"]
    w2 = queue[0]["candidates"][0]["contact_id"]
    resolver.decide_review(queue[0]["id"], w2, reviewer="sales-ops")
    assert resolver.open_reviews("idshop") == []
    assert {r.source_id: r.contact_id for r in _links(engine)}["102"] == w2


def _links(engine):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(BuyerLink.__table__).where(BuyerLink.__table__.c.source_system == "idshop")
        ).all()
