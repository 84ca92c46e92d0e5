"""The standard connector test suite: one small class per connector runs all of it.

A connector's ``tests/<connector>/test_standard.py`` declares::

    class TestAcme(ConnectorSuite):
        connector = "acme"
        streams = {
            "customers": SuiteStream(key="id", object="accounts"),
            "contacts": SuiteStream(key="id", object="contacts", incremental=False),
        }

and gets, against its own simulator (``connectors/<connector>/simulator``, started in process on a
free loopback port):

* singer-sdk's standard tap tests (``singer_sdk.testing.get_tap_test_class``), as the class
  ``<Name>SingerTap`` next to the declaring one (and the standard target tests when the class sets
  ``target_config``);
* ``test_full_sync_matches_truth`` — every stream read in full equals ``/_sim/truth`` exactly;
* ``test_full_then_incremental_sync_lands_exact_counts`` — pipelines into the hub, then edits in the
  simulator: the second run reads and writes exactly the edited records;
* ``test_fault_switch[<name>]`` — one run per switch the simulator declares (its fault catalogue):
  the hub still holds exactly the truth, nothing twice (streams without a hub object: the tap's
  records are exactly the truth), and the switch really acted (a fault counter moved, or the sync
  took more calls than without it);
* ``test_sigkill_after_a_committed_batch_then_resume`` — ``tongbu run`` killed with SIGKILL after its
  first committed batch, at a random point, then resumed: exact, no duplicates;
* ``test_output_is_accepted_by_a_third_party_singer_target`` — the tap's CLI piped into
  ``target-jsonl`` (singer-python, in its own cached venv): one line per truth record;
* ``test_second_full_run_writes_nothing`` — a full refresh over unchanged data writes 0 rows;
* ``test_bad_records_are_quarantined`` — the ``malformed`` switch: exactly the broken records are
  quarantined, with a reason, and the rest land.

Hub-level tests need a mapping per stream (``mappings/library/<connector>_to_crm.yaml`` unless
``mapping`` says otherwise) and a hub ``object``; streams without one get the tap-level tests only.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import sys
import venv
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tests.helpers.kills import kill_mid_sync

ROOT = Path(__file__).resolve().parents[2]

#: what each kind of switch is set to when the suite turns it on (a class may override per name)
DEFAULT_FAULT_VALUES: dict[str, str] = {
    "RATE": "{name}=0.25",
    "ROWS": "{name}=0.3",
    "COUNT": "{name}=4",
    "SECONDS": "{name}=0.01",
    # a switch that only shapes another one is tested together with it
    "hang": "timeout=0.1,hang=0.3",
}
#: tap settings for a run with faults: short timeouts and backoff, enough retries
FAULT_RUN_CONFIG: dict[str, Any] = {
    "request_timeout": 1.0,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "max_retries": 30,
}
TARGET_JSONL = "target-jsonl==0.1.4"


@dataclass(frozen=True)
class SuiteStream:
    """How the suite checks one stream.

    ``key`` is the record property that identifies a record (and its field in the truth, unless
    ``truth_key`` differs); ``truth`` the simulator's name for the stream (default: the stream name);
    ``object`` the hub object its pipeline writes (None: tap-level tests only); ``incremental`` False
    for a stream read in full every run. ``truth_key`` may be dotted (``external_contact.external_userid``).
    """

    key: str = "id"
    object: str | None = None
    truth: str | None = None
    truth_key: str | None = None
    incremental: bool = True


def sim_truth(sim: Any, stream: str, page: int = 1000) -> list[dict[str, Any]]:
    """Every record of ``stream`` from the running simulator's ``GET /_sim/truth``, paged."""
    out: list[dict[str, Any]] = []
    with httpx.Client(base_url=sim.base_url, timeout=60) as http:
        while True:
            response = http.get("/_sim/truth", params={"stream": stream, "offset": len(out), "limit": page})
            response.raise_for_status()
            records = response.json()["records"]
            out.extend(records)
            if len(records) < page:
                return out


def _sdk_class(suite: type[ConnectorSuite]) -> type:
    """singer-sdk's standard tap tests against a simulator of this suite, started for the class."""
    from singer_sdk.testing import SuiteConfig, get_tap_test_class

    from connectors.kit.server import free_port

    sim = suite.simulator_class()(records=suite.records, seed=suite.seed)
    sim.host, sim.port = "127.0.0.1", free_port()  # the config must name the port before it starts
    sdk = get_tap_test_class(
        suite.tap_class(),
        config=suite.tap_config(sim),
        suite_config=SuiteConfig(max_records_limit=suite.records * 20),
    )

    @pytest.fixture(scope="class", autouse=True)
    def _simulator(cls: type) -> Iterator[Any]:
        sim.start(sim.host, sim.port)
        yield sim
        sim.close()

    return type(f"{suite.__name__}SingerTap", (sdk,), {"_simulator": _simulator})


