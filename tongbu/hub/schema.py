"""JSON schemas of the CRM hub objects, derived from the SQLAlchemy models.

Mapping files are validated against these schemas (target fields, types, required fields), and
``tap-crm`` / ``target-crm`` can declare them as their Singer stream schemas. Deriving them from the
models keeps one source of truth: a migration that adds a column shows up here with no second edit.

The framework's own columns (``SYSTEM_COLUMNS``: surrogate id, tenant, row hash, audit times) and
foreign keys to other hub rows' surrogate ids are left out: a mapping can neither know nor set them.
``source_id``, ``source_system``, ``source_modified_at`` and ``extra`` are included, because mappings
fill them.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, Numeric, String, Text
from sqlalchemy.sql.schema import Column

from tongbu.hub.models import CHILD_OBJECTS, HUB_OBJECTS, SYSTEM_COLUMNS

__all__ = ["column_schema", "object_names", "object_schema"]


def object_names() -> list[str]:
    """Names of every hub object a mapping can target, sorted."""
    return sorted(HUB_OBJECTS)


def object_schema(name: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12 subset, Singer-style nullable types) of hub object ``name``.

    Properties follow the table's column order; ``required`` lists the non-nullable columns a
    mapping must fill (for a child object this includes the parent key, which the engine fills).
    Raises ``KeyError`` with the known names for an unknown object.
    """
    try:
        return _copy(_object_schema(name))
    except KeyError:
        raise KeyError(f"unknown hub object '{name}' (known: {', '.join(object_names())})") from None


_LEADING = ("source_system", "source_id", "source_modified_at")
_TRAILING = ("extra",)


@functools.cache
def _object_schema(name: str) -> dict[str, Any]:
    model = HUB_OBJECTS[name]
    table = model.__table__  # type: ignore[attr-defined]
    properties: dict[str, Any] = {}
    required: list[str] = []
    # Identity first, then the object's own columns in model order, the JSON bag last: the order a
    # person reading a schema (or a suggester listing candidate targets) expects.
    first = [c for c in _LEADING if c in table.columns]
    middle = [c.name for c in table.columns if c.name not in _LEADING and c.name not in _TRAILING]
    last = [c for c in _TRAILING if c in table.columns]
    for column in (table.columns[n] for n in first + middle + last):
        if column.name in SYSTEM_COLUMNS or _is_internal_reference(column):
            continue
        properties[column.name] = column_schema(column, _annotation(model, column.name))
        if not column.nullable and column.default is None and column.server_default is None:
            required.append(column.name)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "description": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "x-key": ["source_system", "source_id"],
        # Columns the framework fills; a mapping targeting one gets a precise error.
        "x-system-fields": sorted(
            SYSTEM_COLUMNS | {c.name for c in table.columns if _is_internal_reference(c)}
        ),
    }
    child = CHILD_OBJECTS.get(name)
    if child is not None:
        schema["x-children"] = {"object": child[0], "parent_key": child[1]}
    return schema


def column_schema(column: Column[Any], annotation: str = "") -> dict[str, Any]:
    """The JSON schema of one column: a Singer-style ``["<type>", "null"]`` for nullable columns."""
    kind = column.type
    prop: dict[str, Any]
    if isinstance(kind, DateTime):
        prop = {"type": "string", "format": "date-time"}
    elif isinstance(kind, Date):
        prop = {"type": "string", "format": "date"}
    elif isinstance(kind, Boolean):
        prop = {"type": "boolean"}
    elif isinstance(kind, Integer):
        prop = {"type": "integer"}
    elif isinstance(kind, Numeric | Float):
        # No multipleOf for the column's scale: float multipleOf checks give false rejections
        # (0.3 is not a float multiple of 0.01) in the JSON-schema validators Singer targets use.
        prop = {"type": "number"}
    elif isinstance(kind, JSON):
        # The column type does not say dict or list; the Mapped[...] annotation does.
        prop = {"type": "array"} if "list[" in annotation else {"type": "object"}
    elif isinstance(kind, String | Text):
        prop = {"type": "string"}
        if getattr(kind, "length", None):
            prop["maxLength"] = kind.length
    else:  # a type a later migration adds that this function does not know yet: stay permissive
        prop = {}
    if "type" in prop and column.nullable:
        prop["type"] = [prop["type"], "null"]
    if column.comment:
        prop["description"] = column.comment
    return prop


def _is_internal_reference(column: Column[Any]) -> bool:
    # order_id -> sales_orders.id is resolved by the target from order_source_id; mappings never see it.
    return any(fk.column.name == "id" for fk in column.foreign_keys)


def _annotation(model: type, attribute: str) -> str:
    for klass in model.__mro__:
        annotation = getattr(klass, "__annotations__", {}).get(attribute)
        if annotation is not None:
            return str(annotation)
    return ""


def _copy(schema: dict[str, Any]) -> dict[str, Any]:
    # Callers may add to the schema they get (e.g. discovered custom fields); keep the cache intact.
    return {
        k: (_copy(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
        for k, v in schema.items()
    }


# Python types of the JSON schema types, for callers that check rows against a schema.
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float, Decimal),
    "boolean": (bool,),
    "date-time": (dt.datetime,),
    "date": (dt.date,),
    "object": (dict,),
    "array": (list,),
}
