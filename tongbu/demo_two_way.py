"""``tongbu demo --two-way``: the CRM ⇄ Kingdee story of the two-way engine, in seconds, on embedded defaults.

A simulated Kingdee K/3 Cloud (a real HTTP server on a free loopback port) and a fresh SQLite CRM hub,
synced by the project's ``syncs:`` (``accounts_kingdee``, ``sales_orders_kingdee``) through the same
runner as ``tongbu sync``:

1. the first cycle links every ERP customer to a CRM account;
2. the CRM and the ERP edit *different* fields of one account at the same time → both edits kept on
   both sides (a record-level last-writer-wins sync would lose one);
3. both edit the *same* field → a true conflict in the review queue, nothing overwritten; it is
   resolved (as ``tongbu conflicts resolve`` does) and the decision reaches the ERP;
4. a cycle with nothing new sends nothing anywhere: no echo, no ping-pong (counted at the simulator);
5. a sales order created in the CRM is created in Kingdee (Save, submitted and audited) and its ERP
   bill number, status and total come back to the CRM order.

Every step checks its claim against the simulator's truth and the hub; a broken claim fails the demo.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tongbu.config import tongbu_home

_WRITES = ("saves", "batch_saves", "submits", "audits", "unaudits", "deletes", "operations")


class DemoClaimFailed(RuntimeError):
    """A step of the demo did not show what it claims (a bug: the demo checks itself)."""


def _claim(ok: bool, what: str) -> None:
    if not ok:
        raise DemoClaimFailed(f"demo check failed: {what}")


def run_two_way_demo(*, records: int = 20, console: Console | None = None) -> dict[str, Any]:
    """Run the two-way demo; returns the figures it printed (tests use them)."""
    from connectors.kingdee.simulator import KingdeeSimulator
    from pipelines.project import find_project_file, load_project
    from pipelines.sync.project import SyncRunner
    from tongbu.db import dispose_engines, get_engine
    from tongbu.demo import _store_secret
    from tongbu.hub.api import CrmApi
    from tongbu.hub.models import RecordLink

    console = console or Console()
    t0 = time.perf_counter()
    demo_dir = tongbu_home() / "demo-two-way"
    demo_dir.mkdir(parents=True, exist_ok=True)
    db_file = demo_dir / "hub.db"
    dispose_engines()
    for suffix in ("", "-wal", "-shm"):  # every demo starts from an empty hub
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    engine = get_engine(url)
    import os

    project = load_project(os.environ.get("TONGBU_PROJECT") or find_project_file())
    for name in ("accounts_kingdee", "sales_orders_kingdee"):
        project.sync(name)  # a project without them: one line naming what is missing
    api = CrmApi(engine, project.tenant)
    links = RecordLink.__table__
    steps: dict[str, Any] = {}

    console.print(f"[bold]1.[/] Kingdee simulator with {records} customers; an empty CRM hub ({db_file})")
    sim = KingdeeSimulator(records=records, orders=2, receivables=0, seed=21)
    sim.start("127.0.0.1", 0)
    try:
        creds = sim.credentials()
        overrides = {
            "kingdee": {
                "base_url": sim.base_url,
                "acct_id": creds["acct_id"],
                "username": creds["username"],
                "password": _store_secret(engine, creds, console),
            }
        }
        runner = SyncRunner(project, engine, config_overrides=overrides)

        def cycle(name: str = "accounts_kingdee") -> Any:
            report = runner.run(name)
            _claim(not report.errors, f"{name}: {report.errors[:1]}")
            return report

        def writes() -> int:
            stats = sim.stats()
            return sum(stats.get(k, 0) for k in _WRITES)

        def erp(ext: str) -> dict[str, Any]:
            return next(t for t in sim.truth("BD_Customer") if str(t["FCUSTID"]) == str(ext))

        first = cycle()
        cycle("sales_orders_kingdee")
        with engine.connect() as conn:
            linked = sorted(
                conn.execute(
                    links.select()
                    .with_only_columns(links.c.hub_id, links.c.external_id)
                    .where(links.c.object == "accounts", links.c.state == "linked")
                ).all()
            )
        # A forbidden (禁用) customer reads as voided: it is not brought into the CRM.
        active = [t for t in sim.truth("BD_Customer") if t.get("FForbidStatus") != "B"]
        _claim(len(linked) == len(active), f"{len(active)} active customers linked, found {len(linked)}")
        console.print(
            f"   linked {len(linked)} active customers → CRM accounts "
            f"(created {first.direction('hub').created}; {records - len(active)} forbidden left out)"
        )
        steps["linked"] = len(linked)

        # 2. concurrent edits of different fields
        (a_hub, a_ext), (b_hub, b_ext) = linked[0], linked[1]
        console.print(
            "[bold]2.[/] at the same time: a sales rep edits the address in the CRM, "
            "finance edits the phone in Kingdee"
        )
        api.update("accounts", a_hub, {"address": "上海市浦东新区世纪大道100号"}, author="alice (sales)")
        sim.edit("BD_Customer", int(a_ext), {"FTEL": "021-68880000"})
        report = cycle()
        row, k = api.get("accounts", a_hub), erp(a_ext)
        _claim(
            (row["address"], row["phone"]) == ("上海市浦东新区世纪大道100号", "021-68880000"),
            "the CRM holds both edits",
        )
        _claim(
            (k["FADDRESS"], k["FTEL"]) == ("上海市浦东新区世纪大道100号", "021-68880000"),
            "Kingdee holds both edits",
        )
        console.print(
            f"   merged field by field: both sides now have address {row['address']!r} and phone "
            f"{row['phone']!r} (Kingdee: {report.direction('kingdee').updated} record updated with the CRM's "
            f"field only; CRM: {report.direction('hub').updated} record took Kingdee's field)"
        )
        steps["merged"] = {
            "address": row["address"],
            "phone": row["phone"],
            "erp_updates": report.direction("kingdee").updated,
        }

        # 3. a true conflict, reviewed and resolved
        console.print("[bold]3.[/] both rename the same customer: a true conflict")
        api.update("accounts", b_hub, {"name": "华东精密机械股份有限公司"}, author="alice (sales)")
        sim.edit("BD_Customer", int(b_ext), {"FName": "华东精密机械有限公司"})
        report = cycle()
        (conflict,) = runner.conflicts(sync="accounts_kingdee")
        _claim(report.conflicts_opened == 1, "one conflict opened")
        _claim(
            api.get("accounts", b_hub)["name"] == "华东精密机械股份有限公司"
            and erp(b_ext)["FName"] == "华东精密机械有限公司",
            "neither side overwritten while in review",
        )
        console.print(
            f"   review queue: conflict {conflict['id']} on {conflict['field']}: "
            f"CRM {conflict['hub_value']!r} (by {conflict['hub_author']}) vs "
            f"Kingdee {conflict['system_value']!r}; neither side was overwritten"
        )
        decided = runner.resolve(conflict["id"], "hub", by="bob (data owner)")
        cycle()
        _claim(erp(b_ext)["FName"] == decided, "the decision reached Kingdee")
        console.print(
            f"   `tongbu conflicts resolve {conflict['id']} --take hub` by bob: Kingdee now says {decided!r}"
        )
        steps["conflict"] = {"id": conflict["id"], "decided": decided}

        # 4. no echo
        console.print("[bold]4.[/] two more cycles with nothing new: nothing is written anywhere")
        sim.reset_stats()
        quiet = [cycle(), cycle()]
        hub_updates = sum(r.direction("hub").updated for r in quiet)
        _claim(writes() == 0 and hub_updates == 0, f"no echo (ERP writes {writes()}, hub {hub_updates})")
        console.print(
            "   0 write calls to Kingdee, 0 updates in the CRM: our own writes came back equal to "
            "their bases (write amplification "
            f"{max(r.write_amplification for r in quiet):.2f})"
        )
        steps["echo_writes"] = writes()

        # 5. lead-to-cash
        console.print("[bold]5.[/] lead-to-cash: a sales order created in the CRM")
        order_id = api.create(
            "sales_orders",
            {
                "account_ref": a_ext,
                "order_date": dt.datetime.now(dt.UTC).replace(microsecond=0),
                "currency": "CNY",
                "lines": [
                    {"line_no": 1, "product_code": "1.01.002", "qty": "2", "unit_price": "3000"},
                    {"line_no": 2, "product_code": "1.01.001", "qty": "5", "unit_price": "2600"},
                ],
            },
            author="alice (sales)",
        )
        sim.reset_stats()
        cycle("sales_orders_kingdee")
        saves = sim.stats().get("saves", 0)
        cycle("sales_orders_kingdee")
        order = api.get("sales_orders", order_id)
        _claim(bool(order["erp_number"]), "the ERP bill number came back")
        _claim(order["erp_status"] == "approved", f"the order is audited (status {order['erp_status']})")
        _claim(writes() == saves == 1, f"one Save created it (write calls {writes()})")
        console.print(
            f"   created in Kingdee with one Save (submitted and audited in it); back in the CRM: "
            f"bill number {order['erp_number']}, status {order['erp_status']}, total {order['amount']}"
        )
        steps["order"] = {
            "erp_number": order["erp_number"],
            "erp_status": order["erp_status"],
            "amount": str(order["amount"]),
        }
    finally:
        sim.close()

    elapsed = time.perf_counter() - t0
    table = Table(title="tongbu two-way demo: CRM ⇄ Kingdee")
    table.add_column("claim")
    table.add_column("shown", justify="right")
    table.add_row("disjoint edits merged (both sides)", "address + phone")
    table.add_row("true conflict queued, resolved by a person", f"conflict {steps['conflict']['id']}")
    table.add_row("echo writes after quiet cycles", str(steps["echo_writes"]))
    table.add_row("CRM order → Kingdee bill number", steps["order"]["erp_number"])
    console.print(table)
    console.print(
        f"done in {elapsed:.1f} s. Next: [bold]tongbu sync --dry-run[/], [bold]tongbu conflicts list[/] "
        f"(with TONGBU_DATABASE_URL={url})."
    )
    return {**steps, "seconds": elapsed, "database_url": url}
