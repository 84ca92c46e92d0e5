"""Canary: with DEBUG logging, no session cookie, password or access token reaches the output.

Issue 17 item 3: httpcore logs every response header at DEBUG, so ``tongbu -v run`` printed
``set-cookie: kdservice-sessionid=...`` — a session id that still read customer data minutes later.
The runs below go through real subprocesses against real simulators and read everything they print.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from connectors.kingdee.simulator import KingdeeSimulator
from connectors.wecom.simulator import WeComSimulator
from tests.test_kingdee_e2e import write_project

ROOT = Path(__file__).resolve().parent.parent
SESSION = re.compile(r"sessionid=(?!\*\*\*)", re.IGNORECASE)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _assert_clean(output: str, secrets: list[str]) -> None:
    assert "set-cookie" in output.lower() or "access_token" in output, "no HTTP debug lines: canary blind"
    assert all(secrets), "a canary value is empty"
    leaked = sum(value in output for value in secrets)  # a count: never print the values themselves
    assert leaked == 0, f"{leaked} secret value(s) reached the log output"
    assert SESSION.search(output) is None, "a session cookie reached the log output"


def test_tongbu_run_verbose_shows_no_cookie_or_password(tmp_path: Path) -> None:
    with KingdeeSimulator(records=30, orders=0, receivables=0, seed=2) as sim:
        project = write_project(tmp_path, sim, page_size=10)
        proc = subprocess.run(
            [sys.executable, "-m", "tongbu.cli", "-v", "run", "kingdee_customers"],
            env=_env(TONGBU_PROJECT=str(project)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        sessions = list(sim._sessions)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-2000:]
        assert sessions, "the simulator issued no session"
        _assert_clean(output, [*sessions, sim.PASSWORD])


def test_tap_kingdee_debug_logging_shows_no_cookie_or_password(tmp_path: Path) -> None:
    with KingdeeSimulator(records=20, orders=0, receivables=0, seed=3, faults="session_expiry=1") as sim:
        cfg = sim.tap_config(page_size=5, backoff_base=0.001, backoff_max=0.01)
        script = textwrap.dedent(
            f"""
            import logging, sys
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
            from connectors.kingdee.tap import TapKingdee
            tap = TapKingdee(config={cfg!r})
            n = sum(1 for _ in tap.streams["customers"].get_records(None))
            logging.getLogger("canary").info("read %d records", n)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "read 20 records" in output, output[-2000:]
        assert sim.stats()["sessions_expired"] > 0  # several logins, several cookies
        _assert_clean(output, [*sim._sessions, sim.PASSWORD])


def test_wecom_debug_logging_shows_no_token_or_secret() -> None:
    sim = WeComSimulator(records=10, seed=4)
    sim.start()
    try:
        secret = sim.credentials()["corp_secret"]
        script = textwrap.dedent(
            f"""
            import logging, sys
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
            from connectors.wecom.client import MemoryTokenCache, WeComClient
            client = WeComClient({sim.corp_id!r}, {secret!r}, base_url={sim.base_url!r},
                                 token_cache=MemoryTokenCache())
            client.get_follow_user_list()
            logging.getLogger("canary").info("done")
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "done" in output, output[-2000:]
        tokens = sim.issued_tokens()
        assert tokens and "access_token=***" in output
        _assert_clean(output, [*tokens, secret])
    finally:
        sim.stop()
