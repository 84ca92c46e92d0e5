"""Field profiles: the description of one object of one system that the suggester matches.

The file format is the one of the mapping benchmark (``shared/mapping-bench/README.md`` §1.1)::

    {"system": "kingdee_k3cloud", "object": "BD_Customer",
     "fields": [{"name": "FNumber", "type": "string", "label": "客户编码", "samples": ["CUST0012"]}]}

Profiles can also be built from sampled records of a configured connection stream
(:func:`profile_from_records`) or from a CRM object's JSON-schema-like description
(:func:`profile_from_schema`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "object", "array")
MAX_SAMPLES = 20


class ProfileError(ValueError):
    """A field-profile file or dict is malformed; the message names the file and the problem."""


@dataclass
class FieldProfile:
    """One field: its name (dotted path), declared type, optional label and distinct sample values."""

    name: str
    type: str = "string"
    label: str | None = None
    samples: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The field in the profile-file format."""
        return {"name": self.name, "type": self.type, "label": self.label, "samples": self.samples}


@dataclass
class TableProfile:
    """All fields of one object of one system."""

    system: str
    object: str
    fields: list[FieldProfile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The profile in the file format."""
        return {"system": self.system, "object": self.object, "fields": [f.to_dict() for f in self.fields]}

    @property
    def names(self) -> list[str]:
        """Field names in file order."""
        return [f.name for f in self.fields]


def load_profile(path: str | Path) -> TableProfile:
    """Read and validate a field-profile JSON file; raises :class:`ProfileError` with the file name."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{p}: cannot read the file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(
            f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return parse_profile(data, source=str(p))


def parse_profile(data: Any, source: str = "<profile>") -> TableProfile:
    """Validate a decoded profile dict and build a :class:`TableProfile`."""
    if not isinstance(data, Mapping):
        raise ProfileError(
            f"{source}: a field profile must be a JSON object with 'system', 'object' and 'fields'"
        )
    fields = data.get("fields")
    if fields is None:
        raise ProfileError(f"{source}: missing the 'fields' list")
    if not isinstance(fields, list):
        raise ProfileError(f"{source}: 'fields' must be a list, got {type(fields).__name__}")
    system = data.get("system", "")
    obj = data.get("object", "")
    if not isinstance(system, str) or not isinstance(obj, str):
        raise ProfileError(f"{source}: 'system' and 'object' must be strings")
    seen: set[str] = set()
    out: list[FieldProfile] = []
    for i, f in enumerate(fields):
        where = f"{source}: fields[{i}]"
        if not isinstance(f, Mapping):
            raise ProfileError(f"{where} must be an object with 'name', 'type', 'label', 'samples'")
        name = f.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ProfileError(f"{where}: 'name' must be a non-empty string")
        where = f"{source}: field {name!r}"
        if name in seen:
            raise ProfileError(f"{where} appears twice; field names must be unique within a profile")
        seen.add(name)
        ftype = f.get("type", "string")
        if ftype not in FIELD_TYPES:
            raise ProfileError(f"{where}: type {ftype!r} is not one of {', '.join(FIELD_TYPES)}")
        label = f.get("label")
        if label is not None and not isinstance(label, str):
            raise ProfileError(f"{where}: 'label' must be a string or null")
        samples = f.get("samples", [])
        if samples is None:
            samples = []
        if not isinstance(samples, list):
            raise ProfileError(f"{where}: 'samples' must be a list (use [] when there are none)")
        out.append(
            FieldProfile(name=name, type=ftype, label=label or None, samples=list(samples[:MAX_SAMPLES]))
        )
    return TableProfile(system=system, object=obj, fields=out)


# ----------------------------------------------------------------------------- builders


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _flatten_record(record: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        # Nested objects are flattened with '.', as connectors name them; lookups like {"FNumber": x}
        # (one key) stay whole because they are one reference value.
        if isinstance(value, Mapping) and len(value) > 1 and depth < 3:
            out.update(_flatten_record(value, path, depth + 1))
        else:
            out[path] = value
    return out


def _schema_type(spec: Mapping[str, Any]) -> str:
    t = spec.get("type", "string")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    fmt = spec.get("format")
    if t == "string" and fmt in ("date", "date-time"):
        return "date" if fmt == "date" else "datetime"
    return t if t in FIELD_TYPES else "string"


def profile_from_records(
    records: Iterable[Mapping[str, Any]],
    schema: Mapping[str, Any] | None = None,
    *,
    system: str = "",
    object: str = "",
    max_samples: int = MAX_SAMPLES,
    labels: Mapping[str, str] | None = None,
) -> TableProfile:
    """Profile sampled records of a stream: flattened paths, distinct non-null samples, declared types.

    ``schema`` is the stream's JSON schema (``{"properties": {...}}``); declared types and titles /
    descriptions come from it when given, otherwise the JSON types of the samples are used.
    """
    props: Mapping[str, Any] = (schema or {}).get("properties", {}) if schema else {}
    order: list[str] = list(_flatten_schema(props)) if props else []
    samples: dict[str, list[Any]] = {k: [] for k in order}
    seen: dict[str, set[str]] = {k: set() for k in order}
    for rec in records:
        for path, value in _flatten_record(rec).items():
            if path not in samples:
                order.append(path)
                samples[path] = []
                seen[path] = set()
            if value is None or value == "" or value == [] or value == {}:
                continue
            key = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
            if key in seen[path] or len(samples[path]) >= max_samples:
                continue
            seen[path].add(key)
            samples[path].append(value)
    flat_schema = _flatten_schema(props) if props else {}
    fields = []
    for path in order:
        spec = flat_schema.get(path, {})
        vals = samples.get(path, [])
        ftype = _schema_type(spec) if spec else (_json_type(vals[0]) if vals else "string")
        label = (labels or {}).get(path) or spec.get("title") or spec.get("description")
        fields.append(FieldProfile(name=path, type=ftype, label=label, samples=vals))
    return TableProfile(system=system, object=object, fields=fields)


def _flatten_schema(
    props: Mapping[str, Any], prefix: str = "", depth: int = 0
) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for key, spec in props.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if not isinstance(spec, Mapping):
            spec = {}
        nested = spec.get("properties")
        if isinstance(nested, Mapping) and nested and depth < 3 and len(nested) > 1:
            out.update(_flatten_schema(nested, path, depth + 1))
        else:
            out[path] = spec
    return out


def profile_from_schema(schema: Mapping[str, Any], *, system: str = "crm", object: str = "") -> TableProfile:
    """Profile a CRM object from a JSON-schema-like ``{"properties": {field: {"type": ...}}}`` dict.

    ``title`` or ``description`` become labels; ``enum`` values become samples (so enum code tables
    can be proposed); objects are flattened with ``.``.  There are no other samples: the cold-start case.
    """
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        raise ProfileError(f"{object or 'schema'}: a CRM object schema needs a 'properties' mapping")
    fields = []
    for path, spec in _flatten_schema(schema["properties"]).items():
        enum = spec.get("enum") if isinstance(spec, Mapping) else None
        fields.append(
            FieldProfile(
                name=path,
                type=_schema_type(spec),
                label=spec.get("title") or spec.get("description"),
                samples=[e for e in enum if e is not None][:MAX_SAMPLES] if isinstance(enum, list) else [],
            )
        )
    return TableProfile(system=system, object=object or str(schema.get("title", "")), fields=fields)
