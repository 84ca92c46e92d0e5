"""The mapping file: a declarative description of how one source stream becomes one CRM hub object.

A mapping file is YAML (one mapping, several ``---`` documents, or a top-level ``mappings:`` list)::

    version: 1
    name: kingdee_customers_to_accounts
    source: {system: kingdee, stream: customers}
    target: {object: accounts}
    fields:
      - {target: source_id, source: FCUSTID, transform: [str]}
      - {target: name, source: FName, transform: [strip], required: true}
      - {target: source_system, const: kingdee}
      - {target: full_name, concat: {sources: [a, b], sep: ""}}

It is checked twice: on load (shape, transform names and parameters, duplicate targets, a
``source_id`` target) and against the source stream's and target object's JSON schemas
(:func:`validate`: unknown paths and fields, type mismatches, required fields). Every problem names
the file, the line and the field, and all problems are reported at once, because the person fixing
a mapping (or reviewing an AI suggestion) wants the whole list, not one error per attempt.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mappings import transforms as tf

__all__ = [
    "ConcatSpec",
    "FieldSpec",
    "LinesSpec",
    "MappingSpec",
    "MappingSpecError",
    "SourceRef",
    "SpecProblem",
    "TargetRef",
    "TransformStep",
    "check",
    "dump_mapping",
    "load_mapping",
    "load_mappings",
    "parse_mapping",
    "parse_mappings",
    "resolve_parent_key",
    "schema_type",
    "structural_problems",
    "validate",
    "validate_for_hub",
]

#: Target names a mapping may write besides plain columns: ``extra.<key>`` lands in the JSON ``extra``.
EXTRA_PREFIX = "extra."
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


# --------------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a mapping file, located by file, line and field."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"


class MappingSpecError(ValueError):
    """A mapping file that cannot be used; ``problems`` lists everything found, one per line of the message."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------------------
# YAML with line numbers


