"""Import every module that declares tables, so ``Base.metadata`` is complete (Alembic, tests).

Core, but it names two modules of higher layers (``pipelines.sync.models``, ``mappings.suggest.store``):
by string, so the layers contract does not see them (docs/architecture.md, "Layers", says why).
"""

from __future__ import annotations

import importlib

# Modules that own tables. Optional feature packages are imported when present.
_TABLE_MODULES = [
    "tongbu.hub.models",
    "tongbu.state.models",
    "pipelines.history_models",
    "pipelines.sync.models",
    "tongbu.vault.models",
    "mappings.suggest.store",
    "tongbu.inbox",
    "tongbu.notifications",
    "tongbu.api.tokens",
    "connectors.iot.models",
    "connectors.tender.models",
]

for _name in _TABLE_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a feature package not installed/built yet
        if exc.name != _name and not _name.startswith(str(exc.name)):
            raise
