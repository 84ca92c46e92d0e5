"""The real-time path: WeCom callbacks → ``tongbu serve`` → CRM hub.

A forged, tampered, stale or replayed callback changes nothing; genuine ones are applied once, in
order per contact, bursts coalesced into one fetch; failures retry; pending events survive a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from connectors.kit.server import BackgroundServer
from connectors.wecom.crypto import WXBizMsgCrypt
from connectors.wecom.hub import contact_key
from connectors.wecom.simulator import WeComSimulator
from tests.helpers.wecom import serve_config
from tongbu.db import get_engine
from tongbu.hub.store import HubStore
from tongbu.inbox import ensure_inbox, event_inbox
from tongbu.serve.app import build_app
from tongbu.serve.observers import DagsterObserver
from tongbu.state.models import QuarantinedRecord


@pytest.fixture
def sim() -> Iterator[WeComSimulator]:
    s = WeComSimulator(records=300, seed=21)
    s.start()
    yield s
    s.stop()


def event_xml(
    sim: WeComSimulator, ext: str, change: str = "edit_external_contact", created: int | None = None
) -> str:
    userid = (sim.contact_detail(ext) or {"follow_user": [{"userid": sim.users[0]["userid"]}]})[
        "follow_user"
    ][0]["userid"]
    return (
        f"<xml><ToUserName><![CDATA[{sim.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID><ExternalUserID><![CDATA[{ext}]]></ExternalUserID></xml>"
    )


def signed(
    sim: WeComSimulator, xml: str, *, token: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    cred = sim.credentials()
    crypt = WXBizMsgCrypt(token or cred["callback_token"], cred["encoding_aes_key"], cred["corp_id"])
    msg = crypt.encrypt_message(xml, timestamp=timestamp if timestamp is not None else int(time.time()))
    return {"params": msg.query, "content": msg.body.encode()}


def contact_row(ext: str) -> dict[str, Any] | None:
    engine = get_engine()
    with engine.connect() as conn:
        return HubStore(engine).get(conn, "contacts", "wecom", ext)


def inbox_rows() -> list[dict[str, Any]]:
    engine = get_engine()
    ensure_inbox(engine)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(event_inbox)).mappings()]


def test_url_verification(sim: WeComSimulator) -> None:
    app = build_app(serve_config(sim))
    cred = sim.credentials()
    crypt = WXBizMsgCrypt(cred["callback_token"], cred["encoding_aes_key"], cred["corp_id"])
    with TestClient(app) as client:
        msg = crypt.echostr("1616140317555161061")
        r = client.get("/hooks/wecom", params={**msg.query, "echostr": msg.encrypt})
        assert r.status_code == 200 and r.text == "1616140317555161061"  # plaintext, no quotes or newline
        forged = WXBizMsgCrypt("not-the-token", cred["encoding_aes_key"], cred["corp_id"]).echostr("1")
        assert (
            client.get("/hooks/wecom", params={**forged.query, "echostr": forged.encrypt}).status_code == 403
        )


def test_forged_tampered_stale_and_malformed_callbacks_change_nothing(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    app = build_app(serve_config(sim))
    with TestClient(app) as client:
        forged = signed(sim, event_xml(sim, ext), token="guessed-token")
        assert client.post("/hooks/wecom", **forged).status_code == 403
        good = signed(sim, event_xml(sim, ext))
        tampered_body = good["content"].replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA", 1)
        assert client.post("/hooks/wecom", params=good["params"], content=tampered_body).status_code == 403
        tampered_nonce = {**good["params"], "nonce": good["params"]["nonce"] + "1"}
        assert client.post("/hooks/wecom", params=tampered_nonce, content=good["content"]).status_code == 403
        stale = signed(sim, event_xml(sim, ext), timestamp=int(time.time()) - 3600)
        assert client.post("/hooks/wecom", **stale).status_code == 403
        assert client.post("/hooks/wecom", content=good["content"]).status_code == 400
        other_corp = WXBizMsgCrypt(
            sim.credentials()["callback_token"], sim.credentials()["encoding_aes_key"], "wwother"
        )
        msg = other_corp.encrypt_message(event_xml(sim, ext))
        assert client.post("/hooks/wecom", params=msg.query, content=msg.body.encode()).status_code == 403
        assert client.post("/hooks/wecom", params=good["params"], content=b"x" * 70_000).status_code == 413
        app.state.processor.drain(5)
        assert app.state.processor.metrics.counts["rejected"] == 7
    assert inbox_rows() == [] and contact_row(ext) is None
    assert sim.calls["externalcontact/get"] == 0


def test_a_replayed_callback_is_acknowledged_but_applied_once(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    app = build_app(serve_config(sim))
    request = signed(sim, event_xml(sim, ext))
    with TestClient(app) as client:
        assert client.post("/hooks/wecom", **request).text == "success"
        app.state.processor.drain(10)
        first = contact_row(ext)
        assert first is not None and first["deleted_at"] is None
        # The customer's data changes without a callback; a replay of the old callback must not apply it.
        sim.edit_external_contact(ext, remark="改了备注", callback=False)
        for _ in range(3):
            assert client.post("/hooks/wecom", **request).text == "success"
        app.state.processor.drain(10)
        assert app.state.processor.metrics.counts["duplicates"] == 3
    assert contact_row(ext)["remark"] == first["remark"] and contact_row(ext)["row_hash"] == first["row_hash"]
    assert len(inbox_rows()) == 1 and sim.calls["externalcontact/get"] == 1


def test_simulator_callbacks_flow_into_the_hub(sim: WeComSimulator) -> None:
    app = build_app(serve_config(sim))
    with BackgroundServer(app) as server:
        sim.set_callback(server.url + "/hooks/wecom")  # the echostr handshake an admin triggers
        ext = sim.add_external_contact(
            sim.users[1]["userid"],
            name="郑海燕",
            position="采购经理",
            corp_full_name="宁波远航包装材料有限公司",
            corp_name="远航包装",
            type=2,
            remark="郑经理",
            tags=[sim.tag_id("客户等级", "B类客户")],
        )
        sim.add_external_contact(sim.users[2]["userid"], ext, remark="海燕姐", tags=[])
        assert sim.wait_callbacks(10) and app.state.processor.drain(10)
        row = contact_row(ext)
        assert (
            row["name"] == "郑海燕"
            and row["title"] == "采购经理"
            and row["account_ref"] == "宁波远航包装材料有限公司"
        )
        assert row["owner"] == sim.users[1]["userid"] and row["tags"] == ["B类客户"]
        assert row["extra"]["follow_userids"] == sorted([sim.users[1]["userid"], sim.users[2]["userid"]])
        engine = get_engine()
        with engine.connect() as conn:
            assert (
                HubStore(engine).get(conn, "accounts", "wecom", "宁波远航包装材料有限公司")["short_name"]
                == "远航包装"
            )

        sim.edit_external_contact(
            ext, sim.users[1]["userid"], remark="郑总", add_tags=[sim.tag_id("意向产品", "工业软件")]
        )
        sim.del_follow_user(ext, sim.users[2]["userid"])  # the customer removed one rep
        assert sim.wait_callbacks(10) and app.state.processor.drain(10)
        row = contact_row(ext)
        assert row["remark"].startswith("郑总") and set(row["tags"]) == {"B类客户", "工业软件"}
        assert row["extra"]["follow_userids"] == [sim.users[1]["userid"]] and row["deleted_at"] is None

        sim.del_external_contact(ext, sim.users[1]["userid"])  # the last relation: the contact is gone
        assert sim.wait_callbacks(10) and app.state.processor.drain(10)
        assert contact_row(ext)["deleted_at"] is not None
        statuses = [r["status"] for r in inbox_rows()]
        assert statuses.count("applied") == len(statuses) == 5
        snap = app.state.processor.metrics.snapshot()
        assert snap["latency_ms"]["n"] >= 3 and snap["latency_ms"]["p99"] < 1000


def test_bursts_for_one_contact_coalesce_into_one_fetch(sim: WeComSimulator) -> None:
    app = build_app(serve_config(sim, coalesce_ms=1500))
    ext = next(sim.external_userids())
    with TestClient(app) as client:
        for k in range(5):
            sim.edit_external_contact(ext, remark=f"第{k}次", callback=False)
            assert client.post("/hooks/wecom", **signed(sim, event_xml(sim, ext))).status_code == 200
        other = list(sim.external_userids())[7]
        client.post("/hooks/wecom", **signed(sim, event_xml(sim, other)))
        app.state.processor.drain(10)
        counts = app.state.processor.metrics.counts
    assert sim.calls["externalcontact/get"] == 2  # one per contact, not one per event
    assert counts["coalesced"] == 4 and counts["applied"] == 6
    assert contact_row(ext)["remark"].startswith("第4次")
    assert {r["status"] for r in inbox_rows()} == {"applied"}


def test_unmappable_contact_is_quarantined_not_lost(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    sim.update_profile(ext, name="   ")  # the mapping requires a name
    app = build_app(serve_config(sim))
    with TestClient(app) as client:
        client.post("/hooks/wecom", **signed(sim, event_xml(sim, ext)))
        app.state.processor.drain(10)
    assert contact_row(ext) is None
    engine = get_engine()
    q = QuarantinedRecord.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(q.c.source_id, q.c.stage, q.c.reason, q.c.pipeline)).all()
    assert [(r.source_id, r.stage, r.pipeline) for r in rows] == [(ext, "mapping", "wecom_events")]
    assert "name" in rows[0].reason
    assert [r["status"] for r in inbox_rows()] == ["quarantined"]


def test_failed_fetches_retry_and_pending_events_survive_a_restart(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    engine = get_engine()
    ensure_inbox(engine)
    # An event a previous server stored but never applied (killed right after the ack).
    with engine.begin() as conn:
        conn.execute(
            event_inbox.insert().values(
                tenant_id="default",
                source="wecom",
                dedup_key="left-over",
                record_key=contact_key(ext),
                kind="change_external_contact/edit_external_contact",
                payload={},
                received_at=time.time(),
                status="pending",
                attempts=0,
            )
        )
    sim.set_faults("busy=1")  # WeCom answers -1 (system busy) to everything for a while
    app = build_app(serve_config(sim, source_config={"max_retries": 1}))
    app.state.processor.retry_base_s = 0.05
    with TestClient(app):
        # Wait for the processor's first failed attempt (a fixed sleep raced a busy CI machine).
        deadline = time.monotonic() + 20
        while app.state.processor.metrics.counts["apply_errors"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert contact_row(ext) is None and app.state.processor.metrics.counts["apply_errors"] >= 1
        sim.set_faults(None)
        assert app.state.processor.drain(10)
    assert contact_row(ext) is not None
    assert [r["status"] for r in inbox_rows()] == ["applied"]


def test_applied_events_are_reported_to_dagster(sim: WeComSimulator) -> None:
    instance = dg.DagsterInstance.ephemeral()
    observer = DagsterObserver(instance, interval=0.05)
    app = build_app(serve_config(sim), observers=[observer])
    exts = list(sim.external_userids())[:3]
    with TestClient(app) as client:
        for ext in exts:
            client.post("/hooks/wecom", **signed(sim, event_xml(sim, ext)))
        app.state.processor.drain(10)
    # closing the app stopped the observer, which flushed what it held (in one or more batches)
    records = instance.fetch_materializations(dg.AssetKey(["crm", "contacts"]), limit=10).records
    metas = [r.asset_materialization.metadata for r in records]
    assert (
        metas
        and sum(md["events"].value for md in metas) == 3
        and sum(md["written"].value for md in metas) == 3
    )
    reported = sorted(d["record"] for md in metas for d in md["events_detail"].value)
    assert reported == sorted(contact_key(e) for e in exts)
    observations = instance.fetch_observations(dg.AssetKey(["wecom", "external_contacts"]), limit=10)
    assert observations.records


def test_only_new_events_reach_the_inbox_under_concurrent_retries(sim: WeComSimulator) -> None:
    """WeCom resends the same message when we are slow: however many copies arrive, one row, one apply."""
    app = build_app(serve_config(sim))
    request = signed(sim, event_xml(sim, next(sim.external_userids())))
    with TestClient(app) as client:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: client.post("/hooks/wecom", **request).status_code, range(16)))
        app.state.processor.drain(10)
    assert codes == [200] * 16
    engine = get_engine()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_inbox)).scalar_one() == 1
    assert sim.calls["externalcontact/get"] == 1


# -- serve edges (issue 17 items 1 and 8) -------------------------------------------------------------
class _Lines:
    """Collects the log records of the serve and uvicorn loggers (uvicorn's do not reach caplog)."""

    def __init__(self) -> None:
        import logging

        self.records: list[logging.LogRecord] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]
        self.loggers = [logging.getLogger(n) for n in ("tongbu.serve", "uvicorn.error", "uvicorn")]

    def __enter__(self) -> _Lines:
        for lg in self.loggers:
            lg.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for lg in self.loggers:
            lg.removeHandler(self.handler)

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)

    def assert_no_traceback(self) -> None:
        assert not [r for r in self.records if r.exc_info], self.text
        assert "Exception in ASGI application" not in self.text and "Traceback" not in self.text


