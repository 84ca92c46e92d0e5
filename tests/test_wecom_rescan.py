"""The full rescan: after token expiry, rate limits and lost callbacks the hub equals WeCom's truth;
unchanged contacts cost no write; deletions only after a complete scan, and never en masse by accident."""

from __future__ import annotations

import random
import time
from functools import partial

import pytest

from connectors.kit.server import BackgroundServer
from connectors.wecom.hub import WeComHubWriter, contact_key
from connectors.wecom.records import contact_from_get
from connectors.wecom.rescan import rescan_external_contacts
from connectors.wecom.simulator import WeComSimulator
from tests.helpers.wecom import client_for as fast_client
from tests.helpers.wecom import hub_mismatches, serve_config
from tongbu.db import get_engine
from tongbu.inbox import ensure_inbox, event_inbox
from tongbu.serve.app import build_app

# Under the fault mix a call may need many attempts; each waits milliseconds.
client_for = partial(fast_client, max_retries=14, backoff_max=0.02)
FAULTS = "session_expiry=9,throttle=0.05,concurrency_rate=0.05,busy=0.02,callback_retry_delay=0.05"


pytestmark = pytest.mark.wecom_sim(records=800, seed=31)  # the `sim` fixture: tests/conftest.py


def clean(report: dict) -> bool:
    return not any(report.values())


