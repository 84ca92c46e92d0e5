"""Many tenants in one deployment and one database (issue 18 item 5): a tenant's run reads and writes
only its own hub rows, cursors, quarantine and vault secrets, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipelines.project import load_project
from pipelines.runner import Runner
from tests.helpers.dagster_prod import write_project
from tests.helpers.vault import canary, key_text, new_key_source
from tongbu.hub.store import hub_table
from tongbu.state.models import QuarantinedRecord
from tongbu.state.store import Quarantine, StateStore


def _runner(tmp_path: Path, tenant: str, records: int, engine) -> Runner:
    conns = {
        "erp": {"connector": "synthetic", "config": {"records": records, "password": "vault:erp.password"}}
    }
    path = write_project(tmp_path / f"{tenant}.yaml", tenant, conns)
    return Runner(load_project(path), engine)


def _rows(engine, tenant: str) -> dict[str, str]:
    t = hub_table("accounts")
    with engine.connect() as conn:
        return dict(conn.execute(select(t.c.source_id, t.c.row_hash).where(t.c.tenant_id == tenant)).all())


def test_one_tenants_run_never_reads_or_writes_another_tenants_data(
    tmp_path: Path, hub_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tongbu.vault import Vault, VaultError

    key = new_key_source()
    monkeypatch.setenv("TONGBU_MASTER_KEY", key_text(key))  # what the runner's vault reads
    secrets = {"acme": canary("acme"), "bolt": canary("bolt")}
    vault = Vault.initialize(hub_engine, key_source=key)
    for tenant, value in secrets.items():
        vault.set("erp.password", value, tenant=tenant)
    # Same connection, stream, pipeline names and the very same source ids in both tenants.
    acme, bolt = _runner(tmp_path, "acme", 500, hub_engine), _runner(tmp_path, "bolt", 300, hub_engine)

    # Secrets: each run resolves its own tenant's value; a tenant without one gets an error, never another's.
    assert acme.connection_config("erp")["password"] == secrets["acme"]
    assert bolt.connection_config("erp")["password"] == secrets["bolt"]
    with pytest.raises(VaultError) as err:
        _runner(tmp_path, "cobalt", 10, hub_engine).connection_config("erp")
    assert all(v not in str(err.value) for v in secrets.values())

    assert acme.run("erp_accounts").rows_written == 500
    bolt_before = _rows(hub_engine, "bolt")
    assert bolt.run("erp_accounts").rows_written == 300
    acme_rows, bolt_rows = _rows(hub_engine, "acme"), _rows(hub_engine, "bolt")
    assert len(acme_rows) == 500 and len(bolt_rows) == 300 and not bolt_before
    # acme's rows were not touched by bolt's run over the same ids, nor the other way round.
    assert acme.run("erp_accounts", full_refresh=True).rows_unchanged == 500
    assert _rows(hub_engine, "bolt") == bolt_rows and _rows(hub_engine, "acme") == acme_rows

    # Cursors: each tenant has its own; resetting one leaves the other.
    a_state, b_state = StateStore(hub_engine, "acme"), StateStore(hub_engine, "bolt")
    with hub_engine.connect() as conn:
        a_cur, b_cur = a_state.get(conn, "erp", "records"), b_state.get(conn, "erp", "records")
    assert a_cur != b_cur and a_cur and b_cur
    b_state.reset("erp")
    with hub_engine.connect() as conn:
        assert a_state.get(conn, "erp", "records") == a_cur and not b_state.get(conn, "erp", "records")
    assert bolt.run("erp_accounts").rows_unchanged == 300  # bolt re-reads its own source only
    assert _rows(hub_engine, "acme") == acme_rows

    # Quarantine: bolt's entries are invisible to acme, and acme cannot close them by id.
    a_q, b_q = Quarantine(hub_engine, "acme"), Quarantine(hub_engine, "bolt")
    with hub_engine.begin() as conn:
        b_q.add_many(
            conn,
            [
                {
                    "pipeline": "erp_accounts",
                    "connection": "erp",
                    "stream": "records",
                    "source_id": "7",
                    "stage": "mapping",
                    "reason": "bad",
                    "payload": {"id": 7},
                    "run_id": None,
                }
            ],
        )
    [entry] = b_q.list("erp_accounts")
    assert a_q.list("erp_accounts") == []
    with hub_engine.begin() as conn:
        assert not a_q.has_open(conn, "erp_accounts") and a_q.count(conn, "erp_accounts") == 0
        a_q.mark(conn, [entry["id"]], "dropped")
        assert a_q.resolve_landed(conn, "erp_accounts", ["7"]) == 0
    assert [e["id"] for e in b_q.list("erp_accounts")] == [entry["id"]]
    q = QuarantinedRecord.__table__
    with hub_engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(q).where(q.c.tenant_id == "acme")).scalar_one() == 0
        )
