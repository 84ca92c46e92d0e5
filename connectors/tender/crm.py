"""Tender projects into the CRM: one opportunity (buyer is an account) or one lead per 项目编号.

A project's notices (tender, corrections, award or termination) are folded into one record, keyed
``(source_system "tender", source_id = project_no)``, so a correction or an award advances the record
its tender made instead of adding another:

* the **buyer** is matched to an account by credit code when the notice has one, else by the
  normalised name (:func:`connectors.kit.names.company_key`); a match makes an **opportunity** on
  that account (``account_ref`` is the account's hub id), no match a **lead** (company, credit code,
  budget, channel ``tender``). When a lead's buyer later becomes an account, the lead is marked
  ``converted`` and the opportunity is made;
* **stage / status**: ``tendering`` (招标中; a correction keeps it, with the new details), then
  ``won`` when an award names us (``us``: our name or credit code), ``lost`` when it names others,
  ``cancelled`` on a termination;
* **competitor intelligence** (``extra``): every winning supplier with lot and amount, the notices
  (ids, types, URLs) in order, the budget, the award total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.kit.names import company_key
from connectors.tender.history import TenderHistory
from connectors.tender.parse import notice_kind
from tongbu.hub.store import HubStore, hub_table

SYSTEM = "tender"


@dataclass(frozen=True)
class Us:
    """Who "we" are in award notices (any of the names, or the credit code)."""

    names: tuple[str, ...] = ()
    credit_code: str | None = None

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None) -> Us:
        """From ``tenders.us`` of ``tongbu.yaml``: ``{name: …, names: […], credit_code: …}``."""
        data = data or {}
        names = [data["name"]] if data.get("name") else []
        names += list(data.get("names") or [])
        return cls(tuple(n for n in names if n), data.get("credit_code") or None)

    def is_us(self, supplier: str | None, credit_code: str | None = None) -> bool:
        """Whether a winning supplier is us."""
        if self.credit_code and credit_code and self.credit_code == credit_code:
            return True
        key = company_key(supplier)
        return bool(key) and any(company_key(n) == key for n in self.names)


@dataclass
class FoldResult:
    """What one fold wrote."""

    projects: int = 0
    opportunities: int = 0
    leads: int = 0
    written: int = 0
    won: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class AccountIndex:
    """The tenant's accounts by credit code and by normalised name (read once per fold)."""

    def __init__(self, engine: Engine, tenant: str) -> None:
        t = hub_table("accounts")
        q = sa.select(t.c.id, t.c.name, t.c.credit_code).where(
            t.c.tenant_id == tenant, t.c.deleted_at.is_(None)
        )
        self.by_code: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        with engine.connect() as c:
            for hub_id, name, code in c.execute(q):
                if code:
                    self.by_code.setdefault(str(code).upper(), int(hub_id))
                if name:
                    self.by_name.setdefault(company_key(name), int(hub_id))

    def match(self, name: str | None, credit_code: str | None) -> int | None:
        """The hub id of the buyer's account, or None."""
        if credit_code and credit_code.upper() in self.by_code:
            return self.by_code[credit_code.upper()]
        return self.by_name.get(company_key(name)) if name else None