def test_second_rescan_writes_nothing_and_finds_silent_changes(sim: WeComSimulator) -> None:
    writer = WeComHubWriter(get_engine())
    client = client_for(sim)
    first = rescan_external_contacts(client, writer)
    assert first.complete and first.written == first.contacts_seen == 800 and first.accounts_written > 0
    second = rescan_external_contacts(client, writer)
    assert second.written == 0 and second.unchanged == 800 and second.accounts_written == 0
    # Changes WeCom never reports with a callback: a customer renaming themself, remark mobiles.
    a, b = list(sim.external_userids())[:2]
    sim.update_profile(a, name="改名的客户")
    sim.edit_external_contact(b, remark_mobiles=["13700001111"])
    third = rescan_external_contacts(client, writer)
    assert third.written == 2 and clean(hub_mismatches(writer.engine, sim, writer))
    calls = third.api_calls
    assert calls["externalcontact/batch/get_by_user"] == -(-sim.follow_pair_count // 100)


def test_faults_and_lost_callbacks_then_rescan_equals_truth(sim: WeComSimulator) -> None:
    engine = get_engine()
    writer = WeComHubWriter(engine)
    sim.set_faults(FAULTS)
    assert rescan_external_contacts(client_for(sim), writer).complete
    assert clean(hub_mismatches(engine, sim, writer))

    sim.set_faults(FAULTS + ",drop_callbacks=0.3")
    app = build_app(serve_config(sim, source_config={"max_retries": 14, "backoff_base": 0.001}))
    with BackgroundServer(app) as server:
        sim.set_callback(server.url + "/hooks/wecom", verify=False)
        rng = random.Random(7)
        grade = [sim.tag_id("客户等级", n) for n in ("A类客户", "B类客户", "C类客户")]
        for k in range(120):
            roll = rng.random()
            if roll < 0.2:
                sim.add_external_contact(name=f"新客户{k}", remark=f"展会{k}")
            elif roll < 0.35:
                sim.del_external_contact(sim.random_external_userid(rng))
            elif roll < 0.45:
                sim.update_profile(sim.random_external_userid(rng), position="总经理")  # never reported
            else:
                sim.edit_external_contact(
                    sim.random_external_userid(rng), remark=f"备注{k}", add_tags=[rng.choice(grade)]
                )
        assert sim.wait_callbacks(30) and app.state.processor.drain(30)
        dropped = sum(1 for r in sim.callback_log if r.status == "dropped")
        assert dropped > 10
        before = hub_mismatches(engine, sim, writer)
        assert not clean(before)  # lost callbacks left the hub behind

        result = rescan_external_contacts(client_for(sim), writer)
    assert result.complete and result.deleted == len(before["extra"]) and result.deletion_skipped is None
    after = hub_mismatches(engine, sim, writer)
    assert clean(after), after  # nothing missing, nothing extra, nothing different, no duplicates
    with engine.connect() as conn:
        assert writer.hub.count(conn, "contacts", source_system="wecom") == sim.contact_count


def test_no_deletion_after_an_incomplete_scan(sim: WeComSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = get_engine()
    writer = WeComHubWriter(engine)
    rescan_external_contacts(client_for(sim), writer)
    for ext in list(sim.external_userids())[:5]:
        sim.del_external_contact(ext, callback=False)
    client = client_for(sim)
    pages = {"n": 0}
    real = client.iter_batch_by_user

    def failing(userids: list[str], *, limit: int = 100):
        for page in real(userids, limit=limit):
            pages["n"] += 1
            if pages["n"] == 3:
                raise ConnectionError("network went away mid-scan")
            yield page

    monkeypatch.setattr(client, "iter_batch_by_user", failing)
    with pytest.raises(ConnectionError):
        rescan_external_contacts(client, writer)
    with engine.connect() as conn:
        assert writer.hub.count(conn, "contacts", source_system="wecom") == 800  # nobody deleted


def test_mass_deletion_is_refused_unless_confirmed(sim: WeComSimulator) -> None:
    engine = get_engine()
    writer = WeComHubWriter(engine)
    rescan_external_contacts(client_for(sim), writer)
    for ext in list(sim.external_userids())[:500]:  # looks like a secret that lost its visible range
        sim.del_external_contact(ext, callback=False)
    refused = rescan_external_contacts(client_for(sim), writer)
    assert refused.deleted == 0 and refused.delete_candidates > 400 and "refused" in refused.deletion_skipped
    confirmed = rescan_external_contacts(client_for(sim), writer, max_delete_fraction=1.0)
    assert confirmed.deleted == refused.delete_candidates
    assert clean(hub_mismatches(engine, sim, writer))


def test_events_applied_during_a_scan_win(sim: WeComSimulator) -> None:
    """A contact a callback added while the scan ran is neither overwritten nor deleted by it."""
    engine = get_engine()
    writer = WeComHubWriter(engine)
    rescan_external_contacts(client_for(sim), writer)
    ext = next(sim.external_userids())
    ensure_inbox(engine)
    with engine.begin() as conn:
        # the event path applied this contact just now, with data newer than the scan will read
        conn.execute(
            event_inbox.insert().values(
                tenant_id="default",
                source="wecom",
                dedup_key="x",
                record_key=contact_key(ext),
                kind="k",
                payload={},
                received_at=time.time(),
                applied_at=time.time() + 5,
                status="applied",
                attempts=1,
            )
        )
    sim.update_profile(ext, name="扫描时读到的旧名字")
    result = rescan_external_contacts(client_for(sim), writer)
    assert result.skipped_newer == 1
    with engine.connect() as conn:
        assert writer.hub.get(conn, "contacts", "wecom", ext)["name"] != "扫描时读到的旧名字"


def test_each_follow_relation_becomes_one_activity(sim: WeComSimulator) -> None:
    writer = WeComHubWriter(get_engine())
    rescan_external_contacts(client_for(sim), writer)
    rescan_external_contacts(client_for(sim), writer)  # idempotent: no duplicate history
    with writer.engine.connect() as conn:
        assert writer.hub.count(conn, "activities", source_system="wecom") == sim.follow_pair_count
        a = next(iter(sim.external_userids()))
        from sqlalchemy import select

        from tongbu.hub.store import hub_table

        t = hub_table("activities")
        rows = conn.execute(
            select(t.c.kind, t.c.subject, t.c.owner, t.c.occurred_at).where(t.c.contact_ref == a)
        ).all()
    assert rows and all(r.kind == "wecom" and r.subject and r.owner and r.occurred_at for r in rows)


@pytest.mark.wecom_sim(records=40, seed=5)
@pytest.mark.parametrize("callback", ["changes_the_row", "changes_nothing"])
def test_a_callback_applied_between_choosing_and_deleting_is_never_deleted(
    hub_engine, sim: WeComSimulator, callback: str
) -> None:
    """The rescan reads its deletion candidates, then deletes them in a later transaction. A callback
    that ``tongbu serve`` applies in between (the contact was re-added or edited) must win: the
    deleting statement itself re-checks, so the race cannot delete it. Driven deterministically: the
    callback is applied from inside the step between the candidate read and the delete."""
    writer = WeComHubWriter(hub_engine)
    client = client_for(sim)
    assert rescan_external_contacts(client, writer).written == 40
    kept, gone = list(sim.external_userids())[:2]
    revived = contact_from_get(sim.contact_detail(kept))
    sim.del_external_contact(kept)
    sim.del_external_contact(gone)
    ensure_inbox(hub_engine)
    original_delete = writer.delete
    seen_candidates: list[list[str]] = []

    def callback_then_delete(conn, external_userids, **guards):  # type: ignore[no-untyped-def]
        seen_candidates.append(sorted(external_userids))
        # What the event path does for an "add/edit external contact" callback, committed on its
        # own connection while the rescan sits between its read and its delete.
        with hub_engine.begin() as serve_conn:
            if callback == "changes_the_row":
                writer.write(serve_conn, writer.map([{**revived, "name": "回调里的新名字"}]))
            serve_conn.execute(
                event_inbox.insert().values(
                    tenant_id="default",
                    source="wecom",
                    dedup_key=f"race-{callback}",
                    record_key=contact_key(kept),
                    kind="change_external_contact.add_external_contact",
                    payload={},
                    received_at=time.time(),
                    applied_at=time.time(),
                    status="applied",
                    attempts=1,
                )
            )
        return original_delete(conn, external_userids, **guards)

    writer.delete = callback_then_delete  # type: ignore[method-assign]
    result = rescan_external_contacts(client, writer)
    assert seen_candidates == [sorted([kept, gone])]  # both were candidates when read
    assert result.deleted == 1
    with hub_engine.connect() as conn:
        assert writer.hub.get(conn, "contacts", "wecom", kept)["deleted_at"] is None
        assert writer.hub.get(conn, "contacts", "wecom", gone)["deleted_at"] is not None
