"""WeCom's error codes, as the simulator answers them (HTTP 200 with ``errcode``/``errmsg``)."""

from __future__ import annotations

import secrets
import time
from typing import Any

ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40058: "invalid Request Parameter",
    40068: "invalid tagid",
    40071: "UserTag Name Already Exist",
    40096: "invalid external userid",
    40056: "invalid agentid",
    41001: "access_token missing",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48001: "api forbidden",
    60111: "invalid string value `userid`. userid not found",
    81017: "too many chat owners, please use owner_filter",
    84061: "not external contact",
    81013: "user & party & tag all invalid",
    86001: "chat not exist",
    93000: "invalid webhook url",
}


class WeComAPIError(Exception):
    """Raised inside a handler to answer with an ``errcode`` (HTTP 200, like WeCom)."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(errcode, detail)
        self.errcode = errcode
        self.detail = detail


def error_body(code: int, detail: str = "") -> dict[str, Any]:
    """The body WeCom sends for ``code``: errmsg with a hint and the documentation link."""
    msg = ERRMSG.get(code, "error") + (f": {detail}" if detail else "")
    hint = f"[{int(time.time())}_{secrets.token_hex(4)}]"
    return {
        "errcode": code,
        "errmsg": f"{msg}, hint: {hint}, from ip: 127.0.0.1, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
    }
