"""WeCom callbacks (回调) as a ``tongbu serve`` event source.

WeCom POSTs ``?msg_signature=&timestamp=&nonce=`` with an XML envelope whose ``Encrypt`` holds the
event, AES-encrypted with the EncodingAESKey and signed with the Token (:mod:`connectors.wecom.crypto`).
The callback carries only ids (``ExternalUserID``, ``UserID``, ``ChatId``), so applying it means asking
the API for the current state: ``externalcontact/get`` for a contact (84061 → the contact is gone and
is soft-deleted), ``groupchat/get`` for a chat, ``get_corp_tag_list`` for tags.

Because the current state is fetched, every event of one contact leads to the same result, so the
processor may coalesce them (one fetch for a burst) and ordering only has to hold per contact.

Rejected with 403 (nothing stored): a bad ``msg_signature``, a ciphertext that does not decrypt or names
another CorpID, a ``timestamp`` outside the replay window (default ±300 s). A replay inside the window
repeats the same ``msg_signature`` (the dedup key) and is acknowledged without effect.

Connection config (``tongbu.yaml``)::

    wecom:
      connector: wecom
      config:
        corp_id: ww...
        corp_secret: vault:wecom.corp_secret
        callback_token: vault:wecom.callback_token
        encoding_aes_key: vault:wecom.encoding_aes_key
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine

from connectors.kit.events import EventRejected, EventSource, InboundEvent, PreparedChange
from connectors.wecom.client import WeComClient, WeComError, WeComNoRelation, client_from_config
from connectors.wecom.crypto import (
    InvalidSignature,
    MalformedMessage,
    WeComCryptoError,
    WXBizMsgCrypt,
    parse_xml,
)
from connectors.wecom.hub import CONTACT_PREFIX, WeComHubWriter, contact_key
from connectors.wecom.records import contact_from_get, group_chat_record, tag_rows
from tongbu.config import DEFAULT_TENANT

CHAT_PREFIX = "chat:"
TAGS_KEY = "corp_tags"


#: the query parameters are checked before the body is looked at; WeCom's are 40 hex, ~10 digits, ~10 chars
_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_NONCE = 128
#: WeCom posts text/xml; a sender that omits the header is accepted, an explicit non-XML type is not
_XML_CONTENT_TYPES = frozenset({"text/xml", "application/xml", "text/plain", "application/octet-stream"})


def parse_event_xml(text: str | bytes) -> dict[str, str]:
    """The flat child elements of a decrypted WeCom event (``<xml><Event>…</Event>…</xml>``).

    Parsed with ``defusedxml`` (no DTD or entities, bounded size); raises :class:`MalformedMessage`.
    Only the first occurrence of a repeated element counts, and nested markup is read as its text.
    """
    try:
        root = parse_xml(text, what="event XML")
    except WeComCryptoError as exc:
        raise MalformedMessage(str(exc)) from None
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str):
            fields.setdefault(child.tag, (child.text or "").strip())
    return fields


class WeComEventSource(EventSource):
    """Verifies, decrypts and applies WeCom 客户联系 callbacks for one connection."""

    connector = "wecom"

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        engine: Engine,
        tenant: str = DEFAULT_TENANT,
        client: WeComClient | None = None,
    ) -> None:
        super().__init__(name, config, engine=engine, tenant=tenant)
        missing = [
            k for k in ("corp_id", "corp_secret", "callback_token", "encoding_aes_key") if not config.get(k)
        ]
        if missing:
            raise ValueError(
                f"connection {name!r}: WeCom callbacks need {', '.join(missing)} "
                f"(store secrets with `tongbu vault set {name}.<field>`)"
            )
        self.corp_id = str(config["corp_id"])
        self.crypt = WXBizMsgCrypt(
            str(config["callback_token"]), str(config["encoding_aes_key"]), self.corp_id
        )
        # The event path fetches contacts concurrently: allow as many requests as workers.
        self.client = client or client_from_config(
            {**config, "max_concurrency": config.get("max_concurrency", 8)}, connection=name, tenant=tenant
        )
        self.writer = WeComHubWriter(engine, tenant=tenant, source_system=name, pipeline=f"{name}_events")
        self.window_s = float(config.get("timestamp_window_s", 300))

    def close(self) -> None:
        self.client.close()

    # -- intake ---------------------------------------------------------------------------------------
    def _check_query(self, query: Mapping[str, str], received_at: float) -> tuple[str, str, str]:
        sig, ts, nonce = query.get("msg_signature"), query.get("timestamp"), query.get("nonce")
        if not sig or not ts or not nonce:
            raise EventRejected(400, "msg_signature, timestamp and nonce are required")
        # Strict shapes before any work: int() alone would take ' 12', '1_2' or Arabic-Indic digits.
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 12):
            raise EventRejected(400, "timestamp is not a number")
        if len(nonce) > _MAX_NONCE or not nonce.isascii() or not nonce.isprintable():
            raise EventRejected(400, "nonce is not a short printable ASCII string")
        if len(sig) != 40 or not _HEX.issuperset(sig):
            raise EventRejected(403, "signature check failed")
        stamp = int(ts)
        if abs(received_at - stamp) > self.window_s:
            # Older than the dedup retention could remember, or from the future: a replay.
            raise EventRejected(403, "timestamp outside the accepted window")
        return sig, ts, nonce

    def verify_url(self, query: Mapping[str, str]) -> str:
        """WeCom's URL check when an admin saves the callback URL: echo the decrypted ``echostr``."""
        sig, ts, nonce = self._check_query(query, time.time())
        # base64 never contains spaces: a '+' a sender left unescaped was decoded to ' ' on the way in.
        echostr = (query.get("echostr") or "").replace(" ", "+")
        if not echostr:
            raise EventRejected(400, "echostr is required")
        if len(echostr) > 4096:
            raise EventRejected(400, "echostr is too long")
        try:
            return self.crypt.verify_url(sig, ts, nonce, echostr)
        except MalformedMessage as exc:
            raise EventRejected(400, str(exc)) from None
        except WeComCryptoError:
            raise EventRejected(403, "signature check failed") from None

    def parse(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, received_at: float
    ) -> list[InboundEvent]:
        """Verify and decrypt one callback into one event.

        Cheap checks first (query shapes, timestamp window, content type), then the signature (a linear
        scan and a SHA1), and only then XML parsing and AES; ``tongbu serve`` calls this off the loop.
        """
        sig, ts, nonce = self._check_query(query, received_at)
        ctype = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype and ctype not in _XML_CONTENT_TYPES:
            raise EventRejected(415, f"content type {ctype[:60]!r} is not XML")
        try:
            plain = self.crypt.decrypt_message(body, sig, ts, nonce)
            fields = parse_event_xml(plain)
        except InvalidSignature:
            raise EventRejected(403, "signature check failed") from None
        except MalformedMessage as exc:
            # Authentic but unusable: a clear 4xx; WeCom shows it in the callback log.
            raise EventRejected(400, str(exc)) from None
        except WeComCryptoError:
            raise EventRejected(403, "message could not be decrypted for this corp") from None
        event = fields.get("Event", "")
        change = fields.get("ChangeType", "")
        if event == "change_external_contact" and fields.get("ExternalUserID"):
            key = contact_key(fields["ExternalUserID"])
        elif event == "change_external_chat" and fields.get("ChatId"):
            key = CHAT_PREFIX + fields["ChatId"]
        elif event == "change_external_tag":
            key = TAGS_KEY  # every tag event refreshes the one tag list: coalesce them all
        else:
            key = f"other:{event or fields.get('MsgType', '?')}"
        created = fields.get("CreateTime")
        return [
            InboundEvent(
                source=self.name,
                # The signature binds timestamp, nonce and the (randomly padded) ciphertext: a replayed or
                # resent request repeats it exactly, while two real events never share one — not even two
                # edits of one contact in the same second, whose decrypted XML is byte-for-byte identical.
                dedup_key=hashlib.sha1(f"{sig}:{ts}:{nonce}".encode()).hexdigest(),
                record_key=key,
                kind=f"{event}/{change}" if change else event,
                payload=fields,
                received_at=received_at,
                occurred_at=float(created) if created and created.isdigit() else None,
            )
        ]

    # -- applying ---------------------------------------------------------------------------------------
    def prepare(self, record_key: str, events: list[InboundEvent]) -> PreparedChange:
        """Fetch the current state the events point at and map it."""
        if record_key.startswith(CONTACT_PREFIX):
            return self._prepare_contact(record_key[len(CONTACT_PREFIX) :])
        if record_key.startswith(CHAT_PREFIX):
            return self._prepare_chat(record_key[len(CHAT_PREFIX) :])
        if record_key == TAGS_KEY:
            groups = self.client.get_corp_tag_list()
            # Tag names inside contacts are refreshed by the next rescan: WeCom sends no per-contact event.
            return PreparedChange(
                write=None, observed=(f"{self.name}/corp_tags",), summary={"tags": len(tag_rows(groups))}
            )
        return PreparedChange(write=None, status="ignored", summary={"ignored": [e.kind for e in events]})

    def _prepare_contact(self, external_userid: str) -> PreparedChange:
        observed = (f"{self.name}/external_contacts",)
        writer = self.writer
        try:
            detail = self.client.get_external_contact(external_userid)
        except WeComNoRelation:
            # No follow user left (del_external_contact / del_follow_user of the last one): gone.
            def delete(conn: Connection) -> dict[str, int]:
                return {"deleted": writer.delete(conn, [external_userid]).deleted}

            return PreparedChange(
                write=delete,
                assets=("crm/contacts",),
                observed=observed,
                summary={"external_userid": external_userid, "exists": False},
            )
        record = contact_from_get(detail)
        mapped = writer.map([record])

        def write(conn: Connection) -> dict[str, int]:
            res = writer.write(conn, mapped)
            return {
                "written": res.contacts.written,
                "unchanged": res.contacts.unchanged,
                "quarantined": res.quarantined,
                "written:crm/accounts": res.accounts.written,
            }

        assets = ("crm/contacts", "crm/accounts") if mapped.accounts else ("crm/contacts",)
        return PreparedChange(
            write=write,
            assets=assets,
            observed=observed,
            summary={
                "external_userid": external_userid,
                "exists": True,
                "follow_users": record["follow_userids"],
            },
        )

    def _prepare_chat(self, chat_id: str) -> PreparedChange:
        try:
            chat = group_chat_record(self.client.get_group_chat(chat_id))
            summary: dict[str, Any] = {"chat_id": chat_id, "members": chat["member_count"], "exists": True}
        except WeComError as exc:
            if exc.errcode != 86001:
                raise
            summary = {"chat_id": chat_id, "exists": False}
        return PreparedChange(write=None, observed=(f"{self.name}/group_chats",), summary=summary)
