"""WXBizMsgCrypt: the published test vectors, and interoperation with wechatpy's WeChatCrypto both ways."""

from __future__ import annotations

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from connectors.wecom.crypto import (
    InvalidSignature,
    WeComCryptoError,
    WXBizMsgCrypt,
    new_encoding_aes_key,
    parse_envelope,
    signature,
)

# wechatpy tests/test_crypto.py (external-apis.md §1.3)
TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP = "wx49f0ab532d5d035a"
ECHO = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
POSTED = """<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""
REPLY = """<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
REPLY_ENCRYPTED = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesE"
    "l5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsD"
    "f03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTY"
    "jxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)


@pytest.fixture
def crypt() -> WXBizMsgCrypt:
    return WXBizMsgCrypt(TOKEN, AES_KEY, CORP)


def test_url_verification_vector(crypt: WXBizMsgCrypt) -> None:
    assert crypt.verify_url("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", ECHO)
    with pytest.raises(InvalidSignature):
        crypt.verify_url("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", ECHO)


def test_decrypt_vector(crypt: WXBizMsgCrypt) -> None:
    assert (
        signature(TOKEN, "1411525903", "461056294", parse_envelope(POSTED)["Encrypt"])
        == "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
    )
    msg = xmltodict.parse(
        crypt.decrypt_message(POSTED, "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294")
    )["xml"]
    assert msg["Content"] == "test" and msg["FromUserName"] == "messense"


def test_encrypt_vector_with_fixed_random(crypt: WXBizMsgCrypt) -> None:
    encrypted = crypt.encrypt(REPLY, random_prefix=b"1234567890123456")
    assert encrypted == REPLY_ENCRYPTED
    assert crypt.sign("1411525903", "461056294", encrypted) == "407518b7649e86ef23978113f92d27afa9296533"


def test_wechatpy_decrypts_what_we_encrypt(crypt: WXBizMsgCrypt) -> None:
    event = (
        "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName><Event><![CDATA[change_external_contact]]>"
        "</Event><ChangeType><![CDATA[edit_external_contact]]></ChangeType><UserID><![CDATA[zhangwei]]></UserID>"
        "<ExternalUserID><![CDATA[wmAbc]]></ExternalUserID><Remark><![CDATA[王总——采购]]></Remark></xml>"
    )
    msg = crypt.encrypt_message(event, timestamp=1700000000, nonce="12345")
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP)
    plain = theirs.decrypt_message(msg.body, msg.msg_signature, msg.timestamp, msg.nonce)
    assert xmltodict.parse(plain)["xml"]["Remark"] == "王总——采购"


def test_we_decrypt_what_wechatpy_encrypts(crypt: WXBizMsgCrypt) -> None:
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP)
    envelope = xmltodict.parse(
        theirs.encrypt_message("<xml><Content>你好 WeCom</Content></xml>", "998877", "1700000001")
    )["xml"]
    body = f"<xml><Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    assert "你好 WeCom" in crypt.decrypt_message(body, envelope["MsgSignature"], "1700000001", "998877")
    # and wechatpy's verification of our echostr
    echo = crypt.echostr("8675309", timestamp=1700000002, nonce="1")
    assert theirs.check_signature(echo.msg_signature, echo.timestamp, echo.nonce, echo.encrypt) in (
        "8675309",
        b"8675309",
    )


