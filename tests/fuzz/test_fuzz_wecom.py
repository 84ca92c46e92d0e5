"""Property tests for the WeCom callback parsers: the envelope scan and parse, the decrypt path, the
event XML and the event source's request checks. Only the documented errors may come out."""

from __future__ import annotations

import base64
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from connectors.kit.events import EventRejected
from connectors.wecom.crypto import (
    MAX_ENVELOPE_BYTES,
    MalformedMessage,
    WeComCryptoError,
    WXBizMsgCrypt,
    parse_envelope,
    scan_encrypt,
)
from connectors.wecom.events import WeComEventSource, parse_event_xml
from tests.fuzz.conftest import examples

TOKEN = "fuzz-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP = "wwfuzz0000000001"
CRYPT = WXBizMsgCrypt(TOKEN, AES_KEY, CORP)
GOOD = CRYPT.encrypt_message("<xml><Event>change_external_contact</Event></xml>", timestamp=1, nonce="n")

# Pieces an attacker would combine: tags, CDATA, comments, DTD/entity syntax, long runs of space.
FRAGMENTS = st.sampled_from(
    [
        "<xml>",
        "</xml>",
        "<Encrypt>",
        "</Encrypt>",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<!DOCTYPE x [",
        '<!ENTITY a "aaaa">',
        "]>",
        "&a;",
        "&#43;",
        "<ToUserName>",
        "</ToUserName>",
        "<AgentID>",
        "</AgentID>",
        " " * 200,
        "\n\t",
        "x",
        "<",
        ">",
        GOOD.encrypt,
        GOOD.encrypt[:20],
        "\x00",
        "\ud7ff",
        "<?xml version='1.0' encoding='utf-16'?>",
    ]
)
MARKUP = st.lists(FRAGMENTS, max_size=60).map("".join)
BODIES = st.one_of(st.binary(max_size=4096), st.text(max_size=2048), MARKUP)


@given(BODIES)
def test_scan_encrypt_returns_base64_or_a_crypto_error(body: str | bytes) -> None:
    try:
        value = scan_encrypt(body)
    except WeComCryptoError:
        return
    assert value and set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


@given(BODIES)
def test_parse_envelope_raises_only_crypto_errors(body: str | bytes) -> None:
    try:
        fields = parse_envelope(body)
    except WeComCryptoError:
        return
    assert fields["Encrypt"]


@given(BODIES, st.text(max_size=50), st.text(max_size=20), st.text(max_size=20))
@settings(max_examples=examples(0.5))
def test_decrypt_message_refuses_everything_unsigned(
    body: str | bytes, sig: str, ts: str, nonce: str
) -> None:
    try:
        CRYPT.decrypt_message(body, sig, ts, nonce)
    except WeComCryptoError:
        return
    raise AssertionError("an envelope decrypted without a valid signature")


@given(st.text(max_size=2000), st.binary(min_size=16, max_size=16))
@settings(max_examples=examples(0.3))
def test_encrypt_then_decrypt_round_trips_any_text(text: str, prefix: bytes) -> None:
    msg = CRYPT.encrypt_message(text, timestamp=1700000000, nonce="42", random_prefix=prefix)
    assert CRYPT.decrypt_message(msg.body, msg.msg_signature, msg.timestamp, msg.nonce) == text


@given(st.binary(max_size=600))
@settings(max_examples=examples(0.3))
def test_decrypt_of_arbitrary_ciphertext_is_refused_cleanly(raw: bytes) -> None:
    # Signed correctly (we hold the token), so this exercises base64, AES, padding, length and receiver.
    encrypt = base64.b64encode(raw).decode()
    body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    try:
        CRYPT.decrypt_message(body, CRYPT.sign("1", "n", encrypt), "1", "n")
    except WeComCryptoError:
        return


@given(st.integers(0, len(GOOD.body) - 1), st.binary(min_size=1, max_size=8))
@settings(max_examples=examples(0.3))
def test_a_mutated_signed_envelope_is_either_intact_or_refused(pos: int, insert: bytes) -> None:
    body = GOOD.body.encode()
    mutated = body[:pos] + insert + body[pos:]
    try:
        plain = CRYPT.decrypt_message(mutated, GOOD.msg_signature, GOOD.timestamp, GOOD.nonce)
    except WeComCryptoError:
        return
    assert plain == "<xml><Event>change_external_contact</Event></xml>"


EVENT_XML = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2048),
    st.builds(
        lambda tags: "<xml>" + "".join(f"<{t}>{v}</{t}>" for t, v in tags) + "</xml>",
        st.lists(
            st.tuples(
                st.sampled_from(["Event", "ChangeType", "ExternalUserID", "CreateTime", "a", "_x", "Item"]),
                st.text(max_size=40),
            )
        ),
    ),
    MARKUP,
)


@given(EVENT_XML)
def test_parse_event_xml_returns_flat_text_or_a_malformed_message(text: str | bytes) -> None:
    try:
        fields = parse_event_xml(text)
    except MalformedMessage:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


_SOURCE = WeComEventSource(
    "wecom",
    {
        "corp_id": CORP,
        "corp_secret": "s",
        "callback_token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "base_url": "http://127.0.0.1:9",
    },
    engine=create_engine("sqlite://"),
)
QUERY_VALUES = st.one_of(
    st.text(max_size=60), st.sampled_from([GOOD.msg_signature, "0" * 40, "١٢٣", " 1", "1_0"])
)


@given(
    st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]), QUERY_VALUES),
    st.dictionaries(st.sampled_from(["content-type"]), st.text(max_size=40)),
    BODIES,
)
@settings(max_examples=examples(0.5))
def test_event_source_requests_raise_only_event_rejected(
    query: dict, headers: dict, body: str | bytes
) -> None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    for call in (
        lambda: _SOURCE.parse(query, headers, raw, time.time()),
        lambda: _SOURCE.verify_url(query),
    ):
        try:
            call()
        except EventRejected as exc:
            assert 400 <= exc.status_code < 500 and exc.reason


def test_the_envelope_bound_is_what_serve_accepts() -> None:
    from tongbu.serve.config import ServeConfig

    assert ServeConfig(sources=[]).max_body_bytes <= MAX_ENVELOPE_BYTES
