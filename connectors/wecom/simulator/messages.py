"""应用消息 (``message/send``) and the group robot webhook (``webhook/send``), as WeCom answers them.

What was delivered is kept for tests and the demo (``GET /_sim/messages``, ``GET /_sim/robot_messages``).
Real behaviour kept on purpose:

* ``message/send`` answers errcode 0 even when some recipients are unknown, listing them in
  ``invaliduser`` (``|``-separated); only when *every* recipient is invalid is it error 81013;
* text/markdown content over 2,048 bytes is error 45002, an empty one 44004, a wrong ``agentid`` 40056;
* with ``enable_duplicate_check`` the same content to the same recipients within
  ``duplicate_check_interval`` seconds (default 1,800) is accepted but not delivered again;
* the robot webhook authenticates by its ``key`` (no access_token), allows 20 messages a minute per
  robot (45009 beyond), and answers 93000 for an unknown key.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from typing import Any

from connectors.wecom.simulator.errors import WeComAPIError

MAX_CONTENT_BYTES = 2048
ROBOT_PER_MINUTE = 20
#: the agent id of the simulated 自建应用 that sends app messages
DEFAULT_AGENT_ID = 1000002


class MessageDesk:
    """The messages one simulated corp received, and the robots it knows."""

    def __init__(self, user_ids: set[str], *, agent_id: int = DEFAULT_AGENT_ID, robot_key: str = "") -> None:
        self.user_ids = user_ids
        self.agent_id = agent_id
        self.robot_key = robot_key or secrets.token_hex(16)
        self.messages: list[dict[str, Any]] = []
        self.robot_messages: list[dict[str, Any]] = []
        self._robot_minute: collections.deque[float] = collections.deque()
        self._recent: dict[tuple[int, tuple[str, ...], str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _content(body: dict[str, Any]) -> str:
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown"):
            raise WeComAPIError(40008, f"unsupported msgtype {msgtype!r} in the simulator")
        part = body.get(msgtype)
        content = part.get("content") if isinstance(part, dict) else None
        if not isinstance(content, str) or not content:
            raise WeComAPIError(44004)
        if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise WeComAPIError(45002)
        return content

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /cgi-bin/message/send``."""
        try:
            agent = int(body.get("agentid"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise WeComAPIError(40056) from None
        if agent != self.agent_id:
            raise WeComAPIError(40056)
        content = self._content(body)
        touser = str(body.get("touser") or "")
        wanted = [u for u in touser.split("|") if u]
        if touser == "@all":
            wanted = sorted(self.user_ids)
        valid = [u for u in wanted if u in self.user_ids]
        invalid = [u for u in wanted if u not in self.user_ids]
        if not valid:
            raise WeComAPIError(81013)
        msgid = secrets.token_hex(12)
        with self._lock:
            if body.get("enable_duplicate_check") in (1, "1", True):
                window = float(body.get("duplicate_check_interval") or 1800)
                fingerprint = (agent, tuple(valid), content)
                seen = self._recent.get(fingerprint)
                now = time.time()
                if seen is not None and now - seen[0] < window:
                    return {
                        "invaliduser": "|".join(invalid),
                        "invalidparty": "",
                        "invalidtag": "",
                        "msgid": seen[1],
                    }
                self._recent[fingerprint] = (now, msgid)
            self.messages.append(
                {
                    "msgid": msgid,
                    "agentid": agent,
                    "touser": valid,
                    "msgtype": body["msgtype"],
                    "content": content,
                    "received_at": time.time(),
                }
            )
        return {"invaliduser": "|".join(invalid), "invalidparty": "", "invalidtag": "", "msgid": msgid}

    def robot_send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /cgi-bin/webhook/send?key=…``."""
        if not secrets.compare_digest(key.encode(), self.robot_key.encode()):
            raise WeComAPIError(93000)
        content = self._content(body)
        now = time.monotonic()
        with self._lock:
            while self._robot_minute and now - self._robot_minute[0] > 60:
                self._robot_minute.popleft()
            if len(self._robot_minute) >= ROBOT_PER_MINUTE:
                raise WeComAPIError(45009)
            self._robot_minute.append(now)
            part = body[body["msgtype"]]
            self.robot_messages.append(
                {
                    "msgtype": body["msgtype"],
                    "content": content,
                    "mentioned_list": list(part.get("mentioned_list") or []),
                    "received_at": time.time(),
                }
            )
        return {}
