"""Where tongbu keeps its files and which database it talks to.

Everything resolves from two environment variables so that a fresh checkout works with no setup:

* ``TONGBU_HOME`` — folder for the embedded SQLite hub, keys and Dagster's local storage
  (default: ``.tongbu/`` under the current working directory);
* ``TONGBU_DATABASE_URL`` — any SQLAlchemy URL for the hub (default: ``sqlite:///$TONGBU_HOME/hub.db``).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TENANT = "default"


def tongbu_home() -> Path:
    """Return the project-local state folder, creating it on first use."""
    home = Path(os.environ.get("TONGBU_HOME") or Path.cwd() / ".tongbu").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """Return the hub database URL (SQLite file under ``TONGBU_HOME`` unless overridden)."""
    url = os.environ.get("TONGBU_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tongbu_home() / 'hub.db'}"