def test_a_signed_callback_whose_content_is_not_utf8_is_a_clear_400(sim: WeComSimulator) -> None:
    cred = sim.credentials()
    crypt = WXBizMsgCrypt(cred["callback_token"], cred["encoding_aes_key"], cred["corp_id"])
    msg = crypt.encrypt_message("x", timestamp=int(time.time()))
    encrypt = crypt.encrypt(b"<xml><Event>\xff\xfe\xc3</Event></xml>")
    body = msg.body.replace(msg.encrypt, encrypt).encode()
    query = {**msg.query, "msg_signature": crypt.sign(msg.timestamp, msg.nonce, encrypt)}
    app = build_app(serve_config(sim))
    with _Lines() as lines, TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/hooks/wecom", params=query, content=body)
        assert r.status_code == 400 and "not UTF-8" in r.text
        # well-formed UTF-8 but not XML: also the sender's fault, also 400
        encrypt = crypt.encrypt("not <xml")
        query = {**msg.query, "msg_signature": crypt.sign(msg.timestamp, msg.nonce, encrypt)}
        r = client.post("/hooks/wecom", params=query, content=msg.body.replace(msg.encrypt, encrypt).encode())
        assert r.status_code == 400
    lines.assert_no_traceback()
    assert len([r for r in lines.records if "rejected" in r.getMessage()]) == 2
    assert inbox_rows() == []


