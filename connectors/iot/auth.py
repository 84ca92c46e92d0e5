"""Device authentication as each platform does it (used by the simulator's devices and the embedded broker).

* ThingsBoard: the MQTT username is the device's access token; the password is empty. CONNACK 4
  for an empty username, 5 for an unknown token.
* Alibaba Cloud IoT (Alink): ``clientId = "{id}|securemode=3,signmethod=hmacsha1,timestamp={ms}|"``,
  ``username = "{deviceName}&{productKey}"``, ``password = hex(HMAC(deviceSecret,
  "clientId{id}deviceName{dn}productKey{pk}timestamp{ms}"))`` with the sign method's hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

_METHODS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}
_CLIENT_ID = re.compile(r"^([^|]{1,64})\|([^|]*)\|$")


def alink_sign_content(client_id: str, device_name: str, product_key: str, timestamp: int | str) -> str:
    """The string Alink signs."""
    return f"clientId{client_id}deviceName{device_name}productKey{product_key}timestamp{timestamp}"


def alink_password(
    device_secret: str, client_id: str, device_name: str, product_key: str, timestamp: int | str,
    signmethod: str = "hmacsha1",
) -> str:  # fmt: skip
    """The MQTT password of an Alink device."""
    digest = _METHODS[signmethod]
    content = alink_sign_content(client_id, device_name, product_key, timestamp)
    return hmac.new(device_secret.encode(), content.encode(), digest).hexdigest()


@dataclass(frozen=True)
class AlinkCredentials:
    """What an Alink device sends in CONNECT."""

    client_id: str
    username: str
    password: str


def alink_credentials(
    product_key: str, device_name: str, device_secret: str, timestamp: int, client_id: str | None = None,
    signmethod: str = "hmacsha1",
) -> AlinkCredentials:  # fmt: skip
    """CONNECT fields for an Alink device over TCP (securemode=3)."""
    cid = client_id or device_name
    return AlinkCredentials(
        client_id=f"{cid}|securemode=3,signmethod={signmethod},timestamp={timestamp}|",
        username=f"{device_name}&{product_key}",
        password=alink_password(device_secret, cid, device_name, product_key, timestamp, signmethod),
    )


def verify_alink(client_id: str, username: str | None, password: str | None, secret_of) -> bool:  # noqa: ANN001
    """Whether an Alink CONNECT is genuine; ``secret_of(product_key, device_name)`` -> secret or None."""
    m = _CLIENT_ID.match(client_id or "")
    if not m or not username or "&" not in username or not password:
        return False
    params = dict(p.split("=", 1) for p in m.group(2).split(",") if "=" in p)
    method, ts = params.get("signmethod", "hmacsha1"), params.get("timestamp", "")
    if method not in _METHODS:
        return False
    device_name, product_key = username.split("&", 1)
    secret = secret_of(product_key, device_name)
    if not secret:
        return False
    expected = alink_password(secret, m.group(1), device_name, product_key, ts, method)
    return hmac.compare_digest(expected, password.lower())
