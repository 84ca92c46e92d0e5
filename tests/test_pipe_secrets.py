"""Pipe mode under SIGKILL: no plaintext secret on disk, and no orphan goes on committing.

The runner (``tongbu run --mode pipe``) is killed at random points; afterwards every file under the
test's temp, home, project and state folders is scanned for the canary password, and the tap and
target it started must be gone with nothing committed after the kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from tests.helpers.vault import canary, key_text, new_key_source
from tongbu.db import dispose_engines
from tongbu.vault import Vault

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "mappings/library/synthetic_to_crm.yaml"
KILLS = int(os.environ.get("TONGBU_PIPE_KILLS", "5"))


def _marked_pids(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker`` (the runner's children inherit it)."""
    needle = f"TONGBU_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # zombies are dead already
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _files_containing(root: Path, secret: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and secret in path.read_bytes():
                hits.append(path)
        except OSError:
            continue
    return hits


def _hub_rows(url: str) -> int:
    path = url.split("///", 1)[1]
    if not Path(path).exists():
        return 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM accounts").fetchone()[0])
    except sqlite3.OperationalError:  # the table appears with the first migration
        return 0
    finally:
        con.close()


def test_sigkilled_pipe_runs_leave_no_secret_and_no_orphan_writer(tmp_path: Path) -> None:
    home, tmp, user_home, proj = (tmp_path / d for d in ("tongbu-home", "tmp", "user-home", "project"))
    for d in (home, tmp, user_home, proj):
        d.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'hub.db'}"
    key = new_key_source()
    secret = canary("erp-password")
    Vault.initialize(url, key_source=key).set("synth.password", secret)
    dispose_engines()
    (proj / "m.yaml").write_text(MAPPING.read_text(encoding="utf-8"), encoding="utf-8")
    project = proj / "tongbu.yaml"
    project.write_text(
        yaml.safe_dump(
            {
                "connections": {
                    "synth": {
                        "connector": "synthetic",
                        "config": {"records": 400_000, "password": "vault:synth.password"},
                    }
                },
                "pipelines": {
                    "synth_accounts": {
                        "source": {"connection": "synth", "stream": "records"},
                        "mapping": "m.yaml",
                        "target": {"object": "accounts"},
                        "batch_size": 2000,
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "TONGBU_HOME": str(home),
        "TONGBU_DATABASE_URL": url,
        "TONGBU_MASTER_KEY": key_text(key),
        "TONGBU_TEST_MARKER": marker,
        "TMPDIR": str(tmp),
        "HOME": str(user_home),
        "PYTHONPATH": str(ROOT),
    }
    system_tmp = Path(tempfile.gettempdir())
    before = set(system_tmp.glob("tongbu-pipe-*"))
    seed = int(os.environ.get("TONGBU_KILL_SEED") or int.from_bytes(os.urandom(4), "big"))
    rng = random.Random(seed)
    with_children = 0
    for kill in range(KILLS):
        runner = subprocess.Popen(
            [sys.executable, "-m", "tongbu.cli", "run", "--mode", "pipe", "--project", str(project)],
            env=env,
            cwd=proj,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        committed = _hub_rows(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_marked_pids(marker)) < 3:  # runner, tap, target
            time.sleep(0.02)
        if kill % 2:
            # Half the kills after this run committed a batch (however slow the machine is) ...
            while time.monotonic() < deadline and _hub_rows(url) == committed:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            # ... the other half anywhere: start-up, the first batch, mid-batch, between batches.
            time.sleep(rng.uniform(0.0, 3.0))
        children = [p for p in _marked_pids(marker) if p != runner.pid]
        with_children += bool(children)
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        at_kill = _hub_rows(url)
        # The tap and the target die with their runner (they are not our children: poll /proc). An
        # orphaned target would finish its batch and commit it, then die writing STATE to nobody.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _marked_pids(marker):
            time.sleep(0.05)
        left = _marked_pids(marker)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        after = _hub_rows(url)
        assert after == at_kill, f"kill {kill} (seed {seed}): {after - at_kill} rows committed after the kill"
        assert not left, f"kill {kill} (seed {seed}): the runner's subprocesses outlived it: {left}"
        leaks = _files_containing(tmp_path, secret.encode())
        assert not leaks, f"kill {kill} (seed {seed}): plaintext secret in {leaks}"
        # Other programs on the machine may use the system temp folder too: only ours carry the canary.
        for new in set(system_tmp.glob("tongbu-pipe-*")) - before:
            assert not _files_containing(new, secret.encode()), f"kill {kill} (seed {seed}): secret in {new}"
    assert _hub_rows(url) > 0, f"seed {seed}: the kills must land after batches were committed"
    assert with_children >= KILLS - 1, f"seed {seed}: most kills must land while the pipe runs"
    assert not list(tmp.iterdir()), f"seed {seed}: files left in the temp folder: {list(tmp.iterdir())}"


def _target_input() -> str:
    schema = {"type": "object", "properties": {"source_id": {"type": "string"}, "name": {"type": "string"}}}
    lines = [{"type": "SCHEMA", "stream": "accounts", "schema": schema, "key_properties": ["source_id"]}]
    lines += [
        {"type": "RECORD", "stream": "accounts", "record": {"source_id": str(i), "name": f"n{i}"}}
        for i in range(5)
    ]
    lines.append({"type": "STATE", "value": {"bookmarks": {"accounts": {"replication_key_value": 5}}}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_an_orphaned_or_unlocked_target_does_not_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    base = {"database_url": url, "pipeline": "p", "source_system": "s"}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "connectors.crm.target", "--config"]

    def run_target(extra: dict) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "target.json"
        cfg.write_text(json.dumps({**base, **extra}), encoding="utf-8")
        return subprocess.run(
            [*cmd, str(cfg)], input=_target_input(), capture_output=True, text=True, env=env, timeout=120
        )

    # Started by a runner that is gone (its parent pid is not ours).
    done = run_target({"parent_pid": 1 if os.getpid() != 1 else 2})
    assert done.returncode != 0 and "is gone; not committing" in done.stderr
    assert _hub_rows(url) == 0
    # Started by a run that does not (any more) hold the pipeline lock.
    done = run_target({"lock_holder": "host:1:dead"})
    assert done.returncode != 0 and "no longer locked" in done.stderr
    assert _hub_rows(url) == 0
    # The real thing: our pid as parent and a held lock commits.
    from tongbu.db import get_engine
    from tongbu.state.store import PipelineLock

    lock = PipelineLock(get_engine(url), "p")
    lock.acquire()
    done = run_target({"lock_holder": lock.holder})
    assert done.returncode == 0, done.stderr
    assert _hub_rows(url) == 5