class _LineDict(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line it starts on and the line of each key."""

    line: int | None = None
    key_lines: dict[Any, int]


class _LineList(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers the line of each item."""

    line: int | None = None
    item_lines: list[int]


_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe YAML with line numbers, duplicate-key errors and YAML 1.2 core scalars.

    YAML 1.1 (PyYAML's default) reads ``on``/``off``/``yes``/``no`` as booleans, ``010`` as octal 8
    and ``2024-05-01`` as a date object, which silently corrupts code tables (``{是: true, no: false}``)
    and constants. Mapping files follow YAML 1.2's core schema instead: only ``true``/``false`` are
    booleans, integers are decimal (or ``0x``/``0o``), dates stay text for the transforms to parse.
    """


_SpecLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
):
    _SpecLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0x"):
        return int(text, 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    data = _LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            ) from None
        if key in data:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {data.key_lines[key]})",
                key_node.start_mark,
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1
    return data


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> _LineList:
    data = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    return data


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_SpecLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_SpecLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _line_of(node: Any) -> int | None:
    return getattr(node, "line", None)


# --------------------------------------------------------------------------------------------------
# the model


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceRef(_Model):
    """The stream a mapping reads: connector system and stream name (``kingdee`` / ``customers``)."""

    system: str = Field(min_length=1)
    stream: str = Field(min_length=1)


class TargetRef(_Model):
    """The hub object a mapping writes (``accounts``, ``sales_orders``, ...)."""

    object: str = Field(min_length=1)


class TransformStep(_Model):
    """One transform in a field's chain: its name and validated parameters.

    In YAML a step is a bare name (``strip``), a one-key mapping of name to parameters
    (``{datetime: {tz: "+08:00"}}``) or of name to the transform's primary parameter (``{default: 0}``).
    """

    name: str
    params: Any = None
    #: The parameters as written, for dumping the step back to YAML unchanged.
    raw: Any = None
    _line: int | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            name, raw = data, None
        elif isinstance(data, Mapping) and set(data) >= {"name"} and set(data) <= {"name", "params", "raw"}:
            return data  # already in model form (built in Python)
        elif isinstance(data, Mapping) and len(data) == 1:
            name, raw = next(iter(data.items()))
        else:
            raise ValueError(
                f"a transform step is a name or a one-key mapping like {{datetime: {{tz: '+08:00'}}}}, got {data!r}"
            )
        if not isinstance(name, str) or name not in tf.TRANSFORMS:
            raise ValueError(tf.unknown_transform_message(name))
        try:
            params = tf.validate_params(name, raw)
        except tf.TransformParamsError as exc:
            raise ValueError(str(exc)) from None
        return {"name": name, "params": params, "raw": _plain(raw)}

    @property
    def definition(self) -> tf.TransformDef:
        """The registered transform this step uses."""
        return tf.TRANSFORMS[self.name]

    def to_yaml(self) -> Any:
        """The step as it is written in a mapping file."""
        return self.name if self.raw is None else {self.name: self.raw}


class ConcatSpec(_Model):
    """Join several source values into one text; nulls are skipped (all null -> null)."""

    sources: list[str] = Field(min_length=1)
    sep: str = ""
    skip_empty: bool = Field(True, description="also skip blank strings, so no doubled separators")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"sources": data} if isinstance(data, list) else data


class FieldSpec(_Model):
    """How one target field gets its value: from a source path, a constant or a concatenation,
    then through a chain of transforms."""

    target: str
    source: str | None = None
    const: Any = None
    concat: ConcatSpec | None = None
    transform: list[TransformStep] = Field(default_factory=list)
    required: bool = False
    #: Free text for reviewers; the AI suggester puts its rationale here.
    note: str | None = None
    #: The AI suggester's confidence in this field (0..1); ignored by the engine.
    confidence: float | None = Field(None, ge=0, le=1)
    _line: int | None = PrivateAttr(default=None)

    @field_validator("target")
    @classmethod
    def _target_name(cls, target: str) -> str:
        if target.startswith(EXTRA_PREFIX):
            if not target[len(EXTRA_PREFIX) :]:
                raise ValueError("extra.<name> needs a name after 'extra.'")
        elif not _IDENTIFIER.fullmatch(target):
            raise ValueError(f"target '{target}' is not a column name (letters, digits, _) or extra.<name>")
        return target

    @field_validator("source")
    @classmethod
    def _source_path(cls, source: str | None) -> str | None:
        if source is not None and (
            not source or source.startswith(".") or source.endswith(".") or ".." in source
        ):
            raise ValueError(f"source path '{source}' is malformed (use a key or a dotted path a.b.c)")
        return source

    @field_validator("transform", mode="before")
    @classmethod
    def _one_step(cls, steps: Any) -> Any:
        if steps is None:
            return []
        return steps if isinstance(steps, list) else [steps]

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        origins = [
            k
            for k in ("source", "const", "concat")
            if k in self.model_fields_set and (k == "const" or getattr(self, k) is not None)
        ]
        if len(origins) != 1:
            given = ", ".join(origins) if origins else "none"
            raise ValueError(f"give exactly one of source, const or concat (given: {given})")
        return self

    @property
    def has_const(self) -> bool:
        """True when the value is a constant (``const: null`` counts: it writes NULL on purpose)."""
        return "const" in self.model_fields_set

    @property
    def line(self) -> int | None:
        """Line of this field in its mapping file (``None`` for specs built in Python)."""
        return self._line

    def source_paths(self) -> list[str]:
        """The source paths this field reads."""
        if self.source is not None:
            return [self.source]
        if self.concat is not None:
            return list(self.concat.sources)
        return []


class LinesSpec(_Model):
    """Nested detail lines (order lines) mapped to a child hub object, one child row per source line."""

    source: str = Field(description="path of the array of lines in the source record")
    target: str = Field(description="child hub object, e.g. sales_order_lines")
    key: str | None = Field(None, description="line field that becomes the child's source_id (e.g. FEntryID)")
    parent_key: str | None = Field(
        None, description="child field set to the parent's source_id (default from the hub)"
    )
    fields: list[FieldSpec] = Field(default_factory=list)
    _line: int | None = PrivateAttr(default=None)
    _key_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @property
    def line(self) -> int | None:
        """Line of the ``lines:`` key in its mapping file."""
        return self._line

    def line_of(self, key: str) -> int | None:
        """Line of one key of the block (``key``, ``source``...), else of the block."""
        return self._key_lines.get(key) or self._line


class MappingSpec(_Model):
    """One mapping: a source stream, a hub object and the list of field rules between them."""

    version: Literal[1]
    name: str
    description: str | None = None
    source: SourceRef
    target: TargetRef
    fields: list[FieldSpec] = Field(min_length=1)
    lines: LinesSpec | None = None
    _file: str = PrivateAttr(default="<mapping>")
    _line: int | None = PrivateAttr(default=None)
    _key_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"name '{name}' may only use letters, digits, '_', '.' and '-'")
        return name

    @property
    def file(self) -> str:
        """The file this spec was read from (``<mapping>`` when built in Python)."""
        return self._file

    @property
    def line(self) -> int | None:
        """Line where this mapping starts in its file."""
        return self._line

    def line_of(self, key: str) -> int | None:
        """Line of one top-level key (``fields``, ``target``...), else where the mapping starts."""
        return self._key_lines.get(key) or self._line

    def problem(
        self, message: str, field: FieldSpec | str | None = None, line: int | None = None, prefix: str = ""
    ) -> SpecProblem:
        """A :class:`SpecProblem` located in this spec's file (at ``field``'s line when given)."""
        if isinstance(field, FieldSpec):
            return SpecProblem(self._file, line or field.line or self._line, prefix + field.target, message)
        return SpecProblem(self._file, line or self._line, field, message)


def _plain(value: Any) -> Any:
    """Strip the line-tracking containers so values compare and dump as plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# loading


def load_mapping(path: str | Path, name: str | None = None) -> MappingSpec:
    """Read the mapping in ``path`` (or the one called ``name`` when the file holds several)."""
    path = Path(path)
    return _pick(load_mappings(path), name, _display(path))


def load_mappings(path: str | Path) -> list[MappingSpec]:
    """Read every mapping in ``path`` (single mapping, ``---`` documents or a ``mappings:`` list)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_MAPPING_BYTES:  # refuse before reading a huge file into memory
            raise MappingSpecError(
                [
                    SpecProblem(
                        _display(path), None, None, f"the file is larger than {MAX_MAPPING_BYTES} bytes"
                    )
                ]
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MappingSpecError(
            [SpecProblem(_display(path), None, None, f"the file is not UTF-8 text (byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise MappingSpecError(
            [SpecProblem(_display(path), None, None, f"cannot read the file: {exc}")]
        ) from None
    return parse_mappings(text, _display(path))


#: bounds on a mapping file (the largest in the library is a few KB)
MAX_MAPPING_BYTES = 1024 * 1024
MAX_MAPPING_NODES = 100_000
MAX_MAPPING_DEPTH = 64


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_mapping(text: str, filename: str = "<mapping>", name: str | None = None) -> MappingSpec:
    """Parse one mapping from YAML text; ``filename`` is only used in error messages."""
    return _pick(parse_mappings(text, filename), name, filename)


def parse_mappings(text: str, filename: str = "<mapping>") -> list[MappingSpec]:
    """Parse every mapping in YAML text, reporting all problems of all mappings at once.

    Mapping files may come from anyone with write access to a repository, so the text is bounded
    (:data:`MAX_MAPPING_BYTES`) and each document's node graph is measured *as aliases expand it*
    before it is built: a "billion laughs" of nested anchors, a self-referencing anchor or nesting
    deeper than :data:`MAX_MAPPING_DEPTH` is refused in time linear in the text.
    """
    if len(text) > MAX_MAPPING_BYTES:
        raise MappingSpecError(
            [SpecProblem(filename, None, None, f"the file is longer than {MAX_MAPPING_BYTES} characters")]
        )

    def expanded_size(root: yaml.Node) -> tuple[int, int | None]:
        # Iterative post-order over the node graph with memoised subtree sizes: linear in the graph,
        # while the sizes say what the aliases would expand to. A node met again while open is a cycle.
        sizes: dict[int, int] = {}
        open_nodes: set[int] = set()
        stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
        while stack:
            node, depth, done = stack.pop()
            key = id(node)
            if done:
                open_nodes.discard(key)
                children = _yaml_children(node)
                sizes[key] = min(MAX_MAPPING_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
                if sizes[key] > MAX_MAPPING_NODES:
                    return sizes[key], node.start_mark.line + 1
                continue
            if key in sizes:
                continue
            if key in open_nodes:
                return MAX_MAPPING_NODES + 1, node.start_mark.line + 1
            if depth > MAX_MAPPING_DEPTH:
                raise MappingSpecError(
                    [
                        SpecProblem(
                            filename,
                            node.start_mark.line + 1,
                            None,
                            f"nesting deeper than {MAX_MAPPING_DEPTH} levels",
                        )
                    ]
                )
            open_nodes.add(key)
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in _yaml_children(node) if id(c) not in sizes)
        return sizes[id(root)], None

    documents: list[Any] = []
    try:
        loader = _SpecLoader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                size, line = expanded_size(node)
                if size > MAX_MAPPING_NODES:
                    raise MappingSpecError(
                        [
                            SpecProblem(
                                filename,
                                line,
                                None,
                                f"anchors/aliases expand to more than {MAX_MAPPING_NODES} values "
                                "(or refer to themselves)",
                            )
                        ]
                    )
                doc = loader.construct_document(node)
                if doc is not None:
                    documents.append(doc)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise MappingSpecError([SpecProblem(filename, line, None, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise MappingSpecError([SpecProblem(filename, None, None, f"invalid YAML: {exc}")]) from None

    raws: list[Any] = []
    for doc in documents:
        if isinstance(doc, dict) and "mappings" in doc:
            extra = set(doc) - {"mappings", "description"}
            if extra:
                raise MappingSpecError(
                    [
                        SpecProblem(
                            filename,
                            _line_of(doc),
                            None,
                            f"a file with a 'mappings:' list may only have 'description' beside it, not {sorted(extra)}",
                        )
                    ]
                )
            items = doc["mappings"]
            if not isinstance(items, list):
                raise MappingSpecError(
                    [SpecProblem(filename, _line_of(doc), None, "'mappings' must be a list")]
                )
            raws.extend(items)
        else:
            raws.append(doc)
    if not raws:
        raise MappingSpecError([SpecProblem(filename, None, None, "the file holds no mapping")])

    specs: list[MappingSpec] = []
    problems: list[SpecProblem] = []
    for raw in raws:
        spec, found = _build(raw, filename)
        problems.extend(found)
        if spec is not None:
            specs.append(spec)
    seen: dict[str, MappingSpec] = {}
    for spec in specs:
        if spec.name in seen:
            problems.append(spec.problem(f"mapping name '{spec.name}' is used twice in this file"))
        seen[spec.name] = spec
    if problems:
        raise MappingSpecError(problems)
    return specs


def _display(path: Path) -> str:
    # Relative to the working directory when possible, so messages read mappings/library/x.yaml:14.
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _pick(specs: list[MappingSpec], name: str | None, filename: str) -> MappingSpec:
    if name is not None:
        for spec in specs:
            if spec.name == name:
                return spec
        names = ", ".join(s.name for s in specs)
        raise MappingSpecError(
            [SpecProblem(filename, None, None, f"no mapping named '{name}' (found: {names})")]
        )
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise MappingSpecError(
            [
                SpecProblem(
                    filename,
                    None,
                    None,
                    f"the file holds {len(specs)} mappings ({names}); pass name= or use load_mappings()",
                )
            ]
        )
    return specs[0]


def _build(raw: Any, filename: str) -> tuple[MappingSpec | None, list[SpecProblem]]:
    if not isinstance(raw, dict):
        return None, [
            SpecProblem(filename, _line_of(raw), None, "a mapping must be a YAML mapping (key: value)")
        ]
    try:
        spec = MappingSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem_from_error(err, raw, filename) for err in exc.errors()]
        # The model did not build, but duplicate or missing targets are still worth reporting now.
        system = raw.get("source", {}).get("system") if isinstance(raw.get("source"), dict) else None
        problems += _raw_target_problems(
            raw.get("fields"),
            filename,
            "",
            raw.key_lines.get("fields", raw.line),
            system if isinstance(system, str) else "the source system",
        )
        raw_lines = raw.get("lines")
        if isinstance(raw_lines, dict):
            problems += _raw_target_problems(raw_lines.get("fields"), filename, "lines.", None, None)
        return None, _by_line(problems)
    spec._file, spec._line = filename, _line_of(raw)
    spec._key_lines = dict(getattr(raw, "key_lines", {}))
    _attach_lines(spec.fields, raw.get("fields"))
    if spec.lines is not None:
        raw_lines = raw.get("lines")
        spec.lines._line = spec._key_lines.get("lines") or _line_of(raw_lines)
        spec.lines._key_lines = dict(getattr(raw_lines, "key_lines", {}))
        _attach_lines(spec.lines.fields, raw_lines.get("fields") if isinstance(raw_lines, dict) else None)
    return spec, _by_line(structural_problems(spec))


def _by_line(problems: list[SpecProblem]) -> list[SpecProblem]:
    return sorted(problems, key=lambda p: p.line or 0)


def _raw_target_problems(
    raw_fields: Any, filename: str, prefix: str, line: int | None, system: str | None
) -> list[SpecProblem]:
    if not isinstance(raw_fields, _LineList):
        return []
    problems: list[SpecProblem] = []
    first: dict[str, int | None] = {}
    for item, item_line in zip(raw_fields, raw_fields.item_lines, strict=False):
        target = item.get("target") if isinstance(item, dict) else None
        if not isinstance(target, str):
            continue
        if target in first:
            where = f" on line {first[target]}" if first[target] else ""
            problems.append(
                SpecProblem(filename, item_line, prefix + target, f"target is mapped twice (first{where})")
            )
        else:
            first[target] = item_line
    if system is not None and "source_id" not in first:
        problems.append(SpecProblem(filename, line, None, _NO_ID.format(system=system)))
    return problems


def _attach_lines(fields: list[FieldSpec], raw_fields: Any) -> None:
    if not isinstance(raw_fields, _LineList):
        return
    for field, raw_field, line in zip(fields, raw_fields, raw_fields.item_lines, strict=False):
        field._line = _line_of(raw_field) or line
        raw_steps = raw_field.get("transform") if isinstance(raw_field, dict) else None
        if isinstance(raw_steps, _LineList):
            for step, step_line in zip(field.transform, raw_steps.item_lines, strict=False):
                step._line = step_line


_FIELD_KEYS = ", ".join(FieldSpec.model_fields)
_BLOCK_KEYS = {
    (): ", ".join(MappingSpec.model_fields),
    ("source",): ", ".join(SourceRef.model_fields),
    ("target",): ", ".join(TargetRef.model_fields),
    ("lines",): ", ".join(LinesSpec.model_fields),
}


def _problem_from_error(err: Mapping[str, Any], raw: Any, filename: str) -> SpecProblem:
    loc = tuple(err["loc"])
    line, node, field = _line_of(raw), raw, None
    field_depth = None
    for depth, part in enumerate(loc):
        if isinstance(node, _LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _LineList) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
        # A field item is the element of a "fields" list (top level or under "lines").
        if isinstance(part, int) and depth >= 1 and loc[depth - 1] == "fields":
            target = node.get("target") if isinstance(node, dict) else None
            prefix = "lines." if loc[0] == "lines" else ""
            field = f"{prefix}{target}" if isinstance(target, str) else f"{prefix}fields[{part}]"
            field_depth = depth
            line = _line_of(node) or line
    message = str(err["msg"]).removeprefix("Value error, ")
    kind = err["type"]
    tail = loc[field_depth + 1 :] if field_depth is not None else loc
    if kind == "extra_forbidden":
        if field_depth is not None:
            allowed = _FIELD_KEYS if len(tail) == 1 else None
        else:
            allowed = _BLOCK_KEYS.get(loc[:-1])
        message = f"unknown key '{loc[-1]}'" + (f" (allowed: {allowed})" if allowed else "")
        return SpecProblem(filename, line, field, message)
    if kind == "missing":
        message = f"missing required key '{loc[-1]}'"
        return SpecProblem(filename, line, field, message)
    # Transform step errors already name the transform; other errors get the key they are about.
    keys = [str(p) for p in tail if not isinstance(p, int)]
    if keys and keys[0] != "transform":
        message = f"{'.'.join(keys)}: {message}"
    return SpecProblem(filename, line, field, message)


# --------------------------------------------------------------------------------------------------
# checks that need no schema


_NO_ID = "a mapping must map a 'source_id' target (the record's id in {system}); it is the upsert key"


def structural_problems(spec: MappingSpec) -> list[SpecProblem]:
    """Problems visible from the spec alone: duplicate targets, missing ``source_id``, extra clashes."""
    problems = _field_list_problems(spec, spec.fields, "", True)
    if spec.lines is not None:
        lines = spec.lines
        has_id = any(f.target == "source_id" for f in lines.fields)
        if not has_id and not lines.key:
            problems.append(
                spec.problem(
                    "lines need their own source_id: set `key` (e.g. FEntryID) or map a source_id field",
                    "lines",
                    lines.line,
                )
            )
        if has_id and lines.key:
            problems.append(
                spec.problem("lines have both `key` and a source_id field; keep one", "lines", lines.line)
            )
        problems.extend(_field_list_problems(spec, lines.fields, "lines.", False))
    return problems


def _field_list_problems(
    spec: MappingSpec, fields: list[FieldSpec], prefix: str, needs_id: bool
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    seen: dict[str, FieldSpec] = {}
    for field in fields:
        if field.target in seen:
            first = seen[field.target].line
            problems.append(
                spec.problem(
                    f"target is mapped twice (first{' on line ' + str(first) if first else ''})",
                    field,
                    prefix=prefix,
                )
            )
        seen[field.target] = field
    if needs_id and "source_id" not in seen:
        problems.append(spec.problem(_NO_ID.format(system=spec.source.system), None, spec.line_of("fields")))
    if "extra" in seen and any(t.startswith(EXTRA_PREFIX) for t in seen):
        problems.append(
            spec.problem(
                "map either the whole 'extra' or extra.<name> fields, not both", seen["extra"], prefix=prefix
            )
        )
    if "__lines__" in seen:
        problems.append(
            spec.problem("'__lines__' is reserved for nested lines", seen["__lines__"], prefix=prefix)
        )
    return problems


# --------------------------------------------------------------------------------------------------
# checks against the source and target schemas


def schema_type(prop: Mapping[str, Any] | None) -> str | None:
    """The single JSON type of a JSON-schema property (``date-time``/``date`` for formatted strings).

    ``None`` when it cannot be told: no type, several non-null types, or no property at all.
    """
    if not prop:
        return None
    kinds: set[str] = set()
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        for option in options:
            kind = schema_type(option)
            if kind is None and option.get("type") not in (None, "null"):
                return None
            if kind is not None:
                kinds.add(kind)
    else:
        declared = prop.get("type")
        names = [declared] if isinstance(declared, str) else list(declared or [])
        kinds = {n for n in names if n != "null"}
        if kinds == {"string"} and prop.get("format") in (tf.DATETIME, tf.DATE):
            return str(prop["format"])
    if kinds == {tf.INTEGER, tf.NUMBER}:
        return tf.NUMBER
    return kinds.pop() if len(kinds) == 1 else None


def _source_property(schema: Mapping[str, Any] | None, path: str) -> tuple[bool, Mapping[str, Any] | None]:
    """Whether ``path`` exists in an object schema (literal key first, then dotted walk) and its schema."""
    if schema is None:
        return True, None
    props = schema.get("properties")
    if props is None:
        return True, None  # a free-form object: nothing to check against
    if path in props:
        return True, props[path]
    node: Mapping[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return True, None
        if _includes(node, "array") and part.isdigit():
            node = node.get("items")
            continue
        props = node.get("properties")
        if props is None:
            return (node.get("additionalProperties") is not False and _includes(node, "object")), None
        if part not in props:
            return False, None
        node = props[part]
    return True, node


def _includes(node: Mapping[str, Any], kind: str) -> bool:
    declared = node.get("type")
    return declared == kind or (isinstance(declared, list) and kind in declared)


def _path_hint(schema: Mapping[str, Any], path: str) -> str:
    """A "did you mean" for an unknown source path: the closest sibling of the first unknown part of
    a dotted path, else the closest top-level key (which may itself contain dots)."""
    if "." in path:
        node: Mapping[str, Any] | None = schema
        parts = path.split(".")
        for depth, part in enumerate(parts):
            props = (node or {}).get("properties") or {}
            if part not in props:
                if depth == 0:
                    break
                close = _did_you_mean(part, props, prefix=".".join(parts[:depth]) + ".")
                if close:
                    return close
                break
            node = props[part]
    return _did_you_mean(path, schema.get("properties") or {})


def _did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    if name.lower() in lower:
        return f"; did you mean '{prefix}{lower[name.lower()]}'? (keys are case-sensitive)"
    close = difflib.get_close_matches(name, candidates, n=2, cutoff=0.7)
    if not close:  # "price" -> "unit_price": a word of a snake_case name
        close = [c for c in candidates if name.lower() in c.lower().split("_")][:2]
    return f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""


_HINTS = {
    (tf.STRING, tf.INTEGER): "add 'str'",
    (tf.STRING, tf.NUMBER): "add 'str'",
    (tf.STRING, tf.BOOLEAN): "add 'str'",
    (tf.STRING, tf.DATETIME): "add 'str' to keep it as text",
    (tf.DATETIME, tf.STRING): "add a 'datetime' transform (e.g. {datetime: {tz: '+08:00'}}) or 'epoch'",
    (tf.DATETIME, tf.INTEGER): "add an 'epoch' transform",
    (tf.DATETIME, tf.NUMBER): "add an 'epoch' transform",
    (tf.DATETIME, tf.DATE): "use 'datetime' instead of 'date' (the column holds a time)",
    (tf.NUMBER, tf.STRING): "add 'decimal' (or 'float')",
    (tf.INTEGER, tf.STRING): "add 'int'",
    (tf.INTEGER, tf.NUMBER): "add 'int'",
    (tf.BOOLEAN, tf.STRING): "add 'bool'",
    (tf.BOOLEAN, tf.INTEGER): "add 'bool'",
    (tf.OBJECT, tf.STRING): "the column holds JSON; map an object (or parse it upstream)",
    (tf.ARRAY, tf.STRING): "add {split: ','} to make a list",
}


def _compatible(produced: str | None, wanted: str | None) -> bool:
    if produced is None or wanted is None or produced == wanted:
        return True
    return produced == tf.INTEGER and wanted == tf.NUMBER


def check(
    spec: MappingSpec,
    source_schema: Mapping[str, Any],
    target_schema: Mapping[str, Any],
    *,
    line_target_schema: Mapping[str, Any] | None = None,
    auto_filled: Iterable[str] = ("source_system",),
) -> list[SpecProblem]:
    """Every problem of ``spec`` against the source stream's and target object's JSON schemas.

    ``line_target_schema`` is the child object's schema when the spec maps nested lines.
    ``auto_filled`` names target fields the engine fills itself (``source_system`` from the spec's
    ``source.system``); they do not count as missing required fields.
    """
    problems = structural_problems(spec)
    problems += _check_fields(spec, spec.fields, source_schema, target_schema, "", set(auto_filled))
    if spec.lines is not None:
        lines = spec.lines
        found, array_prop = _source_property(source_schema, lines.source)
        item_schema: Mapping[str, Any] | None = None
        if not found:
            props = source_schema.get("properties") or {}
            problems.append(
                spec.problem(
                    f"unknown source path '{lines.source}' for lines{_did_you_mean(lines.source, props)}",
                    "lines",
                    lines.line_of("source"),
                )
            )
        elif array_prop is not None:
            if schema_type(array_prop) not in (None, tf.ARRAY):
                problems.append(
                    spec.problem(
                        f"lines source '{lines.source}' is not an array", "lines", lines.line_of("source")
                    )
                )
            item_schema = array_prop.get("items")
        if line_target_schema is None:
            problems.append(
                spec.problem(
                    f"cannot check lines: no schema given for the child object '{lines.target}'",
                    "lines",
                    lines.line,
                )
            )
        else:
            filled = set(auto_filled) | {"source_id"} if lines.key else set(auto_filled)
            parent_key = resolve_parent_key(spec)
            if parent_key is None:
                problems.append(
                    spec.problem(
                        f"set `parent_key`: the child field of '{lines.target}' that holds the parent's source_id",
                        "lines",
                        lines.line,
                    )
                )
            else:
                filled.add(parent_key)
                if parent_key not in (line_target_schema.get("properties") or {}):
                    problems.append(
                        spec.problem(
                            f"parent_key '{parent_key}' is not a field of '{lines.target}'",
                            "lines",
                            lines.line_of("parent_key"),
                        )
                    )
            problems += _check_fields(
                spec, lines.fields, item_schema or {}, line_target_schema, "lines.", filled
            )
            if lines.key and item_schema is not None:
                found, _ = _source_property(item_schema, lines.key)
                if not found:
                    props = item_schema.get("properties") or {}
                    problems.append(
                        spec.problem(
                            f"unknown line key '{lines.key}'{_did_you_mean(lines.key, props)}",
                            "lines",
                            lines.line_of("key"),
                        )
                    )
    return _by_line(problems)


def resolve_parent_key(spec: MappingSpec) -> str | None:
    """The child field that receives the parent's ``source_id``: ``lines.parent_key``, else the hub's
    declared parent key for that child object (``sales_order_lines.order_source_id``), else ``None``."""
    lines = spec.lines
    if lines is None:
        return None
    if lines.parent_key:
        return lines.parent_key
    try:
        from tongbu.hub.models import CHILD_OBJECTS  # the hub declares its parent/child pairs
    except ImportError:  # pragma: no cover - the hub ships with the package
        return None
    child = CHILD_OBJECTS.get(spec.target.object)
    return child[1] if child is not None and child[0] == lines.target else None


def validate(
    spec: MappingSpec,
    source_schema: Mapping[str, Any],
    target_schema: Mapping[str, Any],
    *,
    line_target_schema: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`MappingSpecError` listing every problem :func:`check` finds (nothing if clean)."""
    problems = check(spec, source_schema, target_schema, line_target_schema=line_target_schema)
    if problems:
        raise MappingSpecError(problems)


def validate_for_hub(spec: MappingSpec, source_schema: Mapping[str, Any]) -> None:
    """:func:`validate` against the embedded CRM hub's schemas for the spec's target (and lines) object."""
    from tongbu.hub.schema import object_names, object_schema  # the hub is one possible target

    if spec.target.object not in object_names():
        raise MappingSpecError(
            [
                spec.problem(
                    f"unknown hub object '{spec.target.object}' (known: {', '.join(object_names())})",
                    "target",
                    spec.line_of("target"),
                )
            ]
        )
    child = None
    if spec.lines is not None:
        if spec.lines.target not in object_names():
            raise MappingSpecError(
                [
                    spec.problem(
                        f"unknown hub object '{spec.lines.target}' for lines",
                        "lines",
                        spec.lines.line_of("target"),
                    )
                ]
            )
        child = object_schema(spec.lines.target)
    validate(spec, source_schema, object_schema(spec.target.object), line_target_schema=child)


def _check_fields(
    spec: MappingSpec,
    fields: list[FieldSpec],
    source_schema: Mapping[str, Any],
    target_schema: Mapping[str, Any],
    prefix: str,
    filled: set[str],
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    target_props: Mapping[str, Any] = target_schema.get("properties") or {}
    mapped: set[str] = set()
    for field in fields:
        mapped.add(field.target.split(".", 1)[0])
        # 1. the source side
        input_type: str | None = None
        for path in field.source_paths():
            found, prop = _source_property(source_schema, path)
            if not found:
                problems.append(
                    spec.problem(
                        f"unknown source path '{path}'{_path_hint(source_schema, path)}", field, prefix=prefix
                    )
                )
            elif field.source is not None:
                input_type = schema_type(prop)
        if field.concat is not None:
            input_type = tf.STRING
        elif field.has_const:
            input_type = tf.common_type([field.const])
        # 2. the chain
        current = input_type
        for step in field.transform:
            accepts = step.definition.accepts
            if current is not None and accepts is not None and current not in accepts:
                problems.append(
                    spec.problem(
                        f"transform '{step.name}' takes {'/'.join(sorted(accepts))} but gets {current}"
                        + (" (add 'str' before it)" if tf.STRING in accepts else ""),
                        field,
                        line=step._line,
                        prefix=prefix,
                    )
                )
            current = step.definition.output_type(step.params, current)
        # 3. the target side
        target = field.target
        if target.startswith(EXTRA_PREFIX):
            if "extra" not in target_props:
                problems.append(
                    spec.problem(
                        f"'{spec.target.object}' has no 'extra' field to hold {target}", field, prefix=prefix
                    )
                )
            continue
        prop = target_props.get(target)
        if prop is None and target in target_schema.get("x-system-fields", ()):
            problems.append(
                spec.problem(f"'{target}' is filled by the framework, not by mappings", field, prefix=prefix)
            )
            continue
        if prop is None:
            problems.append(
                spec.problem(
                    f"unknown target field '{target}' in '{_object_of(spec, prefix)}'"
                    f"{_did_you_mean(target, target_props)}",
                    field,
                    prefix=prefix,
                )
            )
            continue
        wanted = schema_type(prop)
        if target == "source_id" and current in (tf.INTEGER, tf.NUMBER):
            continue  # the engine always turns the id into text (100234 -> "100234")
        if not _compatible(current, wanted):
            hint = _HINTS.get((wanted or "", current or ""))
            problems.append(
                spec.problem(
                    f"target is {wanted} but the mapping produces {current}" + (f"; {hint}" if hint else ""),
                    field,
                    prefix=prefix,
                )
            )
    for name in target_schema.get("required", []):
        if name not in mapped and name not in filled:
            problems.append(
                spec.problem(
                    f"required target field '{name}' of '{_object_of(spec, prefix)}' is not mapped",
                    prefix + name if prefix else name,
                    line=spec.lines.line if prefix and spec.lines else None,
                )
            )
    return problems


def _object_of(spec: MappingSpec, prefix: str) -> str:
    return spec.lines.target if prefix and spec.lines is not None else spec.target.object


# --------------------------------------------------------------------------------------------------
# writing


def dump_mapping(spec: MappingSpec) -> str:
    """The spec as YAML in the house format (one flow-style line per field), e.g. for the suggester."""

    def field_dict(field: FieldSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"target": field.target}
        if field.source is not None:
            out["source"] = field.source
        if field.has_const:
            out["const"] = field.const
        if field.concat is not None:
            out["concat"] = field.concat.model_dump(
                exclude_defaults=True, include={"sources", "sep", "skip_empty"}
            )
            out["concat"].setdefault("sources", field.concat.sources)
        if field.transform:
            out["transform"] = [s.to_yaml() for s in field.transform]
        if field.required:
            out["required"] = True
        if field.note is not None:
            out["note"] = field.note
        if field.confidence is not None:
            out["confidence"] = field.confidence
        return out

    def fields_yaml(fields: list[FieldSpec], indent: str) -> list[str]:
        return [f"{indent}- {_flow(field_dict(f))}" for f in fields]

    lines = [f"version: {spec.version}", f"name: {_flow(spec.name)}"]
    if spec.description:
        lines.append(f"description: {_flow(spec.description)}")
    lines.append(f"source: {_flow(spec.source.model_dump())}")
    lines.append(f"target: {_flow(spec.target.model_dump())}")
    lines.append("fields:")
    lines += fields_yaml(spec.fields, "  ")
    if spec.lines is not None:
        block = spec.lines.model_dump(exclude={"fields"}, exclude_none=True)
        lines.append("lines:")
        lines += [f"  {k}: {_flow(v)}" for k, v in block.items()]
        lines.append("  fields:")
        lines += fields_yaml(spec.lines.fields, "    ")
    return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    text = yaml.safe_dump(
        _plain(value), default_flow_style=True, allow_unicode=True, width=10_000, sort_keys=False
    )
    return text.strip().removesuffix("...").strip()
