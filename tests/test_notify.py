"""Alerts: the WeCom simulator's message/send and robot webhook, the channels, and once-only delivery."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from wechatpy.enterprise import WeChatClient

from connectors.kit.notify import Notification
from connectors.wecom.simulator import WeComSimulator
from pipelines.notify import Notifier
from pipelines.project import ProjectError, load_project
from tests.helpers.smtp import SmtpServer, free_port
from tests.helpers.vault import canary, key_text, new_key_source
from tests.helpers.wecom import point_wechatpy_at
from tongbu.db import get_engine
from tongbu.vault import Vault

pytestmark = pytest.mark.wecom_sim(records=30, seed=7)


def users(sim: WeComSimulator) -> list[str]:
    return [u["userid"] for u in sim.users][:3]


def project(tmp_path: Path, sim: WeComSimulator, channels: dict[str, Any]) -> Any:
    cred = sim.credentials()
    path = tmp_path / "tongbu.yaml"
    doc = {
        "connections": {
            "wecom": {
                "connector": "wecom",
                "config": {
                    "corp_id": cred["corp_id"],
                    "corp_secret": cred["corp_secret"],
                    "base_url": sim.base_url,
                },
            }
        },
        "alerts": {"channels": channels},
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_project(path)


def alert(key: str = "run-failed:42", **kw: Any) -> Notification:
    return Notification(subject="同步失败 kingdee_customers", body="run 42 failed: HTTP 500", key=key, **kw)


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Vault:
    source = new_key_source()
    monkeypatch.setenv("TONGBU_MASTER_KEY", key_text(source))
    return Vault.initialize(get_engine(), key_source=source)


def test_the_official_wechatpy_client_sends_app_messages_to_the_simulator(sim: WeComSimulator) -> None:
    cred = sim.credentials()
    client = point_wechatpy_at(WeChatClient(cred["corp_id"], cred["corp_secret"]), sim.base_url)
    a, b, _ = users(sim)
    answer = client.message.send_text(cred["agent_id"], [a, b, "nobody"], "设备故障：请处理")
    assert answer["errcode"] == 0 and answer["invaliduser"] == "nobody"
    [msg] = httpx.get(f"{sim.base_url}/_sim/messages").json()
    assert msg["touser"] == [a, b] and msg["content"] == "设备故障：请处理"
    with pytest.raises(Exception, match="81013"):  # every recipient unknown
        client.message.send_text(cred["agent_id"], ["nobody"], "x")
    with pytest.raises(Exception, match="40056"):
        client.message.send_text(cred["agent_id"] + 1, [a], "x")


def test_email_is_sent_once_per_key_and_recipient_across_restarts(
    tmp_path: Path, sim: WeComSimulator, smtp_server: SmtpServer
) -> None:
    channels = {
        "mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "sender": "tongbu@example.com",
            "to": ["ops@example.com", "dba@example.com"],
        }
    }
    first = Notifier(project(tmp_path, sim, channels))
    assert [d.status for d in first.send("mail", alert())] == ["sent", "sent"]
    assert [d.status for d in first.send("mail", alert())] == ["already_sent", "already_sent"]
    restarted = Notifier(project(tmp_path, sim, channels))  # a new process: the ledger is in the hub
    assert {d.status for d in restarted.send("mail", alert())} == {"already_sent"}
    assert [d.status for d in restarted.send("mail", alert("run-failed:43"))] == ["sent", "sent"]
    assert smtp_server.wait(4)
    assert len(smtp_server.messages) == 4
    msg = smtp_server.messages[0]
    assert "同步失败" in str(msg["Subject"]) or "=?utf-8?" in str(msg["Subject"]).lower()
    assert "HTTP 500" in msg.get_payload(decode=True).decode()


def test_a_failed_delivery_is_retried_by_the_next_send_with_the_same_key(
    tmp_path: Path, sim: WeComSimulator
) -> None:
    port = free_port()
    channels = {
        "mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": port,
            "sender": "t@example.com",
            "to": ["a@example.com"],
        }
    }
    notifier = Notifier(project(tmp_path, sim, channels))
    [failed] = notifier.send("mail", alert())
    assert failed.status == "failed" and "could not send mail through 127.0.0.1" in (failed.error or "")
    assert len(notifier.ledger.failed()) == 1
    server = SmtpServer()
    server.port = port
    server.start()
    try:
        assert [d.status for d in notifier.send("mail", alert())] == ["sent"]
        assert server.wait(1) and len(server.messages) == 1
    finally:
        server.stop()
    assert notifier.ledger.failed() == []


def test_concurrent_senders_deliver_once(
    tmp_path: Path, sim: WeComSimulator, smtp_server: SmtpServer
) -> None:
    channels = {
        "mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "sender": "t@example.com",
            "to": ["a@example.com"],
        }
    }
    proj = project(tmp_path, sim, channels)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        notifier = Notifier(proj)
        barrier.wait()
        results.extend(d.status for d in notifier.send("mail", alert("conflict:7")))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("sent") == 1 and len(results) == 6
    smtp_server.wait(1)
    assert len(smtp_server.messages) == 1


def test_smtp_login_uses_the_vault_and_never_shows_the_password(
    tmp_path: Path, sim: WeComSimulator, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    password = canary("smtp")
    vault.set("alerts.smtp_password", password)
    server = SmtpServer().start(login=("tongbu", password))
    try:
        base = {
            "kind": "email",
            "host": "127.0.0.1",
            "port": server.port,
            "sender": "t@example.com",
            "to": ["a@example.com"],
            "username": "tongbu",
        }
        ok = Notifier(project(tmp_path, sim, {"mail": {**base, "password": "vault:alerts.smtp_password"}}))
        caplog.set_level(logging.DEBUG)
        assert [d.status for d in ok.send("mail", alert())] == ["sent"]
        vault.set("alerts.smtp_password", "wrong-" + password)
        bad = Notifier(project(tmp_path, sim, {"mail": {**base, "password": "vault:alerts.smtp_password"}}))
        [d] = bad.send("mail", alert("other"))
        assert d.status == "failed" and "refused the login" in (d.error or "")
    finally:
        server.stop()
    assert password not in caplog.text and password not in (d.error or "")


def test_wecom_app_messages_go_once_to_each_user_and_unknown_users_fail_alone(
    tmp_path: Path, sim: WeComSimulator
) -> None:
    a, b, _ = users(sim)
    agent = sim.credentials()["agent_id"]
    notifier = Notifier(
        project(
            tmp_path,
            sim,
            {"sales": {"kind": "wecom_app", "connection": "wecom", "agent_id": agent, "to": [a]}},
        )
    )
    assert [d.status for d in notifier.send("sales", alert())] == ["sent"]
    deliveries = notifier.send("sales", alert(recipients=(a, b, "ghost")))
    assert {d.recipient: d.status for d in deliveries} == {a: "already_sent", b: "sent", "ghost": "failed"}
    assert "ghost" in (deliveries[2].error or "")
    messages = httpx.get(f"{sim.base_url}/_sim/messages").json()
    assert sorted(m["touser"][0] for m in messages) == sorted([a, b])


def test_the_group_robot_posts_once_and_a_wrong_key_is_one_line_without_the_key(
    tmp_path: Path, sim: WeComSimulator
) -> None:
    key = sim.credentials()["robot_key"]
    url = f"{sim.base_url}/cgi-bin/webhook/send"
    notifier = Notifier(
        project(
            tmp_path,
            sim,
            {"robot": {"kind": "wecom_robot", "webhook_url": url, "key": key, "to": ["zhangsan"]}},
        )
    )
    assert [d.status for d in notifier.send("robot", alert())] == ["sent"]
    assert [d.status for d in notifier.send("robot", alert())] == ["already_sent"]
    [posted] = httpx.get(f"{sim.base_url}/_sim/robot_messages").json()
    assert posted["mentioned_list"] == ["zhangsan"] and "HTTP 500" in posted["content"]
    wrong = Notifier(
        project(tmp_path, sim, {"robot": {"kind": "wecom_robot", "webhook_url": url, "key": "k" + key}})
    )
    [d] = wrong.send("robot", alert("x"))
    assert d.status == "failed" and "93000" in (d.error or "") and key not in (d.error or "")


def test_channel_config_errors_are_one_line(tmp_path: Path, sim: WeComSimulator) -> None:
    n = Notifier(project(tmp_path, sim, {"mail": {"kind": "email", "hots": "x", "sender": "a@b"}}))
    with pytest.raises(ProjectError, match="unknown key 'hots' for kind 'email' \\(did you mean 'host'"):
        n.channel("mail")
    n = Notifier(project(tmp_path, sim, {"x": {"kind": "pager"}}))
    with pytest.raises(ProjectError, match="unknown kind 'pager'"):
        n.channel("x")
    n = Notifier(project(tmp_path, sim, {"s": {"kind": "wecom_app", "connection": "nope", "agent_id": 1}}))
    with pytest.raises(ProjectError, match="'nope' is not a connection"):
        n.channel("s")
    with pytest.raises(ProjectError, match="no alert channel 'missing'"):
        n.channel("missing")
