"""WXBizMsgCrypt: the message encryption WeCom (企业微信) uses for callbacks.

The scheme (external-apis.md §1.3, checked against wechatpy's test vectors):

* ``AESKey = base64decode(EncodingAESKey + "=")`` (32 bytes, AES-256), ``IV = AESKey[:16]``, CBC;
* plaintext = 16 random bytes + ``uint32_be(len(msg))`` + msg + ReceiveId (the CorpID), padded with
  PKCS#7 to a **32-byte** block (not AES's 16);
* ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt]))).hexdigest()``.

Both sides of the wire use this module: the simulator encrypts and signs what it sends, the callback
receiver verifies and decrypts. Nothing here ever puts the token or the key into a message or repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32  # WeCom pads to 32 bytes, a multiple of AES's 16-byte block
_ENVELOPE_FIELD = re.compile(
    r"<(ToUserName|AgentID|Encrypt)>\s*(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))\s*</\1>", re.S
)


class WeComCryptoError(ValueError):
    """A callback could not be verified or decrypted (bad signature, key, padding or receiver)."""


class InvalidSignature(WeComCryptoError):
    """``msg_signature`` does not match token + timestamp + nonce + ciphertext."""


@dataclass(frozen=True)
class SignedMessage:
    """An encrypted callback as it travels: query parameters plus the XML envelope body."""

    msg_signature: str
    timestamp: str
    nonce: str
    encrypt: str
    body: str

    @property
    def query(self) -> dict[str, str]:
        """The query string WeCom appends to the callback URL."""
        return {"msg_signature": self.msg_signature, "timestamp": self.timestamp, "nonce": self.nonce}


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """SHA1 over the sorted, concatenated parts (WeCom's ``msg_signature``)."""
    parts = sorted([str(token), str(timestamp), str(nonce), str(encrypt)])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


def _pkcs7_pad(data: bytes) -> bytes:
    n = BLOCK_SIZE - (len(data) % BLOCK_SIZE)
    return data + bytes([n]) * n


def _pkcs7_unpad(data: bytes) -> bytes:
    if not data:
        raise WeComCryptoError("empty plaintext")
    n = data[-1]
    # WeCom's own SDKs accept pad values 1..32; anything else means a wrong key or tampered data.
    if n < 1 or n > BLOCK_SIZE or n > len(data) or data[-n:] != bytes([n]) * n:
        raise WeComCryptoError("bad padding (wrong EncodingAESKey or tampered ciphertext)")
    return data[:-n]


def parse_envelope(body: str | bytes) -> dict[str, str]:
    """Read ``ToUserName`` / ``AgentID`` / ``Encrypt`` from a callback's XML envelope.

    A small regex reader rather than a general XML parser: the envelope is untrusted and read before
    the signature is checked, and three flat fields need no DTD, entity or namespace handling.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise WeComCryptoError("XML with a DTD is not a WeCom callback")
    fields: dict[str, str] = {}
    for m in _ENVELOPE_FIELD.finditer(text):
        fields.setdefault(m.group(1), m.group(2) if m.group(2) is not None else m.group(3).strip())
    if "Encrypt" not in fields:
        raise WeComCryptoError("callback body has no <Encrypt> element")
    return fields


class WXBizMsgCrypt:
    """Encrypt, decrypt, sign and verify WeCom callback messages for one receiver.

    ``receive_id`` is the CorpID for self-built apps (or the SuiteID for third-party apps); a
    decrypted message that names another receiver is rejected.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise WeComCryptoError("EncodingAESKey must be 43 characters (WeCom admin console → 接收消息)")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise WeComCryptoError("EncodingAESKey is not valid base64") from None
        if len(key) != 32:
            raise WeComCryptoError("EncodingAESKey must decode to 32 bytes")
        self._token = token
        self._key = key
        self.receive_id = receive_id

    def __repr__(self) -> str:  # never show the token or key
        return f"WXBizMsgCrypt(receive_id={self.receive_id!r}, token=***, key=***)"

    # -- primitives ------------------------------------------------------------------------------
    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """``msg_signature`` for these parts with this receiver's token."""
        return signature(self._token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise :class:`InvalidSignature` unless the signature matches (constant-time compare)."""
        expected = self.sign(timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected, str(msg_signature or "").lower()):
            raise InvalidSignature("msg_signature does not match (wrong Token, or the message was altered)")

    def encrypt(self, message: str | bytes, *, random_prefix: bytes | None = None) -> str:
        """Encrypt ``message`` for this receiver; returns the base64 ciphertext (``Encrypt``)."""
        msg = message.encode("utf-8") if isinstance(message, str) else message
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        if len(prefix) != 16:
            raise ValueError("random_prefix must be 16 bytes")
        plain = prefix + struct.pack(">I", len(msg)) + msg + self.receive_id.encode("utf-8")
        enc = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        return base64.b64encode(enc.update(_pkcs7_pad(plain)) + enc.finalize()).decode("ascii")

    def decrypt(self, encrypt: str) -> bytes:
        """Decrypt a base64 ``Encrypt`` value and check its ReceiveId; returns the message bytes."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise WeComCryptoError("ciphertext is not valid base64") from None
        if not raw or len(raw) % 16:
            raise WeComCryptoError("ciphertext length is not a multiple of the AES block")
        dec = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
        plain = _pkcs7_unpad(dec.update(raw) + dec.finalize())
        if len(plain) < 20:
            raise WeComCryptoError("plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        msg, receiver = plain[20 : 20 + length], plain[20 + length :]
        if len(msg) != length:
            raise WeComCryptoError("declared message length exceeds the plaintext")
        if receiver.decode("utf-8", "replace") != self.receive_id:
            raise WeComCryptoError("message is addressed to another CorpID/SuiteID")
        return msg

    # -- the two callback flows -------------------------------------------------------------------
    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification (``GET ...&echostr=``): verify, decrypt, return the plaintext to echo."""
        self.verify(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr).decode("utf-8")

    def decrypt_message(self, body: str | bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Event delivery (``POST``): verify the envelope's ciphertext and return the inner XML."""
        encrypt = parse_envelope(body)["Encrypt"]
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt).decode("utf-8")

    def encrypt_message(
        self,
        message: str,
        *,
        timestamp: str | int | None = None,
        nonce: str | None = None,
        agent_id: str | None = None,
        random_prefix: bytes | None = None,
    ) -> SignedMessage:
        """Build a callback exactly as WeCom posts it: signed query params and the XML envelope."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(int.from_bytes(os.urandom(4), "big") % 10**10)
        encrypt = self.encrypt(message, random_prefix=random_prefix)
        agent = f"<AgentID><![CDATA[{agent_id}]]></AgentID>" if agent_id else ""
        body = (
            f"<xml><ToUserName><![CDATA[{self.receive_id}]]></ToUserName>{agent}"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return SignedMessage(self.sign(ts, nonce, encrypt), ts, nonce, encrypt, body)

    def echostr(
        self, plaintext: str, *, timestamp: str | int | None = None, nonce: str | None = None
    ) -> SignedMessage:
        """Build a URL-verification request (what WeCom sends when an admin saves the callback URL)."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(int.from_bytes(os.urandom(4), "big") % 10**10)
        encrypt = self.encrypt(plaintext)
        return SignedMessage(self.sign(ts, nonce, encrypt), ts, nonce, encrypt, "")


def new_encoding_aes_key() -> str:
    """A fresh 43-character EncodingAESKey (what the admin console's 随机获取 button makes)."""
    return base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")
