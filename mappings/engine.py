"""Compile a mapping spec once into a specialised Python function, then apply it to records fast.

:func:`compile_mapping` turns a :class:`~mappings.spec.MappingSpec` into a :class:`CompiledMapping`
whose ``apply(record)`` is a function generated for that one mapping: plain source keys become
``record.get('FName')``, constants are pre-computed (their transforms run at compile time), common
steps (``str``, ``strip``, ``null_if``, ``enum`` hits) are expanded in place, the other steps are
nested calls of pre-built closures, and the result is one dict display. Nothing looks the spec up
per record. The generated text only ever contains ``repr()`` literals of the spec's
validated strings and names of objects the compiler put in the function's namespace.

The generated function has no per-field error handling: when anything goes wrong it hands the record
to a slow, field-by-field interpreter of the same plan, which finds the failing field and raises
:class:`MappingError` with the field, the reason and the source value. Good records pay nothing for
error reporting; a bad one costs one extra pass.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mappings import transforms as tf
from mappings.spec import (
    EXTRA_PREFIX,
    FieldSpec,
    MappingSpec,
    MappingSpecError,
    TransformStep,
    resolve_parent_key,
    structural_problems,
)

__all__ = ["CompiledMapping", "MappingError", "MappingFailure", "compile_mapping"]

LINES_KEY = "__lines__"
_IMMUTABLE = (str, int, float, bool, type(None), Decimal, dt.date, dt.time, dt.timedelta, tuple)


class MappingError(ValueError):
    """One record could not be mapped: which field, why, and the source value it started from.

    The runner catches it per record and quarantines the record with :meth:`as_dict`.
    """

    def __init__(self, field: str, reason: str, value: Any = None, *, mapping: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.value = value
        self.mapping = mapping
        shown = tf._show(value)
        where = f"{mapping}: " if mapping else ""
        super().__init__(f"{where}field '{field}': {reason} (source value: {shown})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description for a quarantine row."""
        return {
            "mapping": self.mapping,
            "field": self.field,
            "reason": self.reason,
            "value": tf._show(self.value),
        }


@dataclass(frozen=True, slots=True)
class MappingFailure:
    """A record :meth:`CompiledMapping.apply_many` could not map, with its position in the input.

    A dataclass, not a NamedTuple: a tuple's ``index`` method and this ``index`` field collided.
    """

    index: int
    record: Any
    error: MappingError


class _Missing(Exception):
    """Raised inside the generated function to hand a record with an empty required field to the slow path."""


# --------------------------------------------------------------------------------------------------
# source getters


def _path_getter(path: str) -> Callable[[Any], Any]:
    """Read a dotted path: the literal key first (Kingdee keys such as ``FCustId.FNumber`` contain
    dots), then a walk through nested objects; integer parts index into arrays."""
    parts = tuple(path.split("."))

    def get_path(record: Any) -> Any:
        value = record.get(path, tf._MISSING)
        if value is not tf._MISSING:
            return value
        value = record
        for part in parts:
            if value is None:
                return None
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
                index = int(part)
                value = value[index] if -len(value) <= index < len(value) else None
            else:
                raise tf.TransformError(
                    f"cannot read '{part}' of path '{path}' from a {type(value).__name__}"
                )
        return value

    return get_path


def _key_getter(key: str) -> Callable[[Any], Any]:
    def get_key(record: Any) -> Any:
        return record.get(key)

    return get_key


def _concat_getter(sources: list[str], sep: str, skip_empty: bool) -> Callable[[Any], Any]:
    getters = [_key_getter(p) if "." not in p else _path_getter(p) for p in sources]
    to_str = tf.build_step("str")

    def concat(record: Any) -> Any:
        parts = []
        for get in getters:
            value = get(record)
            if value is None:
                continue
            text = to_str(value)
            if skip_empty and not text.strip():
                continue
            parts.append(text)
        return sep.join(parts) if parts else None

    return concat