def project_state(notices: Sequence[Mapping[str, Any]], us: Us) -> dict[str, Any]:
    """The folded state of one project from its notices (publish order)."""
    first = next((n for n in notices if notice_kind(str(n.get("notice_type"))) == "tender"), notices[0])
    latest_tender = [n for n in notices if notice_kind(str(n.get("notice_type"))) in ("tender", "correction")]
    awards = [n for n in notices if notice_kind(str(n.get("notice_type"))) == "result"]
    ended = [n for n in notices if notice_kind(str(n.get("notice_type"))) == "termination"]
    winners = [
        {
            "lot_no": lot.get("lot_no"),
            "supplier": lot.get("supplier"),
            "amount": lot.get("amount"),
            "notice_id": a["id"],
        }
        for a in awards
        for lot in a.get("lots") or []
    ]
    ours = [w for w in winners if us.is_us(w["supplier"])]
    if ended and (not awards or ended[-1]["publish_time"] > awards[-1]["publish_time"]):
        stage = "cancelled"
    elif awards:
        stage = "won" if ours else "lost"
    else:
        stage = "tendering"
    award_total = sum((Decimal(str(w["amount"])) for w in winners if w.get("amount")), Decimal(0))
    our_total = sum((Decimal(str(w["amount"])) for w in ours if w.get("amount")), Decimal(0))
    budget = next((n.get("budget") for n in reversed(latest_tender) if n.get("budget")), None)
    bid_open = next((n.get("bid_open_time") for n in reversed(latest_tender) if n.get("bid_open_time")), None)
    return {
        "project_no": first.get("project_no"),
        "name": (first.get("project_name") or first.get("title") or "")[:255],
        "buyer": first.get("buyer"),
        "buyer_credit_code": next(
            (n.get("buyer_credit_code") for n in notices if n.get("buyer_credit_code")), None
        ),
        "stage": stage,
        "budget": budget,
        "amount": str(our_total) if stage == "won" else budget,
        "bid_open_time": bid_open,
        "region": first.get("region"),
        "category": first.get("category"),
        "winners": winners,
        "competitors": sorted(
            {w["supplier"] for w in winners if w["supplier"] and not us.is_us(w["supplier"])}
        ),
        "award_total": str(award_total) if winners else None,
        "notices": [
            {
                "id": n["id"],
                "type": n.get("notice_type"),
                "published": n.get("publish_time"),
                "url": n.get("url"),
            }
            for n in notices
        ],
        "modified": notices[-1].get("publish_time"),
    }


LEAD_STATUS = {"tendering": "new", "won": "won", "lost": "lost", "cancelled": "closed"}


def fold(
    engine: Engine, history: TenderHistory, project_nos: Iterable[str], us: Us, *, tenant: str | None = None
) -> FoldResult:
    """Write the opportunity or lead of each project (idempotent: unchanged projects write nothing)."""
    tenant = tenant or history.tenant
    hub = HubStore(engine, tenant)
    accounts = AccountIndex(engine, tenant)
    result = FoldResult()
    opportunities: list[dict[str, Any]] = []
    leads: list[dict[str, Any]] = []
    for no in dict.fromkeys(p for p in project_nos if p):
        notices = history.project(no)
        if not notices:
            continue
        state = project_state(notices, us)
        result.projects += 1
        (result.won if state["stage"] == "won" else result.lost if state["stage"] == "lost" else []).append(
            no
        )
        extra = {
            k: state[k]
            for k in ("buyer", "buyer_credit_code", "budget", "region", "category", "winners", "competitors",
                      "award_total", "notices")
        }  # fmt: skip
        account = accounts.match(state["buyer"], state["buyer_credit_code"])
        if account is not None:
            opportunities.append(
                {
                    "source_id": no,
                    "source_modified_at": state["modified"],
                    "name": state["name"],
                    "account_ref": str(account),
                    "stage": state["stage"],
                    "amount": state["amount"],
                    "win_rate": {"won": 100, "lost": 0, "cancelled": 0}.get(state["stage"]),
                    "expected_close": state["bid_open_time"],
                    "extra": extra,
                }
            )
        lead_status = "converted" if account is not None else LEAD_STATUS[state["stage"]]
        if account is None or _has_lead(engine, tenant, no):
            leads.append(
                {
                    "source_id": no,
                    "source_modified_at": state["modified"],
                    "name": state["name"],
                    "company": state["buyer"],
                    "credit_code": state["buyer_credit_code"],
                    "channel": "tender",
                    "status": lead_status,
                    "budget": state["budget"],
                    "extra": extra,
                }
            )
    with engine.begin() as conn:
        if opportunities:
            res = hub.upsert(conn, "opportunities", opportunities, source_system=SYSTEM)
            result.written += res.written
        if leads:
            res = hub.upsert(conn, "leads", leads, source_system=SYSTEM)
            result.written += res.written
    result.opportunities, result.leads = (
        len(opportunities),
        len([r for r in leads if r["status"] != "converted"]),
    )
    return result


def _has_lead(engine: Engine, tenant: str, project_no: str) -> bool:
    t = hub_table("leads")
    q = sa.select(t.c.id).where(
        t.c.tenant_id == tenant, t.c.source_system == SYSTEM, t.c.source_id == project_no
    )
    with engine.connect() as c:
        return c.execute(q.limit(1)).first() is not None