def _sdk_target_class(suite: type[ConnectorSuite]) -> type:
    from singer_sdk.testing import get_target_test_class

    from connectors.registry import connector, load_class

    info = connector(suite.connector)
    assert info.target, f"{suite.connector} has no target but the suite sets target_config"
    return get_target_test_class(load_class(info.target), config=dict(suite.target_config or {}))


class ConnectorSuite:
    """Base class of a connector's standard tests (see the module docstring)."""

    #: the connector's registered name (its folder under connectors/)
    connector: ClassVar[str] = ""
    #: the streams to check
    streams: ClassVar[Mapping[str, SuiteStream]] = {}
    #: mapping file (relative to the repository); default mappings/library/<connector>_to_crm.yaml
    mapping: ClassVar[str | None] = None
    #: size and seed of the simulator most tests start
    records: ClassVar[int] = 40
    seed: ClassVar[int] = 3
    #: extra simulator arguments (every test)
    simulator_options: ClassVar[Mapping[str, Any]] = {}
    #: tap settings for every run (small pages, so paging is exercised; no lookback, so counts are exact)
    config: ClassVar[Mapping[str, Any]] = {}
    #: per-switch values for ``test_fault_switch`` (``name -> "spec"``), beyond DEFAULT_FAULT_VALUES
    fault_values: ClassVar[Mapping[str, str]] = {}
    #: switches not run, with the reason (e.g. callback delivery, which a tap never sees)
    skip_faults: ClassVar[Mapping[str, str]] = {}
    #: how many records ``modify`` edits per stream in the incremental test
    modify_count: ClassVar[int] = 7
    #: the SIGKILL test: stream (default: the first with a hub object), size, simulator arguments
    kill_stream: ClassVar[str | None] = None
    kill_records: ClassVar[int] = 20_000
    kill_simulator_options: ClassVar[Mapping[str, Any]] = {}
    kill_batch_size: ClassVar[int] = 500
    #: singer-sdk's standard tap tests (on by default); a target config turns on its target tests
    sdk_tap_tests: ClassVar[bool] = True
    target_config: ClassVar[Mapping[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.connector:
            return
        module = sys.modules[cls.__module__]
        # pytest collects classes from the module's namespace: put singer-sdk's classes next to this one.
        if cls.sdk_tap_tests:
            setattr(module, f"{cls.__name__}SingerTap", _sdk_class(cls))
        if cls.target_config is not None:
            setattr(module, f"{cls.__name__}SingerTarget", _sdk_target_class(cls))

    # -- hooks a connector may override ------------------------------------------------------------
    @classmethod
    def simulator_class(cls) -> type:
        """The connector's simulator (``connectors/<connector>/simulator``, ``SIMULATOR``)."""
        from connectors.kit.simulator import load_simulator

        return load_simulator(cls.connector)

    @classmethod
    def tap_class(cls) -> Any:
        """The connector's singer-sdk tap class, from the connector registry."""
        from connectors.registry import connector, load_class

        info = connector(cls.connector)
        assert info.tap, f"connector {cls.connector!r} has no tap"
        return load_class(info.tap)

    @classmethod
    def tap_config(cls, sim: Any, **overrides: Any) -> dict[str, Any]:
        """A tap config for the running simulator ``sim`` (``sim.tap_config(...)``)."""
        return dict(sim.tap_config(**{**cls.config, **overrides}))

    def modify(self, sim: Any, stream: str, count: int) -> None:
        """Edit ``count`` records of ``stream`` in the simulator (``sim.modify(truth_name, count)``)."""
        sim.modify(self.truth_name(stream), count)

    # -- helpers -----------------------------------------------------------------------------------
    @classmethod
    def truth_name(cls, stream: str) -> str:
        return cls.streams[stream].truth or stream

    @classmethod
    def truth_key(cls, stream: str) -> str:
        spec = cls.streams[stream]
        return spec.truth_key or spec.key

    def start(self, faults: str | None = None, **options: Any) -> Any:
        """A started simulator of this connector (closed by :meth:`teardown_method`)."""
        sim = self.simulator_class()(
            **{"records": self.records, "seed": self.seed, **self.simulator_options, **options}, faults=faults
        )
        sim.start()
        self._sims.append(sim)
        return sim

    def setup_method(self) -> None:
        self._sims: list[Any] = []

    def teardown_method(self) -> None:
        for sim in self._sims:
            sim.close()

    def truth_rows(self, sim: Any, stream: str) -> list[dict[str, Any]]:
        """The simulator's truth of ``stream``, one row per record the tap emits (override when the
        truth nests records differently, e.g. tag groups holding tags)."""
        return sim_truth(sim, self.truth_name(stream))

    def truth_ids(self, sim: Any, stream: str) -> tuple[list[str], set[str]]:
        """(every id in the truth, the ids of records the simulator broke on purpose)."""
        path = self.truth_key(stream).split(".")  # a dotted key reaches into a nested truth row

        def key_of(row: Any) -> str:
            for part in path:
                row = row[part]
            return str(row)

        rows = self.truth_rows(sim, stream)
        return [key_of(r) for r in rows], {key_of(r) for r in rows if r.get("_malformed")}

    def hub_streams(self) -> dict[str, SuiteStream]:
        hub = {name: spec for name, spec in self.streams.items() if spec.object}
        if not hub:
            pytest.skip(f"{self.connector}: no stream declares a hub object")
        return hub

    def pipeline(self, stream: str) -> str:
        return f"{self.connector}_{stream}"

    def write_project(self, folder: Path, sim: Any, *, batch_size: int = 5000, **config: Any) -> Path:
        """A tongbu.yaml with one connection to ``sim`` and a pipeline per hub stream.

        Secret settings (``secret: true`` in the tap's schema) go in as ``${ENV}`` references, set in
        this process's environment: never in the file.
        """
        cfg = self.tap_config(sim, **config)
        props = self.tap_class().config_jsonschema.get("properties", {})
        for key in list(cfg):
            if props.get(key, {}).get("secret") and isinstance(cfg[key], str):
                var = f"TONGBU_SUITE_{self.connector}_{key}".upper()
                os.environ[var] = cfg[key]
                cfg[key] = "${" + var + "}"
        mapping = str(ROOT / (self.mapping or f"mappings/library/{self.connector}_to_crm.yaml"))
        project = {
            "version": 1,
            "tenant": "default",
            "connections": {self.connector: {"connector": self.connector, "config": cfg}},
            "pipelines": {
                self.pipeline(name): {
                    "source": {"connection": self.connector, "stream": name},
                    "mapping": mapping,
                    "target": {"object": spec.object},
                    "batch_size": batch_size,
                }
                for name, spec in self.hub_streams().items()
            },
        }
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tongbu.yaml"
        path.write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
        return path

    def runner(self, path: Path, database_url: str | None = None) -> Any:
        """A pipeline runner on the project at ``path``, writing to the test's hub (or ``database_url``)."""
        from pipelines.project import load_project
        from pipelines.runner import Runner
        from tongbu.db import get_engine

        return Runner(load_project(path), get_engine(database_url))

    def sync_everything(self, folder: Path, sim: Any, database_url: str | None = None, **config: Any) -> Any:
        """Every hub stream through its pipeline, and every other stream read by the tap in process
        (checked against the truth here); returns the runner."""
        runner = self.runner(self.write_project(folder, sim, **config), database_url)
        for stream in self.hub_streams():
            runner.run(self.pipeline(stream))
        tap_only = [name for name, spec in self.streams.items() if not spec.object]
        if tap_only:
            tap = self.tap_class()(config=self.tap_config(sim, **config), parse_env_config=False)
            for stream in tap_only:
                got = sorted(str(r[self.streams[stream].key]) for r in tap.streams[stream].get_records(None))
                assert got == sorted(self.truth_ids(sim, stream)[0]), f"{stream}: not the truth"
        return runner

    def sync_requests(self, folder: Path, **config: Any) -> int:
        """API requests one :meth:`sync_everything` makes without faults, in a hub of its own."""
        sim = self.start()
        self.sync_everything(folder, sim, f"sqlite:///{folder / 'hub.db'}", **config)
        return int(sim.stats()["requests"])

    def hub_ids(self, engine: Engine, obj: str) -> list[str]:
        from tongbu.hub.store import hub_table

        table = hub_table(obj)
        query = select(table.c.source_id).where(table.c.source_system == self.connector)
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def quarantined(self, runner: Any, stream: str) -> dict[str, str]:
        """source id -> reason of the open quarantine of the stream's pipeline."""
        rows = runner.quarantine.list(self.pipeline(stream), limit=1_000_000)
        return {str(r["source_id"]): str(r["reason"]) for r in rows}

    def assert_hub_exact(self, runner: Any, sim: Any) -> None:
        """Per hub stream: hub ∪ quarantine is the truth, nothing twice, exactly the broken ones quarantined."""
        for stream, spec in self.hub_streams().items():
            ids, broken = self.truth_ids(sim, stream)
            in_hub = self.hub_ids(runner.engine, spec.object or "")
            quarantined = set(self.quarantined(runner, stream))
            twice = [i for i, n in Counter(in_hub).items() if n > 1]
            assert not twice, f"{stream}: in the hub twice: {twice[:5]}"
            assert quarantined == broken, f"{stream}: quarantined {sorted(quarantined ^ broken)[:5]} wrongly"
            assert set(in_hub) == set(ids) - broken, (
                f"{stream}: missing {sorted(set(ids) - broken - set(in_hub))[:5]}, "
                f"extra {sorted(set(in_hub) - set(ids))[:5]}"
            )

    # -- the tests -----------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One ``test_fault_switch`` per switch in the simulator's fault catalogue."""
        if "fault" in metafunc.fixturenames:
            specs = self.simulator_class().fault_specs()
            metafunc.parametrize(
                "fault",
                [
                    pytest.param(
                        name,
                        marks=[pytest.mark.skip(reason=self.skip_faults[name])]
                        if name in self.skip_faults
                        else [],
                    )
                    for name in sorted(specs)
                ],
            )

    def test_full_sync_matches_truth(self) -> None:
        sim = self.start()
        tap = self.tap_class()(config=self.tap_config(sim), parse_env_config=False)
        for stream, spec in self.streams.items():
            got = sorted(str(r[spec.key]) for r in tap.streams[stream].get_records(None))
            ids, _ = self.truth_ids(sim, stream)
            assert got == sorted(ids), f"{stream}: read {len(got)} records, the truth has {len(ids)}"

    def test_full_then_incremental_sync_lands_exact_counts(self, tmp_path: Path) -> None:
        sim = self.start()
        runner = self.runner(self.write_project(tmp_path, sim))
        for stream in self.hub_streams():
            first = runner.run(self.pipeline(stream))
            assert first.rows_read == len(self.truth_ids(sim, stream)[0]), stream
        self.assert_hub_exact(runner, sim)
        for stream in self.hub_streams():
            self.modify(sim, stream, self.modify_count)
        for stream, spec in self.hub_streams().items():
            second = runner.run(self.pipeline(stream))
            total = len(self.truth_ids(sim, stream)[0])
            assert second.rows_read == (self.modify_count if spec.incremental else total), stream
            assert second.rows_written == self.modify_count, stream
        self.assert_hub_exact(runner, sim)

    def test_fault_switch(self, fault: str, tmp_path: Path) -> None:
        spec = self.simulator_class().fault_specs()[fault]
        pattern = (
            self.fault_values.get(fault) or DEFAULT_FAULT_VALUES.get(fault) or DEFAULT_FAULT_VALUES[spec.kind]
        )
        faults = pattern.format(name=fault)
        sim = self.start(faults)
        runner = self.sync_everything(tmp_path, sim, **FAULT_RUN_CONFIG)
        self.assert_hub_exact(runner, sim)
        stats = sim.stats()
        if spec.kind != "ROWS" and fault != "malformed":
            # The switch really acted: a fault counter moved, or the sync needed more calls than
            # the same sync without faults (retries, new tokens, new sessions).
            fired = {k: v for k, v in stats.items() if k != "requests" and v}
            baseline = self.sync_requests(tmp_path / "baseline", **FAULT_RUN_CONFIG)
            assert fired or stats["requests"] > baseline, (
                f"{faults}: no fault was injected during the sync ({stats}, {baseline} requests without "
                "faults); raise its value in fault_values"
            )
        if fault == "malformed":
            assert any(self.truth_ids(sim, s)[1] for s in self.hub_streams()), "no record was broken"

    @pytest.mark.slow
    def test_sigkill_after_a_committed_batch_then_resume(self, tmp_path: Path) -> None:
        from tongbu.db import get_engine
        from tongbu.hub.store import hub_table

        stream = self.kill_stream or next(iter(self.hub_streams()))
        obj = self.streams[stream].object or ""
        sim = self.start(records=self.kill_records, **self.kill_simulator_options)
        project = self.write_project(tmp_path, sim, batch_size=self.kill_batch_size)
        env = {**os.environ, "TONGBU_PROJECT": str(project)}
        cmd = [sys.executable, "-m", "tongbu.cli", "run", self.pipeline(stream)]
        engine, table = get_engine(), hub_table(obj)
        rng = random.Random(int(os.environ.get("TONGBU_KILL_SEED", "5")))
        total = len(self.truth_ids(sim, stream)[0])

        def landed() -> int:
            with engine.connect() as conn:
                query = select(func.count()).select_from(table).where(table.c.source_system == self.connector)
                return int(conn.execute(query).scalar_one())

        kills, mid_sync = kill_mid_sync(cmd, env, landed, total, rounds=3, rng=rng, max_extra_s=0.3)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert kills >= 1 and mid_sync >= 1, f"never killed mid-sync ({kills} kills); raise kill_records"
        ids, broken = self.truth_ids(sim, stream)
        in_hub = self.hub_ids(engine, obj)
        assert len(in_hub) == len(set(in_hub)), "duplicates after resume"
        assert set(in_hub) == set(ids) - broken

    @pytest.mark.slow
    def test_output_is_accepted_by_a_third_party_singer_target(self, tmp_path: Path, request: Any) -> None:
        target = third_party_target(request)
        sim = self.start()
        cfg = self.tap_config(sim)
        props = self.tap_class().config_jsonschema.get("properties", {})
        # Secrets reach the tap through its environment (`--config ENV`), never a file.
        prefix = self.tap_class().name.upper().replace("-", "_") + "_"
        env = {**os.environ}
        for key in [k for k in cfg if props.get(k, {}).get("secret")]:
            env[prefix + key.upper()] = str(cfg.pop(key))
        (tmp_path / "tap.json").write_text(json.dumps(cfg), encoding="utf-8")
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        (tmp_path / "target.json").write_text(
            json.dumps({"destination_path": str(out_dir)}), encoding="utf-8"
        )
        tap_cmd = [
            sys.executable,
            "-c",
            "import sys; from connectors.registry import connector, load_class; "
            f"load_class(connector({self.connector!r}).tap).cli()",
            "--config",
            "tap.json",
            "--config",
            "ENV",
        ]
        tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
        assert tap.stdout is not None
        try:
            out = subprocess.run(
                [str(target), "--config", "target.json"],
                stdin=tap.stdout,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp_path,
            )
        finally:
            tap.stdout.close()
            tap_err = tap.stderr.read().decode(errors="replace") if tap.stderr else ""
            tap.wait(60)
        assert tap.returncode == 0, tap_err[-2000:]
        assert out.returncode == 0, out.stderr[-2000:]
        lines = {
            p.name.split("-")[0]: len(p.read_text(encoding="utf-8").splitlines()) for p in out_dir.iterdir()
        }
        assert lines == {s: len(self.truth_ids(sim, s)[0]) for s in self.streams}

    def test_second_full_run_writes_nothing(self, tmp_path: Path) -> None:
        sim = self.start()
        runner = self.runner(self.write_project(tmp_path, sim))
        for stream in self.hub_streams():
            runner.run(self.pipeline(stream))
        for stream in self.hub_streams():
            again = runner.run(self.pipeline(stream), full_refresh=True)
            assert (again.rows_written, again.lines_written) == (0, 0), f"{stream}: {again.as_dict()}"
            assert again.rows_read == len(self.truth_ids(sim, stream)[0])

    def test_bad_records_are_quarantined(self, tmp_path: Path) -> None:
        if "malformed" not in self.simulator_class().fault_specs():
            pytest.skip(f"the {self.connector} simulator has no `malformed` switch")
        sim = self.start("malformed=0.25")
        runner = self.runner(self.write_project(tmp_path, sim))
        broken_total = 0
        for stream in self.hub_streams():
            result = runner.run(self.pipeline(stream))
            _, broken = self.truth_ids(sim, stream)
            broken_total += len(broken)
            assert result.rows_quarantined == len(broken), stream
            reasons = self.quarantined(runner, stream)
            assert all(reasons.values()), f"{stream}: a quarantined record has no reason"
        assert broken_total, "malformed=0.25 broke no record"
        self.assert_hub_exact(runner, sim)


def third_party_target(request: Any) -> Path:
    """``target-jsonl`` in its own venv, built once and kept in pytest's cache (``.pytest_cache``)."""
    folder = Path(request.config.cache.mkdir("target-jsonl-venv"))
    exe = folder / "bin" / "target-jsonl"
    # Test workers run in parallel (pytest-xdist): one builds the venv while the others wait for it.
    with open(folder.parent / "target-jsonl-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():
            return exe
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        pip = subprocess.run(
            [str(folder / "bin/pip"), "install", "-q", TARGET_JSONL],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if pip.returncode != 0:
        if os.environ.get("TONGBU_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail(f"cannot install {TARGET_JSONL} from the package registry: {pip.stderr[-500:]}")
        pytest.skip(f"{TARGET_JSONL} not installable here (no package registry)")
    return exe