def test_tampering_and_wrong_keys_are_rejected(crypt: WXBizMsgCrypt) -> None:
    msg = crypt.encrypt_message("<xml><a>1</a></xml>", timestamp=1, nonce="n", random_prefix=b"0" * 16)
    flipped = msg.encrypt[:10] + ("A" if msg.encrypt[10] != "A" else "B") + msg.encrypt[11:]
    with pytest.raises(InvalidSignature):  # signature covers the ciphertext
        crypt.decrypt_message(
            msg.body.replace(msg.encrypt, flipped), msg.msg_signature, msg.timestamp, msg.nonce
        )
    # Without the signature CBC is malleable (a flipped byte garbles one block silently), which is why
    # the receiver checks msg_signature first; a damaged last block is caught by the padding check.
    import base64

    raw = bytearray(base64.b64decode(msg.encrypt))
    raw[-1] ^= 0x5A
    with pytest.raises(WeComCryptoError):
        crypt.decrypt(base64.b64encode(bytes(raw)).decode())
    other_corp = WXBizMsgCrypt(TOKEN, AES_KEY, "ww0000000000000000")
    with pytest.raises(WeComCryptoError, match="another CorpID"):
        other_corp.decrypt(msg.encrypt)
    other_key = WXBizMsgCrypt(TOKEN, new_encoding_aes_key(), CORP)
    with pytest.raises(WeComCryptoError):
        other_key.decrypt(msg.encrypt)
    with pytest.raises(InvalidSignatureException):  # wechatpy agrees: another Token does not verify
        WeChatCrypto("other-token", AES_KEY, CORP).decrypt_message(
            msg.body, msg.msg_signature, msg.timestamp, msg.nonce
        )


def test_wechatpy_rejects_a_forged_signature(crypt: WXBizMsgCrypt) -> None:
    msg = crypt.encrypt_message("<xml/>", timestamp=2, nonce="x")
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto(TOKEN, AES_KEY, CORP).decrypt_message(msg.body, "0" * 40, msg.timestamp, msg.nonce)


def test_secrets_stay_out_of_repr_and_errors(crypt: WXBizMsgCrypt) -> None:
    assert TOKEN not in repr(crypt) and AES_KEY not in repr(crypt)
    try:
        crypt.verify("bad", "1", "2", "3")
    except InvalidSignature as exc:
        assert TOKEN not in str(exc)
    with pytest.raises(WeComCryptoError):
        WXBizMsgCrypt(TOKEN, "short", CORP)
    with pytest.raises(WeComCryptoError):
        parse_envelope("<!DOCTYPE x [<!ENTITY a 'b'>]><xml><Encrypt>&a;</Encrypt></xml>")


