"""mypy (strict, settings in pyproject.toml) is clean on the connector kit, the pipelines and the
mapping engine's public API (the whole of ``mappings/engine.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["connectors/kit", "pipelines", "mappings/engine.py"]


def test_mypy_is_clean() -> None:
    # mypy is in the `test` extra: a missing mypy fails here rather than skipping the check
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
