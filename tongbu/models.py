"""Import every module that declares tables, so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

import importlib

# Modules that own tables. Optional feature packages are imported when present.
_TABLE_MODULES = [
    "connectors.crm.models",
    "pipelines.models",
    "pipelines.sync.models",
    "tongbu.vault.models",
    "mappings.suggest.store",
    "tongbu.serve",
    "tongbu.notifications",
    "connectors.tender.models",
]

for _name in _TABLE_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a feature package not installed/built yet
        if exc.name != _name and not _name.startswith(str(exc.name)):
            raise