# -- untrusted envelopes (issue 17 item 1) ------------------------------------------------------------
def test_the_cubic_envelope_is_refused_at_once() -> None:
    # The freeze body, 20x longer: the old regex took seconds at 3 KB and hours at 60 KB. It
    # runs in a child process so that a regression fails the test instead of hanging the suite (a
    # regex holds the GIL).
    import subprocess
    import sys

    code = (
        "from connectors.wecom.crypto import WXBizMsgCrypt, WeComCryptoError, parse_envelope\n"
        f"c = WXBizMsgCrypt({TOKEN!r}, {AES_KEY!r}, {CORP!r})\n"
        "for f, b in ((lambda b: c.decrypt_message(b, '0' * 40, '1700000000', '1'), '<Encrypt>' + ' ' * 60000 + 'x'),\n"
        "             (parse_envelope, '<xml><Encrypt>' + ' ' * 60000 + 'x</xml>')):\n"
        "    try:\n"
        "        f(b)\n"
        "    except WeComCryptoError:\n"
        "        print('refused')\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("still parsing a 60 KB envelope after 20 s: the envelope reader is not linear")
    assert out.stdout.split() == ["refused", "refused"], out.stderr[-500:]


def test_the_signature_is_checked_before_the_body_is_parsed(crypt: WXBizMsgCrypt, monkeypatch) -> None:  # noqa: ANN001
    import connectors.wecom.crypto as mod

    parsed: list[object] = []
    real = mod.parse_xml
    monkeypatch.setattr(mod, "parse_xml", lambda *a, **k: parsed.append(a) or real(*a, **k))
    msg = crypt.encrypt_message("<xml><a>1</a></xml>", timestamp=1, nonce="n")
    with pytest.raises(InvalidSignature):
        crypt.decrypt_message(msg.body, "0" * 40, msg.timestamp, msg.nonce)
    assert parsed == []  # a forged envelope never reached the XML parser
    assert (
        crypt.decrypt_message(msg.body, msg.msg_signature, msg.timestamp, msg.nonce) == "<xml><a>1</a></xml>"
    )
    assert len(parsed) == 1


def test_the_scan_and_the_parse_cannot_be_played_against_each_other(crypt: WXBizMsgCrypt) -> None:
    msg = crypt.encrypt_message("<xml><a>1</a></xml>", timestamp=1, nonce="n", random_prefix=b"7" * 16)
    assert "+" in msg.encrypt or "/" in msg.encrypt
    other = crypt.encrypt("<xml><a>2</a></xml>")
    # the scanner sees the signed ciphertext inside a comment; the XML parser would see `other`
    sneaky = f"<xml><!-- <Encrypt>{msg.encrypt}</Encrypt> --><Encrypt>{other}</Encrypt></xml>"
    with pytest.raises(WeComCryptoError):
        crypt.decrypt_message(sneaky, msg.msg_signature, msg.timestamp, msg.nonce)
    # an entity the parser would decode is not base64 to the scanner
    entity = msg.body.replace(msg.encrypt, msg.encrypt.replace("+", "&#43;").replace("/", "&#47;"))
    with pytest.raises(WeComCryptoError):
        crypt.decrypt_message(entity, msg.msg_signature, msg.timestamp, msg.nonce)
    twice = msg.body.replace("</xml>", f"<Encrypt>{other}</Encrypt></xml>")
    with pytest.raises(WeComCryptoError):
        crypt.decrypt_message(twice, msg.msg_signature, msg.timestamp, msg.nonce)


@pytest.mark.parametrize(
    "body",
    [
        '<!DOCTYPE xml [<!ENTITY a "b">]><xml><Encrypt>QUJD</Encrypt></xml>',
        '<!doctype xml SYSTEM "http://127.0.0.1:1/x.dtd"><xml><Encrypt>QUJD</Encrypt></xml>',
        '<?xml version="1.0"?>\n<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><xml/>',
        "<xml><Encrypt>QUJD</Encrypt>",  # not well-formed
        b"<xml><Encrypt>\xff\xfe</Encrypt></xml>",
    ],
)
def test_hostile_envelopes_raise_only_crypto_errors(crypt: WXBizMsgCrypt, body: str | bytes) -> None:
    with pytest.raises(WeComCryptoError):
        parse_envelope(body)


def test_authentic_but_not_utf8_content_is_a_malformed_message(crypt: WXBizMsgCrypt) -> None:
    from connectors.wecom.crypto import MalformedMessage

    msg = crypt.encrypt_message("placeholder", timestamp=1, nonce="n")
    encrypt = crypt.encrypt(b"<xml>\xff\xfe\xc3</xml>")
    body = msg.body.replace(msg.encrypt, encrypt)
    with pytest.raises(MalformedMessage, match="not UTF-8"):
        crypt.decrypt_message(body, crypt.sign("1", "n", encrypt), "1", "n")
    with pytest.raises(MalformedMessage):
        crypt.verify_url(crypt.sign("1", "n", encrypt), "1", "n", encrypt)


def test_we_read_wechatpys_own_envelope_as_it_posts_it(crypt: WXBizMsgCrypt) -> None:
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP)
    posted = theirs.encrypt_message("<xml><Content>第二条</Content></xml>", "4455", "1700000009")
    sig = xmltodict.parse(posted)["xml"]["MsgSignature"]
    assert "第二条" in crypt.decrypt_message(posted, sig, "1700000009", "4455")
    # and the envelope as WeCom itself lays it out (newlines, ToUserName/AgentID around it)
    assert (
        xmltodict.parse(
            crypt.decrypt_message(
                POSTED.encode(), "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294"
            )
        )["xml"]["Content"]
        == "test"
    )
