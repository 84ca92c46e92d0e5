"""Where ``tongbu mappings suggest`` gets profiles from: a profile file, a configured connection stream, or a CRM object.

It sits in ``pipelines`` (not in ``mappings.suggest``) because sampling a stream runs the connection's
tap through the runner, and mappings sit below connectors and pipelines.

* a path to a field-profile JSON file (the benchmark format);
* ``<connection>:<stream>`` (or ``<connection>.<stream>``): a stream of a connection configured in the
  project file (``tongbu.yaml``); records are sampled through the connector's tap, in process;
* ``crm:<object>`` (or just ``<object>`` for a target): a CRM hub object, profiled from its JSON schema
  (no samples: the cold-start case).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from mappings.suggest.profiles import (
    ProfileError,
    TableProfile,
    load_profile,
    profile_from_records,
    profile_from_schema,
)
from pipelines.project import ProjectError, load_project

DEFAULT_SAMPLE_ROWS = 200


def resolve_profile(spec: str, *, role: str, sample_rows: int = DEFAULT_SAMPLE_ROWS) -> TableProfile:
    """Turn a ``--source`` / ``--target`` argument into a profile (errors say what was tried)."""
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.exists():
        return load_profile(path)
    if spec.startswith("crm:"):
        return crm_object_profile(spec[4:])
    if ":" in spec or "." in spec:
        conn, _, stream = spec.partition(":") if ":" in spec else spec.partition(".")
        return stream_profile(conn, stream, sample_rows=sample_rows)
    if role == "target":
        return crm_object_profile(spec)
    raise ProfileError(
        f"{spec}: not a profile file, not '<connection>:<stream>' and not 'crm:<object>'; "
        "pass a field-profile JSON file or a configured connection stream"
    )


def crm_object_profile(name: str) -> TableProfile:
    """Profile of a CRM hub object from its JSON schema."""
    from tongbu.hub.schema import object_names, object_schema  # lazily: profile files need no SQLAlchemy

    if name not in object_names():
        raise ProfileError(f"crm:{name}: unknown CRM object; known: {', '.join(sorted(object_names()))}")
    return profile_from_schema(object_schema(name), system="crm", object=name)


def stream_profile(connection: str, stream: str, *, sample_rows: int = DEFAULT_SAMPLE_ROWS) -> TableProfile:
    """Sample up to ``sample_rows`` records of a configured connection stream and profile them."""
    from pipelines.runner import Runner  # the runner imports every layer below; only this path needs it

    try:
        project = load_project()
        project.connection(connection)
    except ProjectError as exc:
        raise ProfileError(f"{connection}:{stream}: {exc}") from None
    runner = Runner(project)
    tap = runner.make_tap(connection)
    try:
        st = tap.streams[stream]
    except KeyError:
        raise ProfileError(
            f"{connection}:{stream}: no such stream; streams: {', '.join(sorted(tap.streams))}"
        ) from None
    records: list[dict[str, Any]] = list(itertools.islice(st.get_records(None), sample_rows))
    system = project.connection(connection).connector
    return profile_from_records(records, getattr(st, "schema", None), system=system, object=stream)
