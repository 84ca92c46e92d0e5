"""``tongbu demo --shops``: two shops into the CRM, in real time, with buyers matched to people.

A simulated Shopify shop and a simulated Youzan (有赞) shop (real HTTP servers on free loopback ports)
are synced into a fresh SQLite hub: buyers, products and orders with lines. Buyer identity resolution
then links every buyer to a CRM person or queues it for review. ``tongbu serve`` (in this process) then
receives the shops' webhooks and push messages while orders are cancelled and refunded, and the hub
shows the new statuses. Secrets reach the project only through environment references.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from tongbu.config import tongbu_home

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {
    "shop_customers": ("shop", "customers", "contacts"),
    "shop_products": ("shop", "products", "products"),
    "shop_orders": ("shop", "orders", "sales_orders"),
    "yz_users": ("yz", "users", "contacts"),
    "yz_items": ("yz", "items", "products"),
    "yz_trades": ("yz", "trades", "sales_orders"),
}


def run_shops_demo(*, records: int = 300, console: Console | None = None) -> dict[str, Any]:
    """Run the shops demo; returns the figures it printed (tests use them)."""
    from sqlalchemy import func, select

    from connectors.kit.identity import IdentityResolver
    from connectors.kit.server import BackgroundServer
    from connectors.shopify.simulator import ShopifySimulator
    from connectors.youzan.simulator import YouzanSimulator
    from pipelines.project import load_project
    from pipelines.runner import Runner
    from tongbu.db import dispose_engines, get_engine
    from tongbu.hub.store import HubStore, hub_table
    from tongbu.migrate import upgrade_to_head
    from tongbu.serve.app import build_app

    console = console or Console()
    demo_dir = tongbu_home() / "demo-shops"
    demo_dir.mkdir(parents=True, exist_ok=True)
    db_file = demo_dir / "hub.db"
    dispose_engines()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    engine = get_engine(f"sqlite:///{db_file}")
    upgrade_to_head(engine)
    t0 = time.perf_counter()
    console.print(
        f"[bold]1.[/] starting a Shopify shop and a Youzan shop with {records:,} buyers and orders each …"
    )
    shop = ShopifySimulator(records=records, leak_rate=40.0)
    yz = YouzanSimulator(records=records)
    shop.start()
    yz.start()
    figures: dict[str, Any] = {}
    try:
        os.environ["TONGBU_DEMO_SHOP_SECRET"] = shop.CLIENT_SECRET
        os.environ["TONGBU_DEMO_YZ_SECRET"] = yz.CLIENT_SECRET
        shop_cfg = {**shop.tap_config(calls_per_second=40), "client_secret": "${TONGBU_DEMO_SHOP_SECRET}"}
        yz_cfg = {**yz.tap_config(), "client_secret": "${TONGBU_DEMO_YZ_SECRET}"}
        mapping = {"shop": "shopify_to_crm.yaml", "yz": "youzan_to_crm.yaml"}
        project_doc = {
            "version": 1,
            "tenant": "default",
            "connections": {
                "shop": {"connector": "shopify", "config": shop_cfg},
                "yz": {"connector": "youzan", "config": yz_cfg},
            },
            "pipelines": {
                name: {
                    "source": {"connection": conn, "stream": stream},
                    "mapping": str(ROOT / "mappings" / "library" / mapping[conn]),
                    "target": {"object": obj},
                }
                for name, (conn, stream, obj) in PIPELINES.items()
            },
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tongbu.yaml"
            path.write_text(yaml.safe_dump(project_doc, allow_unicode=True), encoding="utf-8")
            runner = Runner(load_project(path), engine)
            console.print("[bold]2.[/] full sync of both shops → CRM hub")
            table = Table("pipeline", "read", "written", "quarantined")
            for name in PIPELINES:
                result = runner.run(name)
                table.add_row(
                    name, f"{result.rows_read:,}", f"{result.rows_written:,}", str(result.rows_quarantined)
                )
                figures[name] = result.rows_written
            console.print(table)
        known = _known_people(shop, yz)
        with engine.begin() as conn:
            HubStore(engine).upsert(conn, "contacts", known, source_system="crm")
        console.print(
            f"[bold]3.[/] the CRM already knows {len(known)} of these buyers (other phone formats, e-mail case); "
            "buyer identity: shop buyers → CRM persons (phone, e-mail, name + address)"
        )
        resolver = IdentityResolver(engine)
        for conn in ("shop", "yz"):
            counts = resolver.resolve(conn)
            figures[f"identity_{conn}"] = counts
            console.print(
                f"   {conn}: {counts['match']} matched, {counts['new']} new, {counts['review']} to review"
            )
        console.print("[bold]4.[/] real time: webhooks and push messages through tongbu serve")
        app = build_app(
            {
                "sources": [
                    {
                        "name": "shop",
                        "connector": "shopify",
                        "config": {**shop.tap_config(), "webhook_secret": shop.CLIENT_SECRET},
                    },
                    {"name": "yz", "connector": "youzan", "config": yz.tap_config()},
                ],
                "dagster": "off",
            },
            engine=engine,
        )
        with BackgroundServer(app) as server:
            shop.webhooks.subscribe(f"{server.url}/hooks/shop", shop.CLIENT_SECRET)
            yz.pushes.subscribe(f"{server.url}/hooks/yz", yz.CLIENT_SECRET)
            order_id = shop.data.tables["orders"][0]["id"]
            tid = yz.data.tables["trades"][0]["tid"]
            shop.change_order(order_id, "cancel")
            yz.change_trade(tid, "refund")
            shop.webhooks.wait_idle(30)
            yz.pushes.wait_idle(30)
            app.state.processor.drain(30)
        store = HubStore(engine)
        with engine.connect() as conn:
            order = store.get(conn, "sales_orders", "shop", str(order_id)) or {}
            trade = store.get(conn, "sales_orders", "yz", tid) or {}
            orders = hub_table("sales_orders")
            by_channel = dict(
                conn.execute(select(orders.c.channel, func.count()).group_by(orders.c.channel)).all()
            )
        console.print(f"   Shopify order {order.get('order_no')} → status [bold]{order.get('status')}[/]")
        console.print(f"   Youzan trade {tid} → status [bold]{trade.get('status')}[/]")
        figures.update(
            shop_status=order.get("status"), yz_status=trade.get("status"), orders_by_channel=by_channel
        )
        console.print(
            f"[bold]5.[/] orders by channel in the hub: {by_channel}; took {time.perf_counter() - t0:.1f}s; hub: {db_file}"
        )
    finally:
        shop.close()
        yz.close()
        os.environ.pop("TONGBU_DEMO_SHOP_SECRET", None)
        os.environ.pop("TONGBU_DEMO_YZ_SECRET", None)
    return figures


def _known_people(shop: Any, yz: Any, share: float = 0.2) -> list[dict[str, Any]]:
    """CRM contacts for a share of each shop's buyers, written the way a sales rep would have."""
    rows: list[dict[str, Any]] = []
    customers = shop.data.tables["customers"]
    for c in customers[: int(len(customers) * share)]:
        national = (c["phone"] or "")[3:]
        rows.append(
            {
                "source_id": f"crm-s{c['id']}",
                "name": f"{c['last_name']}{c['first_name']}",
                "mobile": f"{national[:3]} {national[3:7]} {national[7:]}",
                "email": (c["email"] or "").upper() or None,
            }
        )
    users = yz.data.tables["users"]
    for u in users[: int(len(users) * share)]:
        rows.append({"source_id": f"crm-y{u['user_id']}", "name": u["name"], "mobile": f"+86{u['mobile']}"})
    return rows
