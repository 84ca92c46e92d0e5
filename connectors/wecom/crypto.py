"""WXBizMsgCrypt: the message encryption WeCom (企业微信) uses for callbacks.

The scheme (external-apis.md §1.3, checked against wechatpy's test vectors):

* ``AESKey = base64decode(EncodingAESKey + "=")`` (32 bytes, AES-256), ``IV = AESKey[:16]``, CBC;
* plaintext = 16 random bytes + ``uint32_be(len(msg))`` + msg + ReceiveId (the CorpID), padded with
  PKCS#7 to a **32-byte** block (not AES's 16);
* ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt]))).hexdigest()``.

Both sides of the wire use this module: the simulator encrypts and signs what it sends, the callback
receiver verifies and decrypts. Nothing here ever puts the token or the key into a message or repr.

The envelope arrives before anything is authenticated, so :meth:`WXBizMsgCrypt.decrypt_message` does
the cheap work first and only the cheap work until the signature holds: a size check, one linear scan
for the ``<Encrypt>`` text, the SHA1 signature. Only an authentic envelope is parsed as XML (with
``defusedxml``: no DTD, no entities, no external references) and decrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
import xml.etree.ElementTree as ET  # only the tree types: parsing goes through defusedxml
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

BLOCK_SIZE = 32  # WeCom pads to 32 bytes, a multiple of AES's 16-byte block
#: An envelope is three short fields around one ciphertext; WeCom's own are well under 8 KB.
MAX_ENVELOPE_BYTES = 64 * 1024
_ENVELOPE_FIELDS = ("ToUserName", "AgentID", "Encrypt")
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_XML_SPACE = b" \t\r\n"
#: WeCom's XML is flat (depth 2-3, a few dozen elements); these bounds leave room and stop bombs early
MAX_XML_DEPTH = 32
MAX_XML_ELEMENTS = 10_000
_XML_CHUNK = 4096


class WeComCryptoError(ValueError):
    """A callback could not be verified or decrypted (bad signature, key, padding or receiver)."""


class InvalidSignature(WeComCryptoError):
    """``msg_signature`` does not match token + timestamp + nonce + ciphertext."""


class MalformedMessage(WeComCryptoError):
    """The message is authentic but its content is unusable (not UTF-8, not well-formed XML)."""


class _BoundedTreeBuilder(ET.TreeBuilder):
    """A tree builder that stops the parse at the first element past the depth or count bound."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        super().__init__()
        self.depth = 0
        self.elements = 0
        self.max_depth = max_depth
        self.max_elements = max_elements

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.depth += 1
        self.elements += 1
        if self.depth > self.max_depth:
            raise WeComCryptoError(f"XML nested deeper than {self.max_depth} levels")
        if self.elements > self.max_elements:
            raise WeComCryptoError(f"XML with more than {self.max_elements} elements")
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


def parse_xml(
    data: str | bytes,
    *,
    what: str = "XML",
    max_bytes: int = MAX_ENVELOPE_BYTES,
    max_depth: int = MAX_XML_DEPTH,
    max_elements: int = MAX_XML_ELEMENTS,
) -> ET.Element:
    """Parse untrusted XML in linear time: bounded in size, depth and element count; no DTD, entities
    or external references (``defusedxml``). Returns the root; raises only :class:`WeComCryptoError`.

    The bytes are fed in small chunks and the depth/count bounds stop the parse at the first element
    past them, so no single call holds the GIL for long: a 64 KB tree of 20,000 nested elements once
    took ~0.2 s inside one C call, stalling every other thread (the event loop included).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise WeComCryptoError(f"{what} is larger than {max_bytes} bytes")
    parser = DefusedXMLParser(
        target=_BoundedTreeBuilder(max_depth, max_elements),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        for start in range(0, len(raw), _XML_CHUNK):
            parser.feed(raw[start : start + _XML_CHUNK])
        return parser.close()
    except WeComCryptoError as exc:
        raise WeComCryptoError(f"{what}: {exc}") from None
    except DefusedXmlException:
        raise WeComCryptoError(f"{what} with a DTD or entities is not a WeCom callback") from None
    except (SyntaxError, ValueError, LookupError):  # ParseError is a SyntaxError; bad encodings
        raise WeComCryptoError(f"{what} is not well-formed") from None


def scan_encrypt(body: str | bytes) -> str:
    """The ``<Encrypt>`` text of an envelope by one linear scan (no regex, no XML parser).

    This runs before the signature is checked, on unauthenticated bytes, so it only looks for the one
    ``<Encrypt>…</Encrypt>`` pair (CDATA or plain text) and requires base64 inside. Anything else
    (missing, repeated, nested markup) is rejected; :meth:`WXBizMsgCrypt.decrypt_message` later checks
    that the full parse of an authentic envelope agrees.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise WeComCryptoError(f"callback body is larger than {MAX_ENVELOPE_BYTES} bytes")
    start = raw.find(b"<Encrypt>")
    if start < 0:
        raise WeComCryptoError("callback body has no <Encrypt> element")
    start += len(b"<Encrypt>")
    end = raw.find(b"</Encrypt>", start)
    if end < 0 or raw.find(b"<Encrypt>", end) >= 0:
        raise WeComCryptoError("callback body has no single <Encrypt> element")
    value = raw[start:end].strip(_XML_SPACE)
    if value.startswith(b"<![CDATA[") and value.endswith(b"]]>"):
        value = value[len(b"<![CDATA[") : -len(b"]]>")]
    if not value or not _B64_CHARS.issuperset(value):
        raise WeComCryptoError("<Encrypt> does not hold base64 ciphertext")
    return value.decode("ascii")


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

    A full (defused, size-bounded, linear-time) XML parse; the ``Encrypt`` element must occur once.
    Receivers should not call this before the signature is checked: :meth:`WXBizMsgCrypt.decrypt_message`
    verifies first, using :func:`scan_encrypt`.
    """
    root = parse_xml(body, what="callback body")
    fields: dict[str, str] = {}
    for name in _ENVELOPE_FIELDS:
        found = root.findall(name)
        if len(found) > 1:
            raise WeComCryptoError(f"callback body has more than one <{name}> element")
        if found:
            fields[name] = (found[0].text or "").strip()
    if not fields.get("Encrypt"):
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
        return _utf8(self.decrypt(echostr), "echostr")

    def decrypt_message(self, body: str | bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Event delivery (``POST``): verify the envelope's ciphertext and return the inner XML.

        Order matters (the body is untrusted until the signature holds): linear scan for ``Encrypt``
        → signature → full defused parse, which must find the same single ``Encrypt`` (so the scanner
        and the parser cannot be played against each other) → decrypt → UTF-8.
        """
        encrypt = scan_encrypt(body)
        self.verify(msg_signature, timestamp, nonce, encrypt)
        if parse_envelope(body)["Encrypt"] != encrypt:
            raise WeComCryptoError("the envelope's <Encrypt> is ambiguous")
        return _utf8(self.decrypt(encrypt), "message")

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


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"decrypted {what} is not UTF-8 text (byte {exc.start})") from None


def new_encoding_aes_key() -> str:
    """A fresh 43-character EncodingAESKey (what the admin console's 随机获取 button makes)."""
    return base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")
