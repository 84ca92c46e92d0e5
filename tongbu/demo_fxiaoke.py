"""The Fxiaoke ⇄ Kingdee demo: the sales team's CRM and the ERP kept in sync through the hub.

``tongbu demo --fxiaoke`` starts both simulators (seeded so their companies overlap: the same credit
codes, names typed differently, some on one side only), a fresh SQLite hub, and the two-way engine
with the declarations of ``mappings/library/sync/fxiaoke.yaml``; then it shows, cycle by cycle:

1. the first cycle: companies on both sides linked by credit code, the others created on the side
   that lacks them, names that disagree sent to review (and decided);
2. a customer created in Fxiaoke reaching Kingdee once, its ERP number coming back;
3. the ERP raising a credit limit, the CRM upgrading a grade: each reaches the other side within one
   cycle; a sales rep's edit of the ERP-owned credit limit put back;
4. the API calls each side received, and what the engine wrote per real change.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
KD_WRITES = (
    "saves",
    "batch_saves",
    "submits",
    "audits",
    "unaudits",
    "cancel_assigns",
    "deletes",
    "operations",
)
FX_WRITES = ("creates", "updates", "invalids", "deletes", "change_owners")


def run_fxiaoke_demo(*, records: int = 50, console: Console | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns its figures."""
    from connectors.fxiaoke.client import FxiaokeClient
    from connectors.fxiaoke.simulator import FxiaokeSimulator
    from connectors.fxiaoke.spoke import FxiaokeSpoke
    from connectors.kingdee.client import KingdeeClient
    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.spoke import KingdeeSpoke
    from connectors.kit import uscc
    from pipelines.sync.config import build_pairs
    from pipelines.sync.engine import SyncEngine
    from tongbu.db import get_engine

    console = console or Console()
    home = Path(tempfile.mkdtemp(prefix="tongbu-fxiaoke-demo-"))
    os.environ.setdefault("TONGBU_HOME", str(home))
    hub = get_engine(f"sqlite:///{home / 'hub.db'}")
    pair = {
        p.name: p
        for p in build_pairs(
            yaml.safe_load((ROOT / "mappings/library/sync/fxiaoke.yaml").read_text())["sync"]
        )
    }["accounts_fxiaoke_kingdee"]
    with (
        KingdeeSimulator(records=records, orders=0, receivables=0, seed=5) as kd,
        FxiaokeSimulator(
            records=records, seed=5, contacts=0, leads=0, opportunities=0, orders=0, payments=0
        ) as fx,
    ):
        kc = kd.credentials()
        kclient = KingdeeClient(
            kd.base_url, acct_id=kc["acct_id"], username=kc["username"], password=kc["password"]
        )
        fc = fx.credentials()
        fclient = FxiaokeClient(
            fx.base_url,
            app_id=fc["app_id"],
            app_secret=fc["app_secret"],
            permanent_code=fc["permanent_code"],
            open_user_id=fc["open_user_id"],
        )
        engine = SyncEngine(hub, pair, [FxiaokeSpoke(fclient), KingdeeSpoke(kclient)])
        try:
            console.print(
                f"[bold]Fxiaoke ⇄ hub ⇄ Kingdee[/]: {records} accounts on each side, hub {home / 'hub.db'}"
            )
            first = engine.run()
            conflicts = engine.conflicts()
            console.print(
                f"1. first cycle: read {first.read}, created in Fxiaoke {first.direction('fxiaoke').created}, "
                f"in Kingdee {first.direction('kingdee').created}; {len(conflicts)} differing values sent to review"
            )
            for c in conflicts:
                engine.resolve(c["id"], "hub", by="demo-reviewer")
            engine.run()
            engine.run()
            kd.reset_stats()
            fx.reset_stats()

            code = "91330100MA2B0000" + "9" + uscc.check_char("91330100MA2B00009")
            new_id = fclient.create(
                "AccountObj",
                {
                    "name": "杭州同步演示科技有限公司",
                    "uniform_social_credit_code": code,
                    "tel": "0571-88886666",
                },
            )
            engine.run()
            engine.run()
            kd_row = next(r for r in kd.truth("BD_Customer") if r["FSOCIALCRECODE"] == code)
            fx_row = next(r for r in fx.truth("AccountObj") if r["_id"] == new_id)
            console.print(
                f"2. created in Fxiaoke → Kingdee customer {kd_row['FNumber']} ({kd_row['FName']}); "
                f"Fxiaoke now shows ERP number {fx_row['erp_number__c']}"
            )

            linked = _linked(hub)
            hub_id, fx_id, kd_id = linked[0]
            kd.edit("BD_Customer", int(kd_id), {"F_PAEZ_CreditLimit": 880000.0})
            fx.edit("AccountObj", fx_id, {"account_level": "1"})
            other_fx = linked[1][1]
            fx.edit("AccountObj", other_fx, {"credit_limit__c": "99999999"})
            report = engine.run()
            row = next(r for r in fx.truth("AccountObj") if r["_id"] == fx_id)
            other = next(r for r in fx.truth("AccountObj") if r["_id"] == other_fx)
            console.print(
                f"3. one cycle later: Fxiaoke credit limit {row['credit_limit__c']} (from the ERP), grade "
                f"{row['account_level']} kept (the CRM owns it); a rep's credit limit edit put back to "
                f"{other['credit_limit__c']} ({report.reverted} reverted, audited)"
            )
            for _ in range(2):
                engine.run()
            kd_w = sum(kd.stats()[k] for k in KD_WRITES)
            fx_w = sum(fx.stats()[k] for k in FX_WRITES)
            table = Table(title="API calls after the first cycles")
            table.add_column("system")
            table.add_column("requests", justify="right")
            table.add_column("writes", justify="right")
            table.add_row("Kingdee", str(kd.stats()["requests"]), str(kd_w))
            table.add_row("Fxiaoke", str(fx.stats()["requests"]), str(fx_w))
            console.print(table)
            # Real changes since the counters were reset: the new customer (to Kingdee, and its
            # number back to Fxiaoke), the ERP's credit limit (to Fxiaoke), the rep's edit (put back).
            console.print(
                f"4. writes: {kd_w} to Kingdee and {fx_w} to Fxiaoke for 4 real changes; "
                "the grade stayed in the CRM and nothing was echoed back"
            )
            return {"kingdee_writes": kd_w, "fxiaoke_writes": fx_w, "conflicts_reviewed": len(conflicts)}
        finally:
            kclient.close()
            fclient.close()


def _linked(hub: Any) -> list[tuple[int, str, str]]:
    from sqlalchemy import text

    with hub.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT hub_id, system, external_id FROM record_links WHERE object='accounts' AND state='linked'"
            )
        ).all()
    by: dict[int, dict[str, str]] = {}
    for hub_id, system, ext in rows:
        by.setdefault(hub_id, {})[system] = ext
    return [
        (h, s["fxiaoke"], s["kingdee"]) for h, s in sorted(by.items()) if "fxiaoke" in s and "kingdee" in s
    ]
