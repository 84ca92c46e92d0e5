"""Two-way sync acceptance benchmarks (issue 10), each with its baseline measured in the same run.

Against the Kingdee simulator (a real HTTP server, in this process) and a fresh SQLite hub (or
PostgreSQL with ``--postgres URL`` for T6):

* **T1 disjoint edits**: ``--accounts`` linked accounts; in one window the CRM edits name and phone
  and Kingdee edits address and industry of every account, in a random order per account. The engine
  runs two cycles; lost field edits are counted on both sides. **Baseline**: record-level
  last-writer-wins (Heroku Connect's model) applied to the same edited records: the side edited last
  overwrites the whole record on the other side.
* **T4 write amplification**: ``--edits`` random edits on both sides of ``--t4-accounts`` accounts
  in five sync windows;
  write calls counted at the simulator per record that really needed a write there, and writes back
  to the system a change came from. **Baseline** (modelled from the same edit log, not run): a naive
  two-way copy that writes every record changed on one side to the other with no base and no echo
  suppression, so each copy is seen as a change on the receiving side and copied back once.
* **T6 race**: ``--creates`` concurrent creates of one company (same credit code), half through the
  CRM API and half arriving from Kingdee through a sync cycle running at the same time → hub
  records, Kingdee records and links with that code. **Baseline**: the same concurrent creates through
  a check-then-insert without the CRM API's key lock.
* **Reconciliation**: ``--reconcile-accounts`` unchanged linked accounts (seeded in bulk, then
  verified unchanged): a full ``run(reconcile=True)``, wall time and the engine's share (the scan
  replayed from memory). **Baseline**: the scan alone (reading every record from Kingdee).

    python benchmarks/two_way.py [--accounts 10000] [--edits 1000] [--creates 100]
                                 [--reconcile-accounts 100000] [--only t1,t4,t6,reconcile] [--json]

With ``--json`` the last line holds every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRITES = ("saves", "batch_saves", "submits", "audits", "unaudits", "deletes", "operations")


def _pairs() -> dict[str, Any]:
    import yaml

    from pipelines.sync.config import build_pairs

    raw = yaml.safe_load((ROOT / "mappings/library/sync/kingdee.yaml").read_text(encoding="utf-8"))
    return {p.name: p for p in build_pairs(raw["sync"])}


def _client(sim: Any) -> Any:
    from connectors.kingdee.client import KingdeeClient

    c = sim.credentials()
    return KingdeeClient(
        sim.base_url, acct_id=c["acct_id"], username=c["username"], password=c["password"], max_retries=3
    )


def _fresh_hub(tag: str, url: str | None = None) -> Any:
    from tongbu.db import get_engine

    if url:
        return get_engine(url)
    return get_engine(f"sqlite:///{Path(os.environ['TONGBU_HOME']) / f'{tag}.db'}")


def _links(engine: Any, obj: str = "accounts") -> list[tuple[int, str]]:
    from sqlalchemy import select

    from tongbu.hub.models import RecordLink

    t = RecordLink.__table__
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                select(t.c.hub_id, t.c.external_id).where(t.c.object == obj, t.c.state == "linked")
            ).all()
        )


def _writes(sim: Any) -> int:
    stats = sim.stats()
    return sum(stats.get(k, 0) for k in WRITES)


# -- T1 ---------------------------------------------------------------------------------------------------
def t1(n: int, say: Any) -> dict[str, Any]:
    from sqlalchemy import text

    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.spoke import KingdeeSpoke
    from pipelines.sync.engine import SyncEngine
    from tongbu.hub.api import CrmApi

    hub = _fresh_hub("t1")
    api = CrmApi(hub)
    with KingdeeSimulator(records=n, orders=0, receivables=0, seed=101) as sim:
        client = _client(sim)
        sync = SyncEngine(hub, _pairs()["accounts_kingdee"], [KingdeeSpoke(client)])
        t0 = time.perf_counter()
        sync.run()
        say(f"T1: linked {n:,} accounts in {time.perf_counter() - t0:.1f} s")
        rng = random.Random(1)
        linked = _links(hub)
        edited: dict[int, dict[str, Any]] = {}
        last_side: dict[int, str] = {}
        for i, (hub_id, ext) in enumerate(linked):
            crm = {"name": f"CRM改名{i}", "phone": f"010-{6000_0000 + i}"}
            erp = {"FADDRESS": f"ERP地址{i}", "FDomains": f"行业{i}"}
            order = ["crm", "erp"] if rng.random() < 0.5 else ["erp", "crm"]
            for side in order:
                if side == "crm":
                    api.update("accounts", hub_id, crm, author="alice")
                else:
                    sim.edit("BD_Customer", int(ext), erp)
            last_side[hub_id] = order[-1]
            edited[hub_id] = {"crm": crm, "erp": {"address": erp["FADDRESS"], "industry": erp["FDomains"]}}
        total_edits = sum(len(e["crm"]) + len(e["erp"]) for e in edited.values())

        # Baseline: record-level last-writer-wins over the same edited records, as they stand now.
        with hub.connect() as conn:
            hub_rows = {r["id"]: dict(r) for r in conn.execute(text("SELECT * FROM accounts")).mappings()}
        truth = {str(t["FCUSTID"]): t for t in sim.truth("BD_Customer")}
        erp_as_hub = {"name": "FName", "phone": "FTEL", "address": "FADDRESS", "industry": "FDomains"}
        lww_lost = 0
        for hub_id, ext in linked:
            winner = last_side[hub_id]  # the record written last replaces the other side's record
            for fields in edited[hub_id].values():
                for name, value in fields.items():
                    if winner == "crm":
                        final = hub_rows[hub_id][name]
                    else:
                        final = truth[ext][erp_as_hub[name]]
                    lww_lost += final != value

        sim.reset_stats()
        t0 = time.perf_counter()
        r1 = sync.run()
        r2 = sync.run()
        merge_s = time.perf_counter() - t0
        with hub.connect() as conn:
            hub_rows = {r["id"]: dict(r) for r in conn.execute(text("SELECT * FROM accounts")).mappings()}
        truth = {str(t["FCUSTID"]): t for t in sim.truth("BD_Customer")}
        lost = 0
        for hub_id, ext in linked:
            for fields in edited[hub_id].values():
                for name, value in fields.items():
                    lost += hub_rows[hub_id][name] != value
                    lost += truth[ext][erp_as_hub[name]] != value
        third = sync.run()
        client.close()
    result = {
        "accounts": n,
        "field_edits": total_edits,
        "merge_lost_edits": lost,
        "lww_lost_edits": lww_lost,
        "lww_lost_share": round(lww_lost / total_edits, 3),
        "cycles_to_equal": 2,
        "merge_seconds_two_cycles": round(merge_s, 2),
        "kingdee_write_calls": r1.direction("kingdee").writes + r2.direction("kingdee").writes,
        "conflicts": r1.conflicts_opened + r2.conflicts_opened,
        "third_cycle_writes": third.direction("kingdee").writes + third.direction("hub").updated,
    }
    say(
        f"T1: {total_edits:,} field edits; lost by the merge: {lost} (on either side, after 2 cycles); "
        f"lost by record-level LWW: {lww_lost:,} ({result['lww_lost_share']:.0%}); "
        f"two cycles {merge_s:.1f} s"
    )
    return result


# -- T4 ---------------------------------------------------------------------------------------------------
def t4(n: int, edits: int, say: Any) -> dict[str, Any]:
    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.spoke import KingdeeSpoke
    from pipelines.sync.engine import SyncEngine
    from tongbu.hub.api import CrmApi

    hub = _fresh_hub("t4")
    api = CrmApi(hub)
    with KingdeeSimulator(records=n, orders=0, receivables=0, seed=44) as sim:
        client = _client(sim)
        sync = SyncEngine(hub, _pairs()["accounts_kingdee"], [KingdeeSpoke(client)])
        sync.run()
        linked = _links(hub)
        rng = random.Random(4)
        crm_edited: set[int] = set()
        erp_edited: set[str] = set()
        windows, per_window = 5, max(edits // 5, 1)
        naive_erp_writes = naive_hub_writes = 0
        sim.reset_stats()
        hub_updates = 0
        echo_back = 0
        for w in range(windows):
            crm_w: set[int] = set()
            erp_w: set[str] = set()
            for _ in range(per_window):
                hub_id, ext = rng.choice(linked)
                if rng.random() < 0.5:
                    api.update("accounts", hub_id, {"address": f"地址{rng.randrange(10**6)}"}, author="u")
                    crm_w.add(hub_id)
                else:
                    sim.edit("BD_Customer", int(ext), {"FTEL": f"0571-{rng.randrange(10**7, 10**8)}"})
                    erp_w.add(ext)
            # Baseline: copy every changed record to the other side, and (no echo suppression) the
            # copies show up as changes on the receiving side and are copied back once.
            naive_erp_writes += len(crm_w) + len(erp_w)
            naive_hub_writes += len(erp_w) + len(crm_w)
            report = sync.run()
            hub_updates += report.direction("hub").updated
            echo_back += report.direction("kingdee").echoes
            crm_edited |= {(w, h) for h in crm_w}  # type: ignore[arg-type]
            erp_edited |= {(w, e) for e in erp_w}  # type: ignore[arg-type]
        for _ in range(3):  # quiet cycles: anything written now is an echo
            report = sync.run()
            hub_updates += report.direction("hub").updated
        erp_writes = sim.stats().get("saves", 0) + sim.stats().get("batch_saves", 0)
        calls = _writes(sim)
        # Both sides must end equal on the edited fields: no edit lost.
        truth = {str(t["FCUSTID"]): t for t in sim.truth("BD_Customer")}
        unequal = 0
        for hub_id, ext in linked:
            row = api.get("accounts", hub_id)
            if (row["address"], row["phone"]) != (truth[ext]["FADDRESS"], truth[ext]["FTEL"]):
                unequal += 1
                if os.environ.get("TWO_WAY_DEBUG"):
                    say(
                        f"  unequal {hub_id}/{ext}: hub {row['address']!r} {row['phone']!r} "
                        f"kingdee {truth[ext]['FADDRESS']!r} {truth[ext]['FTEL']!r}"
                    )
        client.close()
    needed_erp = len(crm_edited)
    needed_hub = len(erp_edited)
    result = {
        "edits": windows * per_window,
        "kingdee_records_needing_a_write": needed_erp,
        "kingdee_save_calls": erp_writes,
        "kingdee_write_calls_incl_lifecycle": calls,
        "write_amplification_kingdee": round(erp_writes / max(needed_erp, 1), 3),
        "hub_records_needing_an_update": needed_hub,
        "hub_updates": hub_updates,
        "write_amplification_hub": round(hub_updates / max(needed_hub, 1), 3),
        "writes_back_to_origin": echo_back,
        "records_unequal_after": unequal,
        "naive_kingdee_writes": naive_erp_writes,
        "naive_write_amplification_kingdee": round(naive_erp_writes / max(needed_erp, 1), 3),
        "naive_hub_writes": naive_hub_writes,
    }
    say(
        f"T4: {result['edits']:,} edits; Kingdee Saves {erp_writes} for {needed_erp} records needing one "
        f"(amplification {result['write_amplification_kingdee']:.2f}; lifecycle calls incl.: {calls}); "
        f"hub updates {hub_updates} for {needed_hub} ({result['write_amplification_hub']:.2f}); "
        f"records unequal after: {unequal}; "
        f"naive copy: {naive_erp_writes} Kingdee writes ({result['naive_write_amplification_kingdee']:.2f})"
    )
    return result


# -- T6 ---------------------------------------------------------------------------------------------------
def t6(creates: int, pg_url: str | None, say: Any) -> dict[str, Any]:
    from sqlalchemy import func, insert, select

    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.spoke import KingdeeSpoke
    from connectors.kit import uscc
    from pipelines.sync.engine import SyncEngine
    from tongbu.hub.api import CrmApi, DuplicateRecordError
    from tongbu.hub.models import RecordLink
    from tongbu.hub.store import hub_table
    from tongbu.state.store import PipelineLocked

    code = "91440300MA5F" + "00001" + "0"
    code = code[:17] + uscc.check_char(code[:17])
    results: dict[str, Any] = {"creates": creates, "database": "postgresql" if pg_url else "sqlite"}
    t = hub_table("accounts")

    def count(engine: Any) -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(t.c.credit_code == code)).scalar_one())

    # Baseline: check-then-insert from many threads, without the CRM API's lock and duplicate check.
    base = _fresh_hub("t6_base", pg_url and _scratch_pg(pg_url, "t6_base"))
    barrier = threading.Barrier(creates)

    def naive(i: int) -> None:
        barrier.wait()
        with base.begin() as conn:
            exists = conn.execute(select(t.c.id).where(t.c.credit_code == code)).first()
            if exists is None:
                conn.execute(
                    insert(t).values(
                        tenant_id="default",
                        source_system="hub",
                        source_id=f"n{i}",
                        row_hash="x",
                        name="深圳市同步科技有限公司",
                        credit_code=code,
                    )
                )

    _threads(naive, creates)
    results["baseline_hub_records"] = count(base)

    hub = _fresh_hub("t6", pg_url and _scratch_pg(pg_url, "t6"))
    api = CrmApi(hub)
    with KingdeeSimulator(records=3, orders=0, receivables=0, seed=6) as sim:
        client = _client(sim)
        spoke = KingdeeSpoke(client)
        sync = SyncEngine(hub, _pairs()["accounts_kingdee"], [spoke])
        sync.run()
        # Half the creates happen in Kingdee (the same company keyed in by ERP users: one is saved,
        # the rest refused by Kingdee's own number rule or never linked twice), half in the CRM.
        erp_side, crm_side = creates // 2, creates - creates // 2
        barrier = threading.Barrier(creates + 1)
        outcomes = {"crm_created": 0, "crm_refused_duplicate": 0, "erp_saved": 0, "erp_refused": 0}
        lock = threading.Lock()

        def crm(i: int) -> None:
            barrier.wait()
            try:
                api.create(
                    "accounts", {"name": "深圳市同步科技有限公司", "credit_code": code}, author=f"rep{i}"
                )
                key = "crm_created"
            except DuplicateRecordError:
                key = "crm_refused_duplicate"
            with lock:
                outcomes[key] += 1

        def erp(i: int) -> None:
            barrier.wait()
            try:
                spoke.create(
                    "accounts",
                    {"name": "深圳市同步科技有限公司", "credit_code": code, "number": "CUST-T6"},
                    f"erp-user-{i}",
                )
                key = "erp_saved"
            except Exception:  # noqa: BLE001 - Kingdee refuses a second FNumber CUST-T6
                key = "erp_refused"
            with lock:
                outcomes[key] += 1

        def cycles() -> None:
            barrier.wait()
            for _ in range(3):
                with contextlib.suppress(PipelineLocked):  # the other cycle holds the lease
                    sync.run()

        threads = [threading.Thread(target=crm, args=(i,)) for i in range(crm_side)]
        threads += [threading.Thread(target=erp, args=(i,)) for i in range(erp_side)]
        threads.append(threading.Thread(target=cycles))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for _ in range(3):
            sync.run()
        erp_records = [x for x in sim.truth("BD_Customer") if x.get("FSOCIALCRECODE") == code]
        lt = RecordLink.__table__
        with hub.connect() as conn:
            hub_ids = [r[0] for r in conn.execute(select(t.c.id).where(t.c.credit_code == code))]
            link_count = int(
                conn.execute(
                    select(func.count()).where(lt.c.object == "accounts", lt.c.hub_id.in_(hub_ids or [-1]))
                ).scalar_one()
            )
        client.close()
    results.update(outcomes)
    results.update(
        {
            "hub_records": len(hub_ids),
            "kingdee_records": len(erp_records),
            "links": link_count,
            "duplicates": (len(hub_ids) - 1) + (len(erp_records) - 1) + (link_count - 1),
        }
    )
    say(
        f"T6: {creates} concurrent creates ({results['database']}): hub {len(hub_ids)}, Kingdee "
        f"{len(erp_records)}, links {link_count} → duplicates {results['duplicates']}; "
        f"baseline check-then-insert: {results['baseline_hub_records']} hub records"
    )
    return results


def _scratch_pg(url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    db = f"tongbu_bench_{name}_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    return make_url(url).set(database=db).render_as_string(hide_password=False)


def _threads(fn: Any, n: int) -> None:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# -- reconciliation ---------------------------------------------------------------------------------------
class _Replay:
    """The spoke with its scan answered from memory: times the engine alone."""

    def __init__(self, spoke: Any, records: list[Any]) -> None:
        self._spoke, self._records, self.system = spoke, records, spoke.system

    def scan(self, object_name: str) -> list[Any]:
        return self._records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spoke, name)


def reconcile(n: int, say: Any) -> dict[str, Any]:
    import datetime as dt

    from sqlalchemy import insert, select

    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.spoke import KingdeeSpoke
    from pipelines.sync.engine import SyncEngine
    from pipelines.sync.models import SyncEntity
    from tongbu.canon import canon, canonical_hash
    from tongbu.hub.api import CrmApi
    from tongbu.hub.models import RecordLink
    from tongbu.hub.store import hub_table

    hub = _fresh_hub("reconcile")
    pair = _pairs()["accounts_kingdee"]
    t0 = time.perf_counter()
    with KingdeeSimulator(records=n, orders=0, receivables=0, seed=9) as sim:
        say(f"reconcile: simulator with {n:,} customers seeded in {time.perf_counter() - t0:.1f} s")
        client = _client(sim)
        spoke = KingdeeSpoke(client)
        sync = SyncEngine(hub, pair, [spoke])
        # Baseline: the scan alone (every record read from Kingdee and translated).
        t0 = time.perf_counter()
        records = [r for r in spoke.scan("accounts") if not r.deleted]
        scan_s = time.perf_counter() - t0
        # Seed hub rows, links and engine state in bulk, as a first cycle would leave them.
        t0 = time.perf_counter()
        api = CrmApi(hub)
        table = hub_table("accounts")
        now = dt.datetime.now(dt.UTC)
        rows = []
        canon_values = []
        for r in records:
            values = {k: canon(v) for k, v in r.values.items() if k in sync._types}
            canon_values.append(values)
            decoded = {k: sync._decode(k, v) for k, v in values.items()}
            rows.append(
                {
                    **decoded,
                    "tenant_id": "default",
                    "source_system": "kingdee",
                    "source_id": r.external_id,
                    "row_hash": api._row_hash("accounts", decoded),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with hub.begin() as conn:
            for i in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[i : i + 5000])
            ids = dict(conn.execute(select(table.c.source_id, table.c.id)).all())
            links, entities = [], []
            for r, values in zip(records, canon_values, strict=True):
                hub_id = ids[r.external_id]
                links.append(
                    {
                        "tenant_id": "default",
                        "object": "accounts",
                        "hub_id": hub_id,
                        "system": "kingdee",
                        "external_id": r.external_id,
                        "snapshot": values,
                        "snapshot_hash": canonical_hash(values),
                        "version": 1,
                        "state": "linked",
                        "synced_at": now,
                        "source_modified_at": r.modified_at,
                    }
                )
                snapshot = {f: values.get(f) for f in pair.fields}
                entities.append(
                    {
                        "tenant_id": "default",
                        "pair": pair.name,
                        "object": "accounts",
                        "hub_id": hub_id,
                        "stamps": {},
                        "hub_snapshot": snapshot,
                        "hub_hash": canonical_hash({f: sync._decode(f, v) for f, v in snapshot.items()}),
                        "updated_at": now,
                    }
                )
            for i in range(0, len(links), 5000):
                conn.execute(insert(RecordLink.__table__), links[i : i + 5000])
                conn.execute(insert(SyncEntity.__table__), entities[i : i + 5000])
        say(f"reconcile: seeded {len(records):,} linked accounts in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        full = sync.run(reconcile=True)
        full_s = time.perf_counter() - t0
        replay = SyncEngine(hub, pair, [_Replay(spoke, records)])
        t0 = time.perf_counter()
        engine_only = replay.run(reconcile=True)
        engine_s = time.perf_counter() - t0
        client.close()
    merged = sum(c.updated + c.created for c in full.directions.values())
    result = {
        "accounts": len(records),
        "scan_only_s": round(scan_s, 2),
        "reconcile_s": round(full_s, 2),
        "engine_only_s": round(engine_s, 2),
        "reconcile_over_scan": round(full_s / scan_s, 2),
        "unchanged": full.direction("kingdee").unchanged,
        "merged_or_written": merged,
        "drift": full.drift,
        "engine_only_unchanged": engine_only.direction("kingdee").unchanged,
        "target_s": 10.0,
    }
    say(
        f"reconcile: {len(records):,} unchanged linked accounts: full pass {full_s:.1f} s "
        f"(the scan alone {scan_s:.1f} s, ratio {result['reconcile_over_scan']:.2f}); engine only "
        f"{engine_s:.1f} s; unchanged {result['unchanged']:,}, merged/written {merged}, drift {full.drift}"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=10_000, help="T1 linked accounts")
    ap.add_argument("--t4-accounts", type=int, default=1_000, help="T4 linked accounts")
    ap.add_argument("--edits", type=int, default=1_000, help="T4 random edits (both sides)")
    ap.add_argument("--creates", type=int, default=100, help="T6 concurrent creates")
    ap.add_argument("--reconcile-accounts", type=int, default=100_000, help="linked accounts reconciled")
    ap.add_argument(
        "--postgres", default=os.environ.get("TONGBU_TEST_POSTGRES_URL"), help="T6 on this server"
    )
    ap.add_argument("--only", default="t1,t4,t6,reconcile", help="comma-separated subset")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = ap.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    os.environ["TONGBU_HOME"] = tempfile.mkdtemp(prefix="tongbu-two-way-bench-")
    os.environ.pop("TONGBU_DATABASE_URL", None)
    only = set(args.only.split(","))
    out: dict[str, Any] = {}
    if "t1" in only:
        out["t1"] = t1(args.accounts, say)
    if "t4" in only:
        out["t4"] = t4(args.t4_accounts, args.edits, say)
    if "t6" in only:
        out["t6"] = t6(args.creates, args.postgres, say)
    if "reconcile" in only:
        out["reconcile"] = reconcile(args.reconcile_accounts, say)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main()
