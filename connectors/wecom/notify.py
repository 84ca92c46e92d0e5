"""WeCom app messages (应用消息, ``message/send``) as an alert channel (``kind: wecom_app``)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.kit.errors import ConnectorError
from connectors.kit.notify import WECOM_MAX_BYTES, Channel, Notification, NotifyError, clip_utf8
from connectors.wecom.client import WeComClient, WeComError

#: every recipient of a message is unknown (81013 "user & party & tag all invalid")
UNKNOWN_RECIPIENTS = 81013


class WeComAppChannel(Channel):
    """Alerts as app messages from a WeCom 自建应用 (``agent_id``) to employees by userid.

    WeCom accepts a message with some unknown userids and lists them in ``invaliduser``; that is a
    failed delivery for those recipients, so it raises (the notifier's ledger records who got it).
    """

    kind = "wecom_app"

    def __init__(self, name: str, *, client: WeComClient, agent_id: int, to: Sequence[str] = ()) -> None:
        super().__init__(name, to)
        self.client = client
        self.agent_id = int(agent_id)

    def send(self, n: Notification, recipients: Sequence[str]) -> None:
        if not recipients:
            raise NotifyError(f"alert channel {self.name!r}: no recipients (set `to:` in tongbu.yaml)")
        content = clip_utf8(n.text(), WECOM_MAX_BYTES)
        try:
            answer = self.client.send_app_message(self.agent_id, list(recipients), content)
        except WeComError as exc:
            if exc.errcode == UNKNOWN_RECIPIENTS:
                raise NotifyError(
                    f"alert channel {self.name!r}: WeCom does not know the userid(s) "
                    f"{', '.join(recipients)} (check `to:` in tongbu.yaml)"
                ) from None
            raise NotifyError(f"alert channel {self.name!r}: {exc}") from None
        except ConnectorError as exc:
            raise NotifyError(f"alert channel {self.name!r}: {exc}") from None
        invalid = [u for u in str(answer.get("invaliduser") or "").split("|") if u]
        if invalid:
            raise NotifyError(
                f"alert channel {self.name!r}: WeCom does not know the userid(s) {', '.join(invalid)} "
                "(check `to:` in tongbu.yaml)"
            )

    def close(self) -> None:
        self.client.close()