def _json_safe(value: Any) -> Any:
    """Make a value storable in the JSON ``extra`` column: the hub's JSON type cannot encode
    Decimal or datetime, and a mapping should not fail at write time for a kept-aside field."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    if isinstance(value, Decimal):
        as_float = float(value)
        # Keep it a JSON number when that is exact (amounts like 1234.5), else exact text.
        return as_float if Decimal(repr(as_float)) == value else format(value, "f")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return str(value)


_JSON_NATIVE = frozenset({tf.STRING, tf.INTEGER, tf.BOOLEAN})


def _as_id(value: Any, _to_str: Callable[[Any], Any] = tf.build_step("str")) -> Any:
    """Source ids are text in the hub (the upsert key); an empty id counts as missing."""
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int:
        return str(value)
    if value is None:
        return None
    text = _to_str(value)
    return text or None


# --------------------------------------------------------------------------------------------------
# compiled plan


@dataclass
class _FieldPlan:
    target: str
    label: str  # how errors name the field ("qty", or "extra.note")
    source: str | None  # for messages
    getter: Callable[[Any], Any] | None  # None for constants
    expr: str  # Python expression reading the raw value (uses `g` = record.get, `record`)
    steps: list[tuple[str, tf.Step]]
    #: (template, constant) per step for the generated code, or None to call the step
    inlines: list[tuple[str, Any] | None]
    required: bool
    is_id: bool
    const: Any = None
    const_factory: Callable[[], Any] | None = None
    folded: bool = False
    sources: tuple[str, ...] = ()  # source paths read (for sampling)
    output_type: str | None = None  # JSON type the chain yields when it can be told statically


class CompiledMapping:
    """A mapping compiled for speed. Call :meth:`apply` per record, or :meth:`apply_many` on a batch.

    Attributes: ``spec``; ``target_object`` (hub object rows are for); ``target_fields`` (keys of an
    output row, ``extra`` included, ``__lines__`` not); ``extra_fields`` (keys inside ``extra``);
    ``source_fields`` (source paths read, for sampling); ``lines`` (the compiled child mapping, or
    ``None``); ``parent_key`` (child field set to the parent's ``source_id``); ``source_code`` (the
    generated function, for debugging).
    """

    spec: MappingSpec
    target_object: str
    target_fields: tuple[str, ...]
    extra_fields: tuple[str, ...]
    source_fields: tuple[str, ...]
    lines: CompiledMapping | None
    parent_key: str | None
    source_code: str

    def __init__(
        self,
        spec: MappingSpec,
        target_object: str,
        plans: list[_FieldPlan],
        *,
        lookups: tf.LookupCache,
        lines: CompiledMapping | None = None,
        lines_source: str | None = None,
        parent_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.target_object = target_object
        self.lines = lines
        self.parent_key = parent_key
        self._lookups = lookups
        self._plans = plans
        self._lines_source = lines_source
        self._lines_getter = (
            None
            if lines_source is None
            else (_key_getter(lines_source) if "." not in lines_source else _path_getter(lines_source))
        )
        columns = [p.target for p in plans if not p.target.startswith(EXTRA_PREFIX)]
        self.extra_fields = tuple(
            p.target[len(EXTRA_PREFIX) :] for p in plans if p.target.startswith(EXTRA_PREFIX)
        )
        if self.extra_fields:
            columns.append("extra")
        self.target_fields = tuple(columns)
        sources: dict[str, None] = {}
        for plan in plans:
            for path in plan.sources:
                sources[path] = None
        if lines_source is not None:
            sources[lines_source] = None
        self.source_fields = tuple(sources)
        self._id_plan = next((p for p in plans if p.is_id), None)
        self.source_code, fast = self._generate()
        self.apply = fast  # type: ignore[method-assign,assignment]  # the generated function, no method-call overhead

    # -- public API ---------------------------------------------------------------------------------

    def apply(self, record: Mapping[str, Any]) -> dict[str, Any]:  # replaced per instance in __init__
        """Map one source record to a hub row; raises :class:`MappingError` naming the field at fault."""
        raise NotImplementedError  # pragma: no cover

    def apply_many(
        self, records: Iterable[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[MappingFailure]]:
        """Map a batch; records that fail are returned (with index and reason) instead of raising."""
        apply = self.apply
        rows: list[dict[str, Any]] = []
        failures: list[MappingFailure] = []
        append = rows.append
        for index, record in enumerate(records):
            try:
                append(apply(record))
            except MappingError as exc:
                failures.append(MappingFailure(index, record, exc))
        return rows, failures

    def source_id_of(self, record: Any) -> Any:
        """The record's source id as well as it can be told, for quarantine rows; never raises."""
        plan = self._id_plan
        if plan is None or not isinstance(record, Mapping):
            return None
        try:
            raw = plan.getter(record) if plan.getter is not None else plan.const
        except Exception:
            return None
        value = raw
        try:
            for _name, step in plan.steps:
                value = step(value)
            return _as_id(value)
        except Exception:
            return raw

    def set_resolver(self, resolver: tf.Resolver | None) -> None:
        """Use ``resolver`` for hub lookups from now on, with an empty cache (call once per run)."""
        self._lookups.set_resolver(resolver)

    def clear_lookup_cache(self) -> None:
        """Forget cached hub lookups (rows committed since may now resolve)."""
        self._lookups.clear()

    @property
    def lookup_calls(self) -> int:
        """How many times the resolver was actually called (cache misses), for run metadata."""
        return self._lookups.calls

    def __repr__(self) -> str:
        return f"<CompiledMapping {self.spec.name} -> {self.target_object} ({len(self._plans)} fields)>"

    # -- the slow, exact path -----------------------------------------------------------------------

    def _map_slowly(self, record: Any) -> dict[str, Any]:
        """Interpret the plan field by field; the reference semantics, and the error reporter."""
        name = self.spec.name
        if not isinstance(record, Mapping):
            raise MappingError(
                "<record>", f"expected an object, got a {type(record).__name__}", record, mapping=name
            )
        row: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for plan in self._plans:
            label = plan.label
            raw: Any = None
            if plan.folded:
                value = plan.const_factory() if plan.const_factory else plan.const
            else:
                if plan.getter is None:
                    raw = plan.const_factory() if plan.const_factory else plan.const
                else:
                    try:
                        raw = plan.getter(record)
                    except tf.TransformError as exc:
                        raise MappingError(label, exc.reason, None, mapping=name) from exc
                value = raw
                for step_name, step in plan.steps:
                    try:
                        value = step(value)
                    except tf.ResolverError:
                        raise
                    except tf.TransformError as exc:
                        # Name the step's own input only when an earlier step changed the source value.
                        shown = (
                            "" if exc.value is None or exc.value is raw else f" (got {tf._show(exc.value)})"
                        )
                        raise MappingError(
                            label, f"{step_name}: {exc.reason}{shown}", raw, mapping=name
                        ) from exc
                    except (ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as exc:
                        raise MappingError(
                            label, f"{step_name}: {type(exc).__name__}: {exc}", raw, mapping=name
                        ) from exc
            if plan.is_id:
                try:
                    value = _as_id(value)
                except tf.TransformError as exc:
                    raise MappingError(label, f"id: {exc.reason}", raw, mapping=name) from exc
            if value is None and plan.required:
                if plan.source is not None and raw is None:
                    reason = f"required, but source '{plan.source}' is missing or null"
                else:
                    reason = "required, but the mapped value is empty"
                raise MappingError(label, reason, raw, mapping=name)
            if plan.target.startswith(EXTRA_PREFIX):
                extra[plan.target[len(EXTRA_PREFIX) :]] = _json_safe(value)
            else:
                row[plan.target] = value
        if self.extra_fields:
            row["extra"] = extra
        if self.lines is not None and self._lines_getter is not None:
            try:
                value = self._lines_getter(record)
            except tf.TransformError as exc:
                raise MappingError(self._lines_source or "lines", exc.reason, None, mapping=name) from exc
            row[LINES_KEY] = self._map_lines(value, row, slow=True)
        return row

    def _map_lines(self, lines: Any, parent: dict[str, Any], slow: bool = False) -> list[dict[str, Any]]:
        child = self.lines
        assert child is not None and self._lines_source is not None
        if lines is None:
            return []
        if not isinstance(lines, list | tuple):
            raise MappingError(self._lines_source, "lines must be an array", lines, mapping=self.spec.name)
        parent_key, parent_id = child.parent_key, parent["source_id"]
        modified = parent.get("source_modified_at")
        # Every line of a batch must have the same keys (the hub upserts them as one statement).
        inherit = (
            "source_modified_at" in self.target_fields and "source_modified_at" not in child.target_fields
        )
        apply = child._map_slowly if slow else child.apply
        out = []
        for index, line in enumerate(lines):
            try:
                row = apply(line)
            except MappingError as exc:
                raise MappingError(
                    f"{self._lines_source}[{index}].{exc.field}",
                    exc.reason,
                    exc.value,
                    mapping=self.spec.name,
                ) from exc
            if parent_key is not None:
                row[parent_key] = parent_id
            if inherit:
                row["source_modified_at"] = modified  # a line changes when its order does
            out.append(row)
        return out

    # -- code generation ----------------------------------------------------------------------------

    def _generate(self) -> tuple[str, Callable[[Any], dict[str, Any]]]:
        namespace: dict[str, Any] = {
            "_Missing": _Missing,
            "_slow": self._map_slowly,
            "_as_id": _as_id,
            "_json_safe": _json_safe,
            "_MISSING": tf._MISSING,
        }
        required_lines: list[str] = []
        required_names: list[str] = []
        columns: list[str] = []
        extras: list[str] = []
        for i, plan in enumerate(self._plans):
            expr = self._expression(i, plan, namespace)
            if (plan.required or plan.is_id) and not (plan.folded and plan.const is not None):
                local = f"r{i}"
                required_lines.append(f"        {local} = {expr}")
                required_names.append(local)
                expr = local
            if plan.target.startswith(EXTRA_PREFIX):
                if plan.output_type not in _JSON_NATIVE:
                    expr = f"_json_safe({expr})"
                extras.append(f"{plan.target[len(EXTRA_PREFIX) :]!r}: {expr}")
            else:
                columns.append(f"{plan.target!r}: {expr}")
        if extras:
            columns.append("'extra': {" + ", ".join(extras) + "}")
        body = ["def apply(record):", "    try:", "        g = record.get"]
        body += required_lines
        if required_names:
            body.append(f"        if {' or '.join(f'{n} is None' for n in required_names)}:")
            body.append("            raise _Missing")
        row = "{" + ", ".join(columns) + "}"
        if self.lines is not None:
            namespace["_lines"] = self._map_lines
            namespace["_get_lines"] = self._lines_getter
            body.append(f"        row = {row}")
            body.append(f"        row[{LINES_KEY!r}] = _lines(_get_lines(record), row)")
            body.append("        return row")
        else:
            body.append(f"        return {row}")
        # Anything unexpected -- a bad value, a missing required field, a record that is not an
        # object -- goes to the field-by-field path, which raises a precise MappingError (or, if
        # the failure was transient, returns the same row the fast path would have).
        body += ["    except Exception:", "        return _slow(record)"]
        source = "\n".join(body) + "\n"
        code = compile(source, f"<mapping {self.spec.name} -> {self.target_object}>", "exec")
        exec(code, namespace)  # noqa: S102 - generated from validated names via repr(), see module doc
        return source, namespace["apply"]

    def _expression(self, i: int, plan: _FieldPlan, namespace: dict[str, Any]) -> str:
        if plan.folded or plan.getter is None:
            name = f"C{i}"
            if plan.const_factory is not None:
                namespace[name] = plan.const_factory
                expr = f"{name}()"
            else:
                namespace[name] = plan.const
                expr = name
        elif plan.expr:
            expr = plan.expr
        else:
            name = f"P{i}"
            namespace[name] = plan.getter
            expr = f"{name}(record)"
        if not plan.folded:
            steps = plan.steps
            if plan.is_id and steps and steps[-1][0] == "str":
                steps = steps[:-1]  # _as_id below does the same conversion (and maps "" to missing)
            for j, (_step_name, step) in enumerate(steps):
                name = f"S{i}_{j}"
                namespace[name] = step
                inline = plan.inlines[j]
                if inline is None:
                    expr = f"{name}({expr})"
                    continue
                # Common steps are expanded in place (a dict lookup, a str method) and call the
                # step only for the unusual inputs, saving a Python call per field per record.
                template, constant = inline
                const_name = f"K{i}_{j}"
                if constant is not None:
                    namespace[const_name] = constant
                expr = template.format(x=expr, v=f"t{i}_{j}", w=f"u{i}_{j}", S=name, P=const_name)
        if plan.is_id:
            expr = f"(t{i} if type(t{i} := {expr}) is str and t{i} else _as_id(t{i}))"
        return expr


# --------------------------------------------------------------------------------------------------
# compiling


def compile_mapping(spec: MappingSpec, *, resolver: tf.Resolver | None = None) -> CompiledMapping:
    """Compile ``spec`` into a :class:`CompiledMapping` (raises :class:`MappingSpecError` if unusable).

    ``resolver(object, by_field, value)`` answers ``lookup: {object, by, return}`` steps: it returns
    the matching hub row as a mapping (the step picks ``return`` from it), the wanted value itself,
    or ``None``. Answers are cached per compiled mapping until :meth:`CompiledMapping.set_resolver`
    or :meth:`CompiledMapping.clear_lookup_cache`.
    """
    problems = structural_problems(spec)
    if problems:
        raise MappingSpecError(problems)
    lookups = tf.LookupCache(resolver)
    system = spec.source.system
    child: CompiledMapping | None = None
    lines_source = None
    if spec.lines is not None:
        lines = spec.lines
        fields = list(lines.fields)
        if lines.key:
            key_field = FieldSpec(
                target="source_id", source=lines.key, transform=[TransformStep.model_validate("str")]
            )
            key_field._line = lines.line
            fields.insert(0, key_field)
        parent_key = resolve_parent_key(spec)
        if parent_key is None:
            raise MappingSpecError(
                [
                    spec.problem(
                        f"set `parent_key`: the field of '{lines.target}' that holds the parent's source_id",
                        "lines",
                        lines.line,
                    )
                ]
            )
        child_plans = _plans(spec, fields, system, lookups, "lines.")
        child = CompiledMapping(spec, lines.target, child_plans, lookups=lookups, parent_key=parent_key)
        lines_source = lines.source
    plans = _plans(spec, spec.fields, system, lookups, "")
    return CompiledMapping(
        spec, spec.target.object, plans, lookups=lookups, lines=child, lines_source=lines_source
    )


def _plans(
    spec: MappingSpec, fields: list[FieldSpec], system: str, lookups: tf.LookupCache, prefix: str
) -> list[_FieldPlan]:
    problems = []
    plans: list[_FieldPlan] = []
    targets = {f.target for f in fields}
    for field in fields:
        try:
            plans.append(_plan(field, lookups))
        except tf.TransformError as exc:
            problems.append(spec.problem(f"constant cannot be transformed: {exc}", field, prefix=prefix))
        except (tf.TransformParamsError, ValueError) as exc:
            problems.append(spec.problem(str(exc), field, prefix=prefix))
    if "source_id" not in targets:
        problems.append(
            spec.problem(
                "a mapping must map a 'source_id' target (the upsert key)",
                prefix + "source_id" if prefix else None,
            )
        )
    if problems:
        raise MappingSpecError(problems)
    if "source_system" not in targets:
        # The spec already says which system the records come from; no need to repeat it as a const.
        plans.append(
            _FieldPlan(
                "source_system",
                "source_system",
                None,
                None,
                "",
                [],
                [],
                True,
                False,
                const=system,
                folded=True,
            )
        )
    return plans


def _plan(field: FieldSpec, lookups: tf.LookupCache) -> _FieldPlan:
    plan = _plan_origin(field, lookups)
    current = tf.common_type([field.const]) if field.has_const else tf.STRING if field.concat else None
    for step in field.transform:
        current = step.definition.output_type(step.params, current)
    plan.output_type = current
    return plan


def _plan_origin(field: FieldSpec, lookups: tf.LookupCache) -> _FieldPlan:
    steps = [(s.name, tf.build_step(s.name, s.params, lookups=lookups)) for s in field.transform]
    inlines = [s.definition.inline(s.params) if s.definition.inline else None for s in field.transform]
    is_id = field.target == "source_id"
    required = field.required or is_id
    if field.has_const:
        value = field.const
        foldable = all(
            s.name != "lookup" or (s.params is not None and s.params.table is not None)
            for s in field.transform
        )
        if foldable:
            for _name, step in steps:
                value = step(value)  # TransformError here is reported as a spec problem
            if is_id:
                value = _as_id(value)
            if value is None and required:
                raise ValueError("required, but the constant maps to null")
        plan = _FieldPlan(
            field.target,
            field.target,
            None,
            None,
            "",
            steps,
            inlines,
            required,
            is_id,
            const=value if foldable else field.const,
            folded=foldable,
        )
        base = value if foldable else field.const
        if not isinstance(base, _IMMUTABLE):
            # Each row gets its own copy of a list/dict constant, so a consumer editing one row's
            # value cannot change every other row's.
            plan.const_factory = lambda base=base: copy.deepcopy(base)
        return plan
    if field.concat is not None:
        concat = field.concat
        getter = _concat_getter(concat.sources, concat.sep, concat.skip_empty)
        return _FieldPlan(
            field.target,
            field.target,
            None,
            getter,
            "",
            steps,
            inlines,
            required,
            is_id,
            sources=tuple(concat.sources),
        )
    path = field.source or ""
    if "." in path:
        return _FieldPlan(
            field.target,
            field.target,
            path,
            _path_getter(path),
            "",
            steps,
            inlines,
            required,
            is_id,
            sources=(path,),
        )
    # The hot path: a plain key is read inline as g('FName') in the generated function.
    return _FieldPlan(
        field.target,
        field.target,
        path,
        _key_getter(path),
        f"g({path!r})",
        steps,
        inlines,
        required,
        is_id,
        sources=(path,),
    )
