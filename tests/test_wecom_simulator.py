"""The WeCom simulator speaks the real API: a stock wechatpy client works against it unchanged."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import xmltodict
from wechatpy.enterprise import WeChatClient
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import APILimitedException, WeChatClientException

from connectors.kit.simulator import load_simulator
from connectors.wecom.simulator import WeComSimulator
from tests.helpers.wecom import point_wechatpy_at


@pytest.fixture
def sim() -> Iterator[WeComSimulator]:
    s = WeComSimulator(records=600, seed=3)
    s.start()
    yield s
    s.stop()


def wechatpy_client(sim: WeComSimulator) -> WeChatClient:
    cred = sim.credentials()
    return point_wechatpy_at(WeChatClient(cred["corp_id"], cred["corp_secret"]), sim.base_url)


def test_registered_for_tongbu_simulate() -> None:
    assert load_simulator("wecom") is WeComSimulator
    creds = WeComSimulator(records=5).credentials()
    assert set(creds) >= {"corp_id", "corp_secret", "callback_token", "encoding_aes_key"}
    assert len(creds["encoding_aes_key"]) == 43


def test_wechatpy_gets_tokens_lists_and_pages(sim: WeComSimulator) -> None:
    client = wechatpy_client(sim)
    users = client.external_contact.get_follow_user_list()["follow_user"]
    assert users == sim.follow_user_ids() and len(users) == sim.n_users
    seen: dict[str, dict] = {}
    for user in users:
        ids = client.external_contact.list(user)["external_userid"]
        cursor, paged = "", []
        while True:  # wechatpy 1.8 has no batch helper: the plain POST with the old request shape
            page = client.post(
                "externalcontact/batch/get_by_user", data={"userid": user, "cursor": cursor, "limit": 37}
            )
            paged += [item["external_contact"]["external_userid"] for item in page["external_contact_list"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert paged == ids  # paging returns exactly the list, in order, without repeats
        for ext in ids:
            seen.setdefault(ext, {})
    assert len(seen) == sim.contact_count == 600
    detail = client.external_contact.get(next(iter(seen)))
    assert detail["external_contact"]["external_userid"] == next(iter(seen))
    assert detail["follow_user"] and all("tags" in f for f in detail["follow_user"])
    chats = client.external_contact_group_chat.list_all(limit=5)
    assert len(chats) == sim.group_chat_count == 12
    chat = client.external_contact_group_chat.get(chats[0]["chat_id"])["group_chat"]
    assert chat["member_list"] and isinstance(chat["create_time"], int)
    groups = client.external_contact.get_corp_tag_list()["tag_group"]
    assert {g["group_name"] for g in groups} >= {"客户等级", "客户来源"}
    assert sim.calls["gettoken"] == 1  # one token for the whole session


def test_every_error_is_http_200_with_errcode(sim: WeComSimulator) -> None:
    base = sim.base_url + "/cgi-bin/"
    r = httpx.get(base + "externalcontact/get_follow_user_list")
    assert r.status_code == 200 and r.json()["errcode"] == 41001
    assert (
        httpx.get(base + "externalcontact/get_follow_user_list", params={"access_token": "nope"}).json()[
            "errcode"
        ]
        == 40014
    )
    bad = httpx.get(base + "gettoken", params={"corpid": sim.corp_id, "corpsecret": "wrong"}).json()
    assert bad["errcode"] == 40001 and "hint:" in bad["errmsg"]
    token = httpx.get(
        base + "gettoken", params={"corpid": sim.corp_id, "corpsecret": sim.credentials()["corp_secret"]}
    ).json()
    assert token["expires_in"] == 7200
    q = {"access_token": token["access_token"]}
    assert httpx.get(base + "externalcontact/batch/get_by_user", params=q).json()["errcode"] == 43002
    assert (
        httpx.post(base + "externalcontact/batch/get_by_user", params=q, content=b"{oops").json()["errcode"]
        == 47001
    )
    assert (
        httpx.post(
            base + "externalcontact/batch/get_by_user",
            params=q,
            json={"userid_list": [sim.users[0]["userid"]], "cursor": "forged", "limit": 10},
        ).json()["errcode"]
        == 40058
    )
    assert (
        httpx.get(base + "externalcontact/get", params={**q, "external_userid": "wmNOPE"}).json()["errcode"]
        == 40096
    )
    assert (
        httpx.post(
            base + "externalcontact/batch/get_by_user", params=q, json={"userid_list": ["ghost"], "limit": 10}
        ).json()["errcode"]
        == 60111
    )


def test_token_expiry_and_invalidation_are_handled_by_wechatpy(sim: WeComSimulator) -> None:
    client = wechatpy_client(sim)
    client.external_contact.get_follow_user_list()
    sim.expire_tokens()  # 42001 on the next call; wechatpy refetches and retries
    client.external_contact.get_follow_user_list()
    sim.invalidate_tokens()  # 40014
    client.external_contact.get_follow_user_list()
    assert sim.calls["gettoken"] == 3


def test_token_lifetime_fault(sim: WeComSimulator) -> None:
    sim.set_faults("token_ttl=1")
    token = httpx.get(
        sim.base_url + "/cgi-bin/gettoken",
        params={"corpid": sim.corp_id, "corpsecret": sim.credentials()["corp_secret"]},
    ).json()
    assert token["expires_in"] == 1
    import time

    time.sleep(1.1)
    r = httpx.get(
        sim.base_url + "/cgi-bin/externalcontact/get_follow_user_list",
        params={"access_token": token["access_token"]},
    ).json()
    assert r["errcode"] == 42001


def test_rate_and_concurrency_limits_are_fault_switches(sim: WeComSimulator) -> None:
    client = wechatpy_client(sim)
    sim.set_faults("throttle=1")
    with pytest.raises(APILimitedException):
        client.external_contact.get_follow_user_list()
    sim.set_faults("concurrency_rate=1")
    with pytest.raises(WeChatClientException) as exc:
        client.external_contact.list(sim.users[0]["userid"])
    assert exc.value.errcode == 45033
    sim.set_faults("freq_per_min=2")
    client.external_contact.get_follow_user_list()
    client.external_contact.get_follow_user_list()
    with pytest.raises(APILimitedException):
        client.external_contact.get_follow_user_list()


def test_api_writes_change_truth_but_send_no_callback(sim: WeComSimulator) -> None:
    client = wechatpy_client(sim)
    ext = next(sim.external_userids())
    userid = sim.contact_detail(ext)["follow_user"][0]["userid"]
    tag = sim.tag_id("客户等级", "A类客户")
    client.external_contact.mark_tag(userid, ext, add_tag=[tag])
    assert tag in [t["tag_id"] for t in sim.contact_detail(ext)["follow_user"][0]["tags"]]
    assert sim.callback_log == []


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict, bytes]] = []
    fail_first = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        _Receiver.got.append((query, body))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"success")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got = []
    _Receiver.fail_first = 0
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/wecom"
    server.shutdown()


def test_callbacks_are_wecom_encrypted_and_wechatpy_decrypts_them(sim: WeComSimulator, receiver: str) -> None:
    sim.set_callback(receiver, verify=False)
    ext = sim.add_external_contact(
        name="周建华", corp_full_name="苏州恒通精密机械有限公司", state="展会二维码2024"
    )
    sim.edit_external_contact(ext, remark="周总")
    sim.edit_external_contact(ext, remark_mobiles=["13912345678"])  # WeCom reports no remark-mobile-only edit
    sim.del_external_contact(ext)
    assert sim.wait_callbacks(10)
    cred = sim.credentials()
    theirs = WeChatCrypto(cred["callback_token"], cred["encoding_aes_key"], cred["corp_id"])
    events = []
    for query, body in _Receiver.got:
        assert set(query) == {"msg_signature", "timestamp", "nonce"}
        assert xmltodict.parse(body)["xml"]["ToUserName"] == cred["corp_id"]
        events.append(
            xmltodict.parse(
                theirs.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
            )["xml"]
        )
    assert [e["ChangeType"] for e in events] == [
        "add_external_contact",
        "edit_external_contact",
        "del_external_contact",
    ]
    assert all(e["Event"] == "change_external_contact" and e["ExternalUserID"] == ext for e in events)
    assert events[0]["State"] == "展会二维码2024" and events[0]["WelcomeCode"]
    assert int(events[0]["CreateTime"]) > 1_600_000_000


def test_callbacks_are_retried_unchanged_and_can_be_dropped(sim: WeComSimulator, receiver: str) -> None:
    sim.set_faults("callback_retry_delay=0.05")
    sim.set_callback(receiver, verify=False)
    _Receiver.fail_first = 2
    sim.create_corp_tag("客户等级", "S类客户")
    assert sim.wait_callbacks(10)
    assert len(_Receiver.got) == 3 and len({json.dumps(q, sort_keys=True) for q, _ in _Receiver.got}) == 1
    assert sim.callback_log[-1].status == "delivered" and sim.callback_log[-1].attempts == 3
    sim.set_faults("drop_callbacks=1")
    sim.update_corp_tag(sim.tag_id("客户等级", "S类客户"), "S级客户")
    assert sim.callback_log[-1].status == "dropped" and len(_Receiver.got) == 3


def test_url_verification_needs_the_plaintext_echo(sim: WeComSimulator, receiver: str) -> None:
    with pytest.raises(RuntimeError, match="verification failed"):
        sim.set_callback(receiver)  # the stub answers POST only: not a WeCom-ready receiver


def test_large_corp_is_deterministic_and_lazy() -> None:
    a, b = WeComSimulator(records=100_000, seed=9), WeComSimulator(records=100_000, seed=9)
    assert 100 <= a.n_users <= 400 and a.contact_count == 100_000
    ext = a.random_external_userid(__import__("random").Random(1))
    assert a.contact_detail(ext) == b.contact_detail(ext)
    assert a.follow_pair_count > 100_000  # some contacts are followed by several employees


def _token(sim: WeComSimulator) -> str:
    return httpx.get(
        sim.base_url + "/cgi-bin/gettoken",
        params={"corpid": sim.corp_id, "corpsecret": sim.credentials()["corp_secret"]},
    ).json()["access_token"]


def test_kit_faults_mean_the_same_here_as_in_every_simulator(sim: WeComSimulator) -> None:
    url = sim.base_url + "/cgi-bin/externalcontact/get_follow_user_list"
    try:
        sim.set_faults("session_expiry=2")  # a token serves two calls, then it is expired (42001)
        token = _token(sim)
        codes = [httpx.get(url, params={"access_token": token}).json()["errcode"] for _ in range(3)]
        assert codes == [0, 0, 42001] and _token(sim) != token
        sim.set_faults("http_5xx=1")
        before = sim.stats()["http_5xx"]
        r = httpx.get(url, params={"access_token": "x"})
        assert r.status_code in (500, 502, 503) and sim.stats()["http_5xx"] == before + 1
        sim.set_faults("timeout=1,hang=0.2")
        assert httpx.get(url, params={"access_token": "x"}).status_code == 504
        sim.set_faults("slow=0.05")
        assert httpx.get(url, params={"access_token": "x"}).json()["errcode"] == 40014
        assert sim.stats()["slow"] >= 1
    finally:
        sim.set_faults(None)


def test_old_fault_names_and_typos_are_errors_that_say_what_to_use(sim: WeComSimulator) -> None:
    from connectors.kit.simulator import FaultError

    with pytest.raises(FaultError, match="renamed: use throttle"):
        sim.set_faults("freq_limit=0.1")
    with pytest.raises(FaultError, match="did you mean 'drop_callbacks'"):
        sim.set_faults("drop_callback=0.1")
    r = httpx.post(sim.base_url + "/_sim/faults", json={"faults": "token_expiry=3"})
    assert r.status_code == 400 and "session_expiry" in r.json()["error"]


def test_truth_endpoint_pages_the_simulators_own_ground_truth(sim: WeComSimulator) -> None:
    api = httpx.Client(base_url=sim.base_url)
    page = api.get("/_sim/truth", params={"stream": "contacts", "offset": 2, "limit": 3}).json()
    assert page["stream"] == "contacts"
    assert page["records"] == [d for d in sim.truth("contacts")][2:5]
    assert page["records"][0] == sim.contact_detail(page["records"][0]["external_contact"]["external_userid"])
    assert api.get("/_sim/counts").json()["contacts"] == sim.contact_count
    assert api.get("/_sim/truth", params={"stream": "nope"}).status_code == 400
    chats = api.get("/_sim/truth", params={"stream": "group_chats", "limit": 2}).json()["records"]
    assert [c["chat_id"] for c in chats] == sim.group_chat_ids()[:2]
