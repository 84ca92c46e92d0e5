"""The simulator kit: one fault catalogue, documented in one table, honoured the same way everywhere."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import httpx
import phonenumbers
import pytest

from connectors.kit import fakedata, uscc
from connectors.kit.server import BackgroundServer
from connectors.kit.simulator import (
    COMMON_FAULTS,
    FaultConfig,
    FaultError,
    Simulator,
    load_simulator,
    register,
    simulator_names,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-connector.md"


def _doc_rows() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([a-z0-9_]+)` \| (RATE|ROWS|SECONDS|COUNT) \| .* \| (✓|–) \| (✓|–) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def test_the_documented_table_is_the_catalogue() -> None:
    rows = _doc_rows()
    sims = [load_simulator("kingdee"), load_simulator("wecom")]
    every = {name: spec for sim in sims for name, spec in sim.fault_specs().items()}
    assert set(rows) == set(every)
    for name, (kind, kingdee, wecom) in rows.items():
        assert kind == every[name].kind, name
        assert (kingdee == "✓", wecom == "✓") == tuple(name in s.fault_specs() for s in sims), name


def test_own_switches_never_reuse_a_catalogue_name() -> None:
    for name in simulator_names():
        cls = load_simulator(name)
        assert not {s.name for s in cls.OWN_FAULTS} & set(COMMON_FAULTS), name
        assert set(cls.FAULTS) <= set(COMMON_FAULTS), name


def test_fault_values_are_checked_by_kind() -> None:
    specs = load_simulator("kingdee").fault_specs()
    assert FaultConfig.parse("same_second", specs).value("same_second") == 0.25  # ROWS: bare = a quarter
    assert FaultConfig.parse("throttle", specs).value("throttle") == 1.0
    assert FaultConfig.parse("same_second=12", specs).value("same_second") == 12  # above 1: rows
    for bad, why in [
        ("session_expiry=2.5", "whole number"),
        ("throttle=-0.1", "non-negative"),
        ("same_second=2.5", "a number of rows"),
        ("throttle=nan", "non-negative"),
    ]:
        with pytest.raises(FaultError, match=why):
            FaultConfig.parse(bad, specs)


def test_a_registered_simulator_gets_the_common_control_api_and_transport_faults() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    class EchoSimulator(Simulator):
        system = "echo-test"

        def api_routes(self):  # type: ignore[no-untyped-def]
            async def echo(request):  # type: ignore[no-untyped-def]
                return await self.transport_faults() or PlainTextResponse("hi")

            return [Route("/echo", echo)]

        def credentials(self) -> dict[str, str]:
            return {}

    register(EchoSimulator)
    assert load_simulator("echo-test") is EchoSimulator
    with EchoSimulator(faults="http_5xx=1") as sim:
        r = httpx.get(sim.base_url + "/echo")
        assert r.status_code in (500, 502, 503)
        sim.set_faults(None)
        assert httpx.get(sim.base_url + "/echo").text == "hi"
        assert httpx.get(sim.base_url + "/_sim/health").json() == {"ok": True, "system": "echo-test"}
        assert sim.stats() == {
            "requests": 2,
            "slow": 0,
            "timeouts": 0,
            "http_5xx": 1,
            "in_flight": 0,
            "max_in_flight": 1,
        }
        assert httpx.post(sim.base_url + "/_sim/faults", json={"faults": "throttle=1"}).status_code == 400


def test_background_server_starts_serves_and_stops() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    with BackgroundServer(app, lifespan="off") as server:
        assert httpx.get(server.url).text == "ok"
    assert not server.running


def test_fake_data_is_valid_distinct_and_deterministic() -> None:
    rng = fakedata.FastRandom("t")
    companies = [fakedata.company(i, rng, seed=3) for i in range(3000)]
    assert len({c.name for c in companies}) == len({c.credit_code for c in companies}) == 3000
    assert all(uscc.is_valid(c.credit_code) for c in companies)
    for c in companies[:300]:
        for number in (fakedata.landline(rng, c.city), fakedata.mobile(rng)):
            assert phonenumbers.is_valid_number(phonenumbers.parse(number, "CN")), number
    keyed = [fakedata.person(fakedata.KeyedDraw(7, i, 1)) for i in range(50)]
    assert keyed == [fakedata.person(fakedata.KeyedDraw(7, i, 1)) for i in range(50)]
    assert len({p.name for p in keyed}) > 25 and all(p.pinyin.isascii() for p in keyed)
    assert uscc.is_valid(uscc.generate(random.Random(1)))


def test_every_simulator_reports_api_calls_in_flight_and_the_most_at_once() -> None:
    import threading

    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    release = threading.Event()

    class GateSimulator(Simulator):
        system = "gate-test"

        def api_routes(self):  # type: ignore[no-untyped-def]
            async def held(request):  # type: ignore[no-untyped-def]
                while not release.is_set():  # answered only when the test says so
                    await self.sleep(0.01)
                return PlainTextResponse("ok")

            return [Route("/held", held)]

        def credentials(self) -> dict[str, str]:
            return {}

    with GateSimulator() as sim:
        calls = [
            threading.Thread(target=httpx.get, args=(sim.base_url + "/held",), kwargs={"timeout": 60})
            for _ in range(3)
        ]
        for t in calls:
            t.start()
        deadline = time.monotonic() + 30
        while sim.stats()["in_flight"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # control calls are not API calls: they neither count nor wait
        assert httpx.get(sim.base_url + "/_sim/stats").json()["in_flight"] == 3
        release.set()
        for t in calls:
            t.join(60)
        assert sim.stats()["in_flight"] == 0 and sim.stats()["max_in_flight"] == 3
        sim.reset_stats()
        assert sim.stats()["max_in_flight"] == 0
