"""Helpers for the WeCom connector's tests and benchmarks (not shipped with the package).

* :func:`point_wechatpy_at` — make a stock ``wechatpy`` client talk to the simulator. Its
  ``API_BASE_URL`` is the documented switch; wechatpy 1.8's ``fetch_access_token`` however hard-codes
  ``https://qyapi.weixin.qq.com/cgi-bin/gettoken``, so the client's own ``requests`` session also gets
  a transport adapter that sends that host to the simulator (the client's code is not changed).
* :func:`serve_config` — a ``tongbu serve`` config for a simulator's corp.
* :func:`hub_mismatches` — compare the hub with the simulator's truth (what the fault tests assert).
* :func:`client_for` — a :class:`WeComClient` for a simulator with fast test retries.

The running simulator itself is the ``sim`` fixture of ``tests/conftest.py``: a test module (or one
test) chooses its corp with ``@pytest.mark.wecom_sim(records=..., seed=...)``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from connectors.wecom.client import DEFAULT_BASE_URL, RetryPolicy, WeComClient
from connectors.wecom.hub import WeComHubWriter
from connectors.wecom.records import contact_from_get


def client_for(sim: Any, **retry: Any) -> WeComClient:
    """A client of ``sim``'s corp whose retries wait milliseconds (``retry`` overrides the policy)."""
    policy = {"backoff_base": 0.001, "backoff_max": 0.01, **retry}
    return WeComClient(
        sim.corp_id, sim.credentials()["corp_secret"], base_url=sim.base_url, retry=RetryPolicy(**policy)
    )


def point_wechatpy_at(client: Any, base_url: str) -> Any:
    """Redirect a ``wechatpy.enterprise.WeChatClient`` (or ``wechatpy.work``) to ``base_url``."""
    from requests.adapters import HTTPAdapter

    base = base_url.rstrip("/")

    class _Redirect(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - requests' own signature
            request.url = base + request.url[len(DEFAULT_BASE_URL) :]
            return super().send(request, **kwargs)

    client.API_BASE_URL = base + "/cgi-bin/"
    client._http.mount(DEFAULT_BASE_URL, _Redirect())
    return client


def serve_config(sim: Any, *, name: str = "wecom", **options: Any) -> dict[str, Any]:
    """``build_app`` config serving one WeCom connection against a running simulator."""
    cred = sim.credentials()
    config = {
        "corp_id": cred["corp_id"],
        "corp_secret": cred["corp_secret"],
        "base_url": sim.base_url,
        "callback_token": cred["callback_token"],
        "encoding_aes_key": cred["encoding_aes_key"],
        "backoff_base": 0.01,
        **options.pop("source_config", {}),
    }
    return {"sources": [{"name": name, "connector": "wecom", "config": config}], "dagster": "off", **options}


def hub_mismatches(engine: Engine, sim: Any, writer: WeComHubWriter) -> dict[str, Any]:
    """How the hub's live WeCom contacts differ from the simulator's truth.

    Returns ``missing`` (in WeCom, not live in the hub), ``extra`` (live in the hub, gone from WeCom),
    ``different`` (mapped fields differ), ``duplicates`` (source ids present more than once).
    """
    from tongbu.hub.store import hub_table

    table = hub_table("contacts")
    truth: dict[str, dict[str, Any]] = {}
    for detail in sim.truth_contacts():
        rec = contact_from_get(detail)
        truth[rec["external_userid"]] = writer.contacts_mapping.apply(rec)
    cols = [
        table.c[k]
        for k in next(iter(truth.values()), {"source_id": None})
        if k in table.c and k != "source_system"
    ]
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(*cols).where(
                    table.c.tenant_id == writer.tenant,
                    table.c.source_system == writer.source_system,
                    table.c.deleted_at.is_(None),
                )
            )
            .mappings()
            .all()
        )
        dupes = conn.execute(
            select(table.c.source_id)
            .where(table.c.tenant_id == writer.tenant)
            .group_by(table.c.source_system, table.c.source_id)
            .having(func.count() > 1)
        ).all()
    hub = {r["source_id"]: dict(r) for r in rows}
    different = []
    for sid, want in truth.items():
        have = hub.get(sid)
        if have is None:
            continue
        for k, v in want.items():
            if k != "source_system" and have.get(k) != v:
                different.append((sid, k))
                break
    return {
        "missing": sorted(set(truth) - set(hub)),
        "extra": sorted(set(hub) - set(truth)),
        "different": different,
        "duplicates": [d[0] for d in dupes],
    }