def test_head_on_a_hook_is_not_a_delivery(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    good = signed(sim, event_xml(sim, ext))
    app = build_app(serve_config(sim))
    with TestClient(app) as client:
        r = client.head("/hooks/wecom", params=good["params"])
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
        assert (
            client.request("PUT", "/hooks/wecom", params=good["params"], content=good["content"]).status_code
            == 405
        )
    assert inbox_rows() == [] and sim.calls["externalcontact/get"] == 0


def test_query_parameters_are_checked_strictly_before_the_body(sim: WeComSimulator) -> None:
    ext = next(sim.external_userids())
    good = signed(sim, event_xml(sim, ext))
    now = str(int(time.time()))
    app = build_app(serve_config(sim))
    with TestClient(app) as client:
        for bad, code in (
            ({"timestamp": "١٧٠٠٠٠٠٠٠٠"}, 400),  # Arabic-Indic digits int() would accept
            ({"timestamp": " " + now}, 400),
            ({"nonce": "n" * 500}, 400),
            ({"msg_signature": "0"}, 403),
        ):
            r = client.post("/hooks/wecom", params={**good["params"], **bad}, content=good["content"])
            assert r.status_code == code, (bad, r.text)
        r = client.post(
            "/hooks/wecom",
            params=good["params"],
            content=good["content"],
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 415
        assert client.post("/hooks/wecom", params=good["params"], content=good["content"]).status_code == 200
        # a Content-Length that is not a number is refused before reading
        r = client.post("/hooks/wecom", params=good["params"], content=b"x", headers={"content-length": "-1"})
        assert r.status_code in (400, 413)


def test_the_freeze_body_is_refused_while_healthz_stays_responsive(sim: WeComSimulator) -> None:
    import threading

    import httpx

    app = build_app(serve_config(sim))
    body = ("<Encrypt>" + " " * 3_000 + "x").encode()  # the reproduction
    params = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "1"}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answered: list[int] = []
        t = threading.Thread(
            target=lambda: answered.append(
                client.post("/hooks/wecom", params=params, content=body).status_code
            )
        )
        t.start()
        t.join(5)  # the old regex spent ~8 s on this body, on the event loop
        assert answered == [403]
        assert client.get("/healthz").status_code == 200


def test_a_sender_hanging_up_mid_body_logs_one_line_and_no_traceback(sim: WeComSimulator) -> None:
    import socket

    app = build_app(serve_config(sim))
    with _Lines() as lines, BackgroundServer(app) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(
            b"POST /hooks/wecom?msg_signature=0&timestamp=1&nonce=1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<xml><Encrypt>abc"
        )
        time.sleep(0.3)
        sock.close()
        deadline = time.monotonic() + 5
        while app.state.processor.metrics.counts["disconnected"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.processor.metrics.counts["disconnected"] == 1
    lines.assert_no_traceback()
    assert len([r for r in lines.records if "hung up" in r.getMessage()]) == 1
    assert inbox_rows() == []
