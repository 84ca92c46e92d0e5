"""``tongbu demo --fxiaoke`` runs end to end and writes once per real change."""

from __future__ import annotations

import io

from rich.console import Console

from tongbu.demo_fxiaoke import run_fxiaoke_demo


def test_the_fxiaoke_demo_writes_once_per_real_change(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path))
    out = io.StringIO()
    figures = run_fxiaoke_demo(records=20, console=Console(file=out, width=120))
    assert figures["kingdee_writes"] == 1 and figures["fxiaoke_writes"] == 4
    text = out.getvalue()
    assert "Fxiaoke credit limit 880000" in text and "grade 1 kept" in text
