"""Named, typed transform steps that a mapping file chains on a field's value.

Each transform is registered under a name with a pydantic model of its parameters, a factory that
builds the step once per mapping (``factory(params, ctx) -> step``) and the JSON type it produces, so
the spec validator can check a chain against the target column before any record flows. A step is a
plain ``callable(value) -> value``; it raises :class:`TransformError` with a reason a person can act
on. ``None`` passes through every step unchanged except ``default`` (a missing value stays missing),
and steps that parse text treat a blank string as missing, because ERPs send ``""`` for "not filled".

Steps are closures over pre-computed state (compiled regexes, parsed time zones, normalised code
tables) because the engine calls them hundreds of thousands of times a second.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, DecimalException, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from stdnum.cn import uscc as uscc_code
from stdnum.exceptions import InvalidChecksum, InvalidLength

Step = Callable[[Any], Any]
#: The runner's hub lookup: ``(object, by_field, value) -> matching hub row (mapping) | value | None``.
#: A resolver that takes a fourth argument is also given the field to return (``lookup``'s ``return``).
Resolver = Callable[..., Any]

UTC = dt.UTC
_MISSING: Any = object()

# JSON types a step produces or a schema declares; "date-time" and "date" are strings with a format.
STRING, INTEGER, NUMBER, BOOLEAN = "string", "integer", "number", "boolean"
DATETIME, DATE, OBJECT, ARRAY = "date-time", "date", "object", "array"
_TEXTUAL = frozenset({STRING, DATETIME, DATE})


class TransformError(ValueError):
    """A value one transform step cannot convert; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str, value: Any = _MISSING) -> None:
        self.reason = reason
        self.value = None if value is _MISSING else value
        super().__init__(reason if value is _MISSING else f"{reason}: {_show(value)}")


class TransformParamsError(ValueError):
    """A transform named in a mapping file has parameters it does not accept."""


class ResolverError(RuntimeError):
    """The hub lookup itself failed (database down, bug): not the record's fault, so never quarantined."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------------
# registry


class Params(BaseModel):
    """Base of every transform's parameter model: unknown parameters are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


OutputRule = str | None | Callable[[Any, str | None], str | None]


@dataclass(frozen=True)
class BuildContext:
    """What a factory may use besides its parameters: the per-run hub lookup cache."""

    lookups: LookupCache


@dataclass(frozen=True)
class TransformDef:
    """A registered transform: how to validate its parameters, build its step and type its output."""

    name: str
    factory: Callable[[Any, BuildContext], Step]
    params: type[Params] | None
    #: Parameter a scalar shorthand fills: ``{default: 0}`` means ``{default: {value: 0}}``.
    primary: str | None
    #: JSON type of the result: a constant, ``None`` (unknown) or ``rule(params, input_type)``.
    output: OutputRule
    #: JSON types of input the step accepts (``None``: anything).
    accepts: frozenset[str] | None
    summary: str
    #: Optional inline form for the engine's generated code: ``inline(params)`` returns
    #: ``(template, constant)`` or ``None``. The template is a Python expression over ``{x}`` (the
    #: input expression), ``{v}`` (a fresh local), ``{S}`` (this step, for the uncommon cases) and
    #: ``{P}`` (the constant); it must behave exactly like the step, raising only where it does.
    inline: Callable[[Any], tuple[str, Any] | None] | None = None

    def output_type(self, params: Any, input_type: str | None) -> str | None:
        """The JSON type this step yields for ``input_type`` (``None`` when it cannot be known)."""
        rule = self.output
        return rule(params, input_type) if callable(rule) else rule


TRANSFORMS: dict[str, TransformDef] = {}


def _register(
    name: str,
    *,
    params: type[Params] | None = None,
    primary: str | None = None,
    output: OutputRule = None,
    accepts: Iterable[str] | None = None,
    summary: str = "",
    inline: Callable[[Any], tuple[str, Any] | None] | None = None,
) -> Callable[[Callable[[Any, BuildContext], Step]], Callable[[Any, BuildContext], Step]]:
    def deco(factory: Callable[[Any, BuildContext], Step]) -> Callable[[Any, BuildContext], Step]:
        TRANSFORMS[name] = TransformDef(
            name, factory, params, primary, output, frozenset(accepts) if accepts else None, summary, inline
        )
        return factory

    return deco


def _same(_params: Any, input_type: str | None) -> str | None:
    return input_type


def known_transforms() -> list[str]:
    """Names of every registered transform, sorted."""
    return sorted(TRANSFORMS)


def unknown_transform_message(name: object) -> str:
    """The error text for a transform name that is not registered, with the closest known names."""
    known = known_transforms()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown transform '{name}' (known: {', '.join(known)}){hint}"


def validate_params(name: str, raw: Any) -> Params | None:
    """Check a transform's raw parameters from a mapping file and return its parameter model.

    ``raw`` is ``None`` (no parameters), a mapping, or a scalar filling the transform's primary
    parameter. Raises :class:`TransformParamsError` naming the transform and the parameter.
    """
    tdef = TRANSFORMS.get(name)
    if tdef is None:
        raise TransformParamsError(unknown_transform_message(name))
    if tdef.params is None:
        if raw is not None and raw != {}:
            raise TransformParamsError(f"transform '{name}' takes no parameters (got {_show(raw)})")
        return None
    if not isinstance(raw, Mapping):
        if raw is None:
            raw = {}
        elif tdef.primary is None:
            raise TransformParamsError(
                f"transform '{name}' needs a mapping of parameters, e.g. {{{name}: {{...}}}}"
            )
        else:
            raw = {tdef.primary: raw}
    try:
        return tdef.params.model_validate(dict(raw))
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(f.alias or n for n, f in tdef.params.model_fields.items())
                msg = f"unknown parameter (allowed: {allowed})"
            elif err["type"] == "missing":
                msg = "missing required parameter"
            parts.append(f"{where}: {msg}" if where else msg)
        raise TransformParamsError(f"transform '{name}': " + "; ".join(parts)) from None


class LookupCache:
    """Per-run memo in front of the runner's hub resolver, shared by every lookup step of a mapping.

    A sync resolves the same customer number for thousands of orders; one query per distinct value
    per run keeps lookups off the hot path. Misses are cached too (a run does not see rows it has not
    committed yet anyway); :meth:`clear` or :meth:`set_resolver` starts a fresh run.
    """

    __slots__ = ("resolver", "_cache", "calls", "_passes_field")

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._cache: dict[tuple[str, str, str, Any], Any] = {}
        self.calls = 0
        self.set_resolver(resolver)

    def set_resolver(self, resolver: Resolver | None) -> None:
        """Use ``resolver`` from now on and forget everything cached through the previous one."""
        self.resolver = resolver
        self._passes_field = resolver is not None and _takes_fourth_argument(resolver)
        self._cache.clear()

    def clear(self) -> None:
        """Forget cached answers (start of a new run)."""
        self._cache.clear()

    def fetch(self, obj: str, by: str, value: Any, field: str = "source_id") -> Any:
        """The hub row (or ``field``'s value) matching ``value`` in ``obj.by``; ``None`` when none."""
        key = (obj, by, field, value)
        try:
            return self._cache[key]
        except KeyError:
            pass
        except TypeError:  # unhashable value: no caching, still resolvable
            return self._call(obj, by, value, field)
        found = self._cache[key] = self._call(obj, by, value, field)
        return found

    def _call(self, obj: str, by: str, value: Any, field: str) -> Any:
        if self.resolver is None:
            raise ResolverError(
                f"lookup in '{obj}' by '{by}' needs a hub resolver: compile the mapping with "
                "compile_mapping(spec, resolver=...) or call set_resolver() before applying it"
            )
        self.calls += 1
        try:
            if self._passes_field:
                return self.resolver(obj, by, value, field)  # type: ignore[call-arg]
            return self.resolver(obj, by, value)
        except Exception as exc:  # the hub failing is a run failure, not a bad record
            raise ResolverError(f"lookup in '{obj}' by '{by}' failed: {exc}") from exc


def _takes_fourth_argument(func: Callable[..., Any]) -> bool:
    """Whether a resolver accepts ``(object, by, value, return_field)`` rather than three arguments."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 4 or any(p.kind is p.VAR_POSITIONAL for p in params)


def build_step(name: str, params: Any = None, *, lookups: LookupCache | None = None) -> Step:
    """Build one step from its name and raw or validated parameters (validates raw parameters)."""
    tdef = TRANSFORMS.get(name)
    if tdef is None:
        raise TransformParamsError(unknown_transform_message(name))
    if not isinstance(params, Params):
        params = validate_params(name, params)
    return tdef.factory(params, BuildContext(lookups if lookups is not None else LookupCache()))


def chain(steps: Iterable[Step]) -> Step | None:
    """Compose steps left to right; ``None`` for an empty chain (the value passes unchanged)."""
    steps = list(steps)
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    if len(steps) == 2:
        first, second = steps

        def two(value: Any) -> Any:
            return second(first(value))

        return two

    def many(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return many


# --------------------------------------------------------------------------------------------------
# casts


@_register(
    "str",
    output=STRING,
    summary="text; numbers without float noise, dates as ISO 8601",
    inline=lambda _p: ("({v} if type({v} := {x}) is str else {S}({v}))", None),
)
def _str_factory(_params: None, _ctx: BuildContext) -> Step:
    def to_str(value: Any) -> Any:
        if value is None:
            return None
        kind = type(value)
        if kind is str:
            return value
        if kind is int:
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is float:
            # Kingdee and spreadsheets send ids as 100234.0; the id is "100234", not "100234.0".
            return str(int(value)) if value.is_integer() else repr(value)
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, dict | list | tuple):
            raise TransformError(
                "value is an object/array; use the 'json' transform to keep it as text", value
            )
        return str(value)

    return to_str


_INT_TEXT = re.compile(r"[+-]?\d+")


@_register("int", output=INTEGER, summary="whole number; '1,234', 12.0 and '12.00' accepted, 12.5 rejected")
def _int_factory(_params: None, _ctx: BuildContext) -> Step:
    def to_int(value: Any) -> Any:
        if value is None:
            return None
        kind = type(value)
        if kind is int:
            return value
        if kind is str:
            text = value.strip()
            if not text:
                return None
            if _INT_TEXT.fullmatch(text):
                return _int_text(text, value)
            number = _parse_decimal(text)
        elif kind is float:
            if not value.is_integer():
                raise TransformError("not a whole number", value)
            return int(value)
        elif kind is bool:
            raise TransformError("got a boolean where a number is expected", value)
        elif isinstance(value, Decimal):
            number = value
        else:
            raise TransformError(f"cannot make an integer from a {kind.__name__}", value)
        if not number.is_finite() or number != number.to_integral_value():
            raise TransformError("not a whole number", value)
        if number.adjusted() >= _MAX_INT_DIGITS:  # int() of '1e999999' would build a million digits
            raise TransformError(f"more than {_MAX_INT_DIGITS} digits", value)
        return int(number)

    return to_int


#: Python's own limit for int <-> text (sys.int_info.default_max_str_digits); no id or amount is longer
_MAX_INT_DIGITS = 4300


def _int_text(text: str, value: Any) -> int:
    try:
        return int(text)
    except ValueError:  # beyond the digit limit (the pattern already matched)
        raise TransformError(f"more than {_MAX_INT_DIGITS} digits", value) from None


@_register("float", output=NUMBER, summary="binary floating point (use 'decimal' for money)")
def _float_factory(_params: None, _ctx: BuildContext) -> Step:
    def to_float(value: Any) -> Any:
        if value is None:
            return None
        kind = type(value)
        if kind is float:
            return value
        if kind is str:
            text = value.strip()
            if not text:
                return None
            number: Any = _parse_decimal(text)
        elif kind is bool:
            raise TransformError("got a boolean where a number is expected", value)
        elif kind is int or isinstance(value, Decimal):
            number = value
        else:
            raise TransformError(f"cannot make a number from a {kind.__name__}", value)
        # Decimal NaN/sNaN/Infinity, and ints or texts beyond a float's range ("1e400"): not amounts.
        try:
            result = float(number)
        except (OverflowError, ValueError):
            raise TransformError("not a finite number", value) from None
        if not _isfinite(result):
            raise TransformError("not a finite number", value)
        return result

    return to_float


_isfinite = math.isfinite


def _parse_decimal(text: str) -> Decimal:
    # Thousands separators are common in Chinese finance exports ("1,234.50"); anything else that
    # Decimal() rejects is a bad value, and NaN/Infinity have no place in an amount column.
    try:
        number = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise TransformError("not a number", text) from None
    if not number.is_finite():
        raise TransformError("not a finite number", text)
    return number


def _to_decimal(value: Any) -> Decimal | None:
    kind = type(value)
    if kind is float:
        # repr() is the shortest text that round-trips, so 0.1 becomes Decimal("0.1"), not 0.1000000000000000055...
        if _isfinite(value):
            return Decimal(repr(value))
        raise TransformError("not a finite number", value)
    if kind is str:
        text = value.strip()
        return _parse_decimal(text) if text else None
    if kind is int:
        return Decimal(value)
    if kind is Decimal:
        if not value.is_finite():
            raise TransformError("not a finite number", value)
        return value
    if kind is bool:
        raise TransformError("got a boolean where a number is expected", value)
    raise TransformError(f"cannot make a decimal from a {kind.__name__}", value)


class DecimalParams(Params):
    places: int | None = Field(None, ge=0, le=18, description="round half up to this many decimal places")


@_register(
    "decimal",
    params=DecimalParams,
    primary="places",
    output=NUMBER,
    summary="exact Decimal; rejects 'abc', NaN and Infinity; optional rounding",
)
def _decimal_factory(params: DecimalParams, _ctx: BuildContext) -> Step:
    if params.places is None:

        def to_decimal(value: Any) -> Any:
            if value is None:
                return None
            return _to_decimal(value)

        return to_decimal

    quantum = Decimal(1).scaleb(-params.places)

    def to_rounded_decimal(value: Any) -> Any:
        if value is None:
            return None
        number = _to_decimal(value)
        if number is None:
            return None
        try:
            return number.quantize(quantum, rounding=ROUND_HALF_UP)
        except InvalidOperation:  # more digits than Decimal's 28 of precision at this many places
            raise TransformError(f"too many digits to round to {params.places} places", value) from None

    return to_rounded_decimal


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on", "是", "真", "对"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", "否", "假", "错"})


@_register("bool", output=BOOLEAN, summary="true/false from 1/0, true/false, Y/N, yes/no, 是/否")
def _bool_factory(_params: None, _ctx: BuildContext) -> Step:
    def to_bool(value: Any) -> Any:
        if value is None or type(value) is bool:
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            if not text:
                return None
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise TransformError("not a yes/no value (expected 1/0, true/false, Y/N, 是/否)", value)
        # (a signalling Decimal NaN raises on any comparison: test finiteness first)
        numeric = isinstance(value, int | float | Decimal) and not (
            isinstance(value, Decimal) and value.is_nan()
        )
        if numeric and value in (0, 1):
            return bool(value)
        raise TransformError("not a yes/no value (expected 1/0, true/false, Y/N, 是/否)", value)

    return to_bool


# --------------------------------------------------------------------------------------------------
# text


def _need_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TransformError(f"'{name}' works on text, got a {type(value).__name__} (add 'str' before it)", value)


@_register(
    "strip",
    output=STRING,
    accepts=_TEXTUAL,
    summary="trim surrounding whitespace (incl. full-width)",
    inline=lambda _p: ("({v}.strip() if type({v} := {x}) is str else {S}({v}))", None),
)
def _strip_factory(_params: None, _ctx: BuildContext) -> Step:
    def strip(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is str:
            return value.strip()
        return _need_text("strip", value).strip()

    return strip


@_register("upper", output=STRING, accepts=_TEXTUAL, summary="upper-case")
def _upper_factory(_params: None, _ctx: BuildContext) -> Step:
    def upper(value: Any) -> Any:
        return None if value is None else _need_text("upper", value).upper()

    return upper


@_register("lower", output=STRING, accepts=_TEXTUAL, summary="lower-case")
def _lower_factory(_params: None, _ctx: BuildContext) -> Step:
    def lower(value: Any) -> Any:
        return None if value is None else _need_text("lower", value).lower()

    return lower


class TruncateParams(Params):
    length: int = Field(ge=1, description="maximum number of characters (not bytes)")


@_register(
    "truncate",
    params=TruncateParams,
    primary="length",
    output=STRING,
    accepts=_TEXTUAL,
    summary="cut text to at most N characters",
)
def _truncate_factory(params: TruncateParams, _ctx: BuildContext) -> Step:
    length = params.length

    def truncate(value: Any) -> Any:
        if value is None:
            return None
        return _need_text("truncate", value)[:length]

    return truncate


class SplitParams(Params):
    sep: str | None = Field(None, description="separator; omitted = any run of whitespace")
    index: int | None = Field(0, description="part to keep (negative counts from the end); null = all parts")

    @field_validator("sep")
    @classmethod
    def _non_empty(cls, sep: str | None) -> str | None:
        if sep == "":
            raise ValueError("sep must not be empty (omit it to split on whitespace)")
        return sep


def _split_output(params: SplitParams, _input: str | None) -> str:
    return ARRAY if params.index is None else STRING


@_register(
    "split",
    params=SplitParams,
    primary="sep",
    output=_split_output,
    accepts=_TEXTUAL,
    summary="split text and keep one part (missing part -> null) or all parts",
)
def _split_factory(params: SplitParams, _ctx: BuildContext) -> Step:
    sep, index = params.sep, params.index

    def split(value: Any) -> Any:
        if value is None:
            return None
        parts = _need_text("split", value).split(sep)
        if index is None:
            return [p.strip() for p in parts if p.strip()]
        try:
            return parts[index].strip()
        except IndexError:
            return None

    return split


class RegexParams(Params):
    pattern: str
    group: int | str | None = Field(
        None, description="group to return; default: 1 if the pattern has groups, else 0"
    )
    strict: bool = Field(False, description="raise when the pattern does not match (default: null)")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _group_exists(self) -> RegexParams:
        compiled = re.compile(self.pattern)
        group = self.group
        if isinstance(group, int) and group > compiled.groups:
            raise ValueError(f"group {group} does not exist (the pattern has {compiled.groups})")
        if isinstance(group, str) and group not in compiled.groupindex:
            raise ValueError(f"group '{group}' does not exist in the pattern")
        return self


@_register(
    "regex",
    params=RegexParams,
    primary="pattern",
    output=STRING,
    accepts=_TEXTUAL,
    summary="first match of a regular expression (a group of it); no match -> null",
)
def _regex_factory(params: RegexParams, _ctx: BuildContext) -> Step:
    compiled = re.compile(params.pattern)
    group = params.group if params.group is not None else (1 if compiled.groups else 0)
    strict, pattern = params.strict, params.pattern

    def regex(value: Any) -> Any:
        if value is None:
            return None
        found = compiled.search(_need_text("regex", value))
        if found is None:
            if strict:
                raise TransformError(f"does not match /{pattern}/", value)
            return None
        return found.group(group)

    return regex


class ReplaceParams(Params):
    old: str = Field(min_length=1)
    new: str = ""


@_register(
    "replace",
    params=ReplaceParams,
    output=STRING,
    accepts=_TEXTUAL,
    summary="replace every occurrence of a substring",
)
def _replace_factory(params: ReplaceParams, _ctx: BuildContext) -> Step:
    old, new = params.old, params.new

    def replace(value: Any) -> Any:
        return None if value is None else _need_text("replace", value).replace(old, new)

    return replace


@_register(
    "json", output=STRING, summary="serialise any value as compact JSON text (UTF-8, not ASCII-escaped)"
)
def _json_factory(_params: None, _ctx: BuildContext) -> Step:
    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return format(obj, "f")
        if isinstance(obj, dt.date | dt.time):
            return obj.isoformat()
        if isinstance(obj, set | frozenset | tuple):
            return list(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    def to_json(value: Any) -> Any:
        if value is None:
            return None
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)
        except (TypeError, ValueError) as exc:
            raise TransformError(f"cannot serialise as JSON ({exc})", value) from None

    return to_json


# --------------------------------------------------------------------------------------------------
# dates and times


def parse_tz(name: str) -> dt.tzinfo:
    """A tzinfo from ``+08:00`` / ``+0800`` / ``UTC`` / ``Z`` / an IANA name such as ``Asia/Shanghai``."""
    text = name.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    found = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?", text)
    if found:
        sign, hours, minutes = found.group(1), int(found.group(2)), int(found.group(3) or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset out of range: '{name}'")
        delta = dt.timedelta(hours=hours, minutes=minutes)
        return dt.timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise ValueError(
            f"unknown time zone '{name}' (use an offset like +08:00 or a name like Asia/Shanghai)"
        ) from None


# "2024/5/1 9:05", "2024.05.01", "2024年5月1日 10:20:30", with optional fraction and offset: the
# shapes fromisoformat() refuses but Chinese systems and spreadsheets emit.
_LOOSE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]+(\d{1,2})\s*[:时]\s*(\d{1,2})(?:\s*[:分]\s*(\d{1,2})(?:[.,](\d+))?\s*秒?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def _parse_loose(text: str) -> dt.datetime:
    found = _LOOSE.fullmatch(text)
    if found is None:
        raise TransformError("not a date/time", text)
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        value = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro
        )
    except ValueError as exc:
        raise TransformError(f"not a valid date/time ({exc})", text) from None
    if offset:
        value = value.replace(tzinfo=parse_tz(offset))
    return value


class DateTimeParams(Params):
    tz: str = Field("+08:00", description="zone of times that carry no offset (Kingdee: +08:00)")
    format: str | None = Field(None, description="strptime format; default: ISO 8601 and common variants")
    nulls: list[str] = Field(
        default_factory=list, description="sentinel values meaning 'no date', e.g. 1900-01-01"
    )

    _check_tz = field_validator("tz")(lambda tz: _valid_tz(tz))
    _check_nulls = field_validator("nulls")(lambda nulls: _valid_nulls(nulls))


def _valid_tz(tz: str) -> str:
    parse_tz(tz)
    return tz


def _valid_nulls(nulls: list[str]) -> list[str]:
    for text in nulls:
        _naive_sentinel(text)
    return nulls


def _naive_sentinel(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"null sentinel '{text}' is not an ISO date/time") from None
    return value.replace(tzinfo=None)


def _datetime_parser(fmt: str | None) -> Callable[[str], dt.datetime]:
    if fmt is not None:

        def by_format(text: str) -> dt.datetime:
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                raise TransformError(f"does not match the format '{fmt}'", text) from None

        return by_format

    fromiso = dt.datetime.fromisoformat

    def by_iso(text: str) -> dt.datetime:
        try:
            return fromiso(text)
        except ValueError:
            return _parse_loose(text)

    return by_iso


@_register(
    "datetime",
    params=DateTimeParams,
    primary="tz",
    output=DATETIME,
    summary="aware UTC datetime; naive times are read in `tz` (default +08:00)",
)
def _datetime_factory(params: DateTimeParams, _ctx: BuildContext) -> Step:
    zone = parse_tz(params.tz)
    parse = _datetime_parser(params.format)
    nulls = frozenset(_naive_sentinel(n) for n in params.nulls)
    fromiso = dt.datetime.fromisoformat
    combine = dt.datetime.combine
    fixed = isinstance(zone, dt.timezone)
    offset = zone.utcoffset(None) if fixed else None

    def localise(value: dt.datetime) -> dt.datetime:
        try:
            return shift(value)
        except OverflowError:  # 0001-01-01 minus eight hours
            raise TransformError("date/time out of range", value) from None

    def shift(value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            if nulls and value in nulls:
                return None  # type: ignore[return-value]
            if fixed:
                # combine(..., UTC) - offset is ~4x faster than replace(tzinfo=...).astimezone(UTC)
                return combine(value.date(), value.time(), UTC) - offset
            return combine(value.date(), value.time(), zone).astimezone(UTC)
        if nulls and value.replace(tzinfo=None) in nulls:
            return None  # type: ignore[return-value]
        return value.astimezone(UTC)

    def general(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            return localise(parse(text)) if text else None
        if isinstance(value, dt.datetime):
            return localise(value)
        if isinstance(value, dt.date):
            return localise(dt.datetime(value.year, value.month, value.day))
        raise TransformError(
            f"expected a date/time text, got a {type(value).__name__} (for epoch numbers use 'epoch')", value
        )

    if not fixed or params.format is not None or nulls:
        return general

    def naive_local_fast(value: Any) -> Any:
        if type(value) is str:
            sign = value[-6:-5]
            if sign != "+" and sign != "-":
                # Hot path for the naive local times ERPs send: parse the wall time as if it were
                # UTC, then shift by the zone's fixed offset. A date without a time, surrounding
                # blanks or a "Z" make fromisoformat reject the added "Z": general path.
                try:
                    return fromiso(value + "Z") - offset
                except (ValueError, OverflowError):
                    pass
            else:  # "...+08:00" (or a bare date, whose 6th-last character is a dash)
                try:
                    parsed = fromiso(value)
                except ValueError:
                    pass
                else:
                    return parsed.astimezone(UTC) if parsed.tzinfo is not None else localise(parsed)
        return general(value)

    return naive_local_fast


class DateParams(Params):
    tz: str = Field("+08:00", description="zone in which to take the calendar date of a time with an offset")
    format: str | None = None
    nulls: list[str] = Field(default_factory=list)

    _check_tz = field_validator("tz")(lambda tz: _valid_tz(tz))
    _check_nulls = field_validator("nulls")(lambda nulls: _valid_nulls(nulls))


@_register(
    "date",
    params=DateParams,
    output=DATE,
    summary="calendar date (datetime.date); times with an offset are first moved into `tz`",
)
def _date_factory(params: DateParams, _ctx: BuildContext) -> Step:
    zone = parse_tz(params.tz)
    parse = _datetime_parser(params.format)
    nulls = frozenset(_naive_sentinel(n) for n in params.nulls)

    def to_date(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            value = parse(text)
        elif not isinstance(value, dt.date):
            raise TransformError(f"expected a date text, got a {type(value).__name__}", value)
        if isinstance(value, dt.datetime):
            if nulls and value.replace(tzinfo=None) in nulls:
                return None
            if value.tzinfo is not None:
                value = value.astimezone(zone)
            return value.date()
        if nulls and dt.datetime(value.year, value.month, value.day) in nulls:
            return None
        return value

    return to_date


class EpochParams(Params):
    unit: Literal["s", "ms", "us", "ns"] = Field("s", description="s (WeCom), ms (IoT, Java), us or ns")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}


@_register(
    "epoch",
    params=EpochParams,
    primary="unit",
    output=DATETIME,
    summary="aware UTC datetime from a Unix timestamp in s/ms/us/ns",
)
def _epoch_factory(params: EpochParams, _ctx: BuildContext) -> Step:
    unit = params.unit
    # Integer arithmetic on timedelta keeps milliseconds exact (float seconds would round them).
    if unit == "ns":

        def delta(number: Any) -> dt.timedelta:
            return dt.timedelta(microseconds=int(number) // 1000)
    else:
        kw = _UNIT_NAME[unit]

        def delta(number: Any) -> dt.timedelta:
            return dt.timedelta(**{kw: number})

    def epoch(value: Any) -> Any:
        if value is None:
            return None
        kind = type(value)
        if kind is int or kind is float:
            number = value
        elif kind is str:
            text = value.strip()
            if not text:
                return None
            number = _int_text(text, value) if _INT_TEXT.fullmatch(text) else float(_parse_decimal(text))
        elif isinstance(value, Decimal) and value.is_finite():
            number = float(value)
        else:
            raise TransformError(f"expected a Unix timestamp number, got a {kind.__name__}", value)
        try:
            return _EPOCH + delta(number)
        except (OverflowError, ValueError):
            raise TransformError(
                f"timestamp out of range for unit '{unit}' (is the unit right?)", value
            ) from None

    return epoch


# --------------------------------------------------------------------------------------------------
# codes, tables, lookups


def _json_type_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float | Decimal):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, dt.datetime):
        return DATETIME
    if isinstance(value, dt.date):
        return DATE
    if isinstance(value, Mapping):
        return OBJECT
    if isinstance(value, list | tuple):
        return ARRAY
    return None


def common_type(values: Iterable[Any]) -> str | None:
    """The single JSON type shared by ``values`` (nulls ignored); integer + number -> number."""
    kinds = {_json_type_of(v) for v in values if v is not None}
    if kinds == {INTEGER, NUMBER}:
        return NUMBER
    return kinds.pop() if len(kinds) == 1 else None


def _code_table(table: Mapping[Any, Any]) -> dict[Any, Any]:
    # YAML turns `0: 未知` into an int key while a source may send "0" (and vice versa); index both.
    out: dict[Any, Any] = {}
    for key, val in table.items():
        out[key] = val
        if not isinstance(key, str):
            out.setdefault("true" if key is True else "false" if key is False else str(key), val)
    return out


class EnumParams(Params):
    map: dict[Any, Any] = Field(description="source code -> target value")
    default: Any = Field(None, description="value for codes not in the map")
    strict: bool | None = Field(None, description="unknown code is an error (default when no `default`)")

    @model_validator(mode="after")
    def _consistent(self) -> EnumParams:
        if not self.map:
            raise ValueError("map must list at least one code")
        if self.strict and "default" in self.model_fields_set:
            raise ValueError("give either strict: true or a default, not both")
        return self


def _enum_output(params: EnumParams, input_type: str | None) -> str | None:
    values = list(params.map.values())
    if "default" in params.model_fields_set:
        values.append(params.default)
    elif params.strict is False:  # unknown codes pass through unchanged
        return common_type(values) if common_type(values) == input_type else None
    return common_type(values)


def _table_step(table: dict[Any, Any], on_missing: Callable[[Any], Any]) -> Step:
    get = table.get

    def code(value: Any) -> Any:
        if value is None:
            return None
        try:
            found = get(value, _MISSING)
        except TypeError:
            raise TransformError("code is not a scalar", value) from None
        if found is _MISSING:
            if type(value) is not str:
                found = get(str(value), _MISSING)
                if found is not _MISSING:
                    return found
            elif value != value.strip():
                found = get(value.strip(), _MISSING)
                if found is not _MISSING:
                    return found
            return on_missing(value)
        return found

    return code


def _enum_inline(params: EnumParams) -> tuple[str, Any] | None:
    table = _code_table(params.map)
    if None in table:
        return None  # null must pass through untouched; the step handles that
    # A hit is a dict lookup; a miss (or null) goes to the step, which knows every fallback rule.
    return "({w} if ({w} := {P}.get({v} := {x}, _MISSING)) is not _MISSING else {S}({v}))", table


@_register(
    "enum",
    params=EnumParams,
    output=_enum_output,
    inline=_enum_inline,
    summary="code table: map source codes to target values; unknown code -> error unless default",
)
def _enum_factory(params: EnumParams, _ctx: BuildContext) -> Step:
    table = _code_table(params.map)
    known = ", ".join(str(k) for k in params.map)
    if "default" in params.model_fields_set:
        fallback = params.default

        def on_missing(value: Any) -> Any:
            return fallback
    elif params.strict is False:

        def on_missing(value: Any) -> Any:
            return value
    else:

        def on_missing(value: Any) -> Any:
            raise TransformError(f"unknown code (known: {known})", value)

    return _table_step(table, on_missing)


class LookupParams(Params):
    table: dict[Any, Any] | None = Field(None, description="static table: key -> value")
    object: str | None = Field(None, description="hub object to search, e.g. accounts")
    by: str | None = Field(None, description="hub field to match the value against, e.g. number")
    return_: str = Field("source_id", alias="return", description="hub field to return")
    default: Any = Field(None, description="value when nothing matches (with on_missing: null)")
    on_missing: Literal["null", "error", "keep"] = Field(
        "null", description="no match -> null/default, error, or keep the value"
    )

    @model_validator(mode="after")
    def _one_form(self) -> LookupParams:
        if (self.table is None) == (self.object is None):
            raise ValueError("give either `table` (static) or `object` + `by` (hub lookup)")
        if self.object is not None and not self.by:
            raise ValueError("a hub lookup needs `by` (the hub field to match)")
        if self.table is not None and (self.by or "return" in self.model_fields_set):
            raise ValueError("`by` and `return` apply to hub lookups (`object`), not to a static `table`")
        if self.on_missing != "null" and "default" in self.model_fields_set:
            raise ValueError("`default` only applies with on_missing: null")
        return self


def _lookup_output(params: LookupParams, input_type: str | None) -> str | None:
    if params.table is None:
        return None  # the hub field's type; the spec validator resolves it when it has hub schemas
    values = list(params.table.values())
    if params.on_missing == "keep":
        return common_type(values) if common_type(values) == input_type else None
    if "default" in params.model_fields_set:
        values.append(params.default)
    return common_type(values)


def _pick(found: Any, field: str) -> Any:
    if isinstance(found, Mapping):
        return found.get(field)
    mapping = getattr(found, "_mapping", None)  # a SQLAlchemy Row
    if mapping is not None:
        return mapping.get(field)
    if hasattr(found, "__table__"):  # an ORM instance
        return getattr(found, field, None)
    return found  # the resolver answered with the value itself


@_register(
    "lookup",
    params=LookupParams,
    output=_lookup_output,
    summary="static `table`, or find a hub record (`object`, `by`) and return one of its fields",
)
def _lookup_factory(params: LookupParams, ctx: BuildContext) -> Step:
    on_missing, fallback = params.on_missing, params.default

    def missing(value: Any, where: str) -> Any:
        if on_missing == "error":
            raise TransformError(f"no match in {where}", value)
        return value if on_missing == "keep" else fallback

    if params.table is not None:
        return _table_step(_code_table(params.table), lambda value: missing(value, "the lookup table"))

    obj, by, field, cache = params.object or "", params.by or "", params.return_, ctx.lookups
    where = f"hub '{obj}' by '{by}'"

    def hub_lookup(value: Any) -> Any:
        if value is None:
            return None
        found = cache.fetch(obj, by, value, field)
        if found is None:
            return missing(value, where)
        result = _pick(found, field)
        return missing(value, where) if result is None else result

    return hub_lookup


# --------------------------------------------------------------------------------------------------
# numbers with units, defaults, nulls


class ScaleParams(Params):
    factor: Decimal = Field(description="multiplier, e.g. 10000 for 万元 -> 元, 0.01 for 分 -> 元")
    places: int | None = Field(None, ge=0, le=18, description="round half up to this many places")

    @field_validator("factor", mode="before")
    @classmethod
    def _exact(cls, factor: Any) -> Any:
        # YAML gives 0.01 as a float; its repr is the exact decimal the author wrote.
        return repr(factor) if isinstance(factor, float) else factor

    @field_validator("factor")
    @classmethod
    def _finite(cls, factor: Decimal) -> Decimal:
        if not factor.is_finite() or factor == 0:
            raise ValueError("factor must be a finite, non-zero number")
        return factor


@_register(
    "scale",
    params=ScaleParams,
    primary="factor",
    output=NUMBER,
    summary="multiply exactly (Decimal) by a unit factor, e.g. 万元 -> 元",
)
def _scale_factory(params: ScaleParams, _ctx: BuildContext) -> Step:
    factor = params.factor
    quantum = None if params.places is None else Decimal(1).scaleb(-params.places)

    def scale(value: Any) -> Any:
        if value is None:
            return None
        number = _to_decimal(value)
        if number is None:
            return None
        try:
            result = number * factor
            return result if quantum is None else result.quantize(quantum, rounding=ROUND_HALF_UP)
        except DecimalException:  # overflow, or more digits than Decimal's precision at these places
            raise TransformError("too many digits to scale", value) from None

    return scale


class DefaultParams(Params):
    value: Any = Field(description="used when the value is null")

    @model_validator(mode="before")
    @classmethod
    def _needs_value(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "value" not in data:
            raise ValueError("missing the value, e.g. {default: 0} or {default: {value: 0}}")
        return data


def _default_output(params: DefaultParams, input_type: str | None) -> str | None:
    own = _json_type_of(params.value)
    if input_type is None or own is None or own == input_type:
        return input_type or own
    if {own, input_type} == {INTEGER, NUMBER}:
        return NUMBER
    return None


@_register(
    "default",
    params=DefaultParams,
    primary="value",
    output=_default_output,
    summary="replace null with a value (the only step that acts on null)",
)
def _default_factory(params: DefaultParams, _ctx: BuildContext) -> Step:
    fallback = params.value

    def default(value: Any) -> Any:
        return fallback if value is None else value

    return default


class NullIfParams(Params):
    values: list[Any] = Field(description="values that mean 'not filled', e.g. ['', '-', 'N/A']")

    @field_validator("values", mode="before")
    @classmethod
    def _listify(cls, values: Any) -> Any:
        return values if isinstance(values, list) else [values]


def _null_if_set(params: NullIfParams) -> frozenset[Any]:
    return frozenset(v for v in params.values if isinstance(v, str | int | float | bool | Decimal))


def _null_if_inline(params: NullIfParams) -> tuple[str, Any]:
    # An unhashable value raises TypeError here; the engine's slow path then runs the step itself.
    return "(None if ({v} := {x}) in {P} else {v})", _null_if_set(params)


@_register(
    "null_if",
    params=NullIfParams,
    primary="values",
    output=_same,
    summary="turn placeholder values ('', '-', 'N/A', 0) into null",
    inline=_null_if_inline,
)
def _null_if_factory(params: NullIfParams, _ctx: BuildContext) -> Step:
    hashable = _null_if_set(params)

    def null_if(value: Any) -> Any:
        try:
            return None if value in hashable else value
        except TypeError:  # unhashable value (list, dict) is never a placeholder
            return value

    return null_if


# --------------------------------------------------------------------------------------------------
# Chinese identifiers


_PHONE_CHARS = re.compile(r"[\d\s\-+()（）.]+")
# An explicit extension marker: "0571-88886666 转 12", "010 1234 5678 ext. 3", "...#12".
_EXTENSION = re.compile(r"(.*?\d)\s*(?:转|分机|ext\.?|x|#)\s*(\d{1,6})", re.IGNORECASE)
_NON_DIGIT = re.compile(r"\D")
# Numbers already in canonical form: a mobile, or 010/02x + 8 digits, or 0xxx + 7-8 digits.
_CANONICAL_PHONE = re.compile(r"1[3-9]\d{9}|0[12]\d-\d{8}|0[3-9]\d\d-\d{7,8}")


def _phone_digits(digits: str) -> str | None:
    """Canonical text for a run of domestic digits, or None when it is not a Chinese phone number."""
    if len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789":
        return digits  # mobile
    if len(digits) == 10 and digits[:3] in ("400", "800"):
        return digits  # national service number
    if len(digits) >= 10 and digits[0] == "0":
        # 010 and 02x are the only 3-digit area codes; every other area code has 4 digits.
        area = 3 if digits[1] in "12" else 4
        number = digits[area:]
        return f"{digits[:area]}-{number}" if 7 <= len(number) <= 8 else None
    if 7 <= len(digits) <= 8 and digits[0] != "0":
        return digits  # a local number without an area code: there is nothing to add it from
    return None


class PhoneParams(Params):
    strict: bool = Field(True, description="raise on numbers that are not Chinese (else keep them trimmed)")


@_register(
    "phone",
    params=PhoneParams,
    output=STRING,
    accepts=_TEXTUAL | {INTEGER},
    summary="Chinese phone: 11-digit mobile, landline as area-number, +86/spaces/dashes removed",
)
def _phone_factory(params: PhoneParams, _ctx: BuildContext) -> Step:
    strict = params.strict

    def domestic(text: str) -> str | None:
        if not _PHONE_CHARS.fullmatch(text):
            return None
        digits = _NON_DIGIT.sub("", text)
        if text.startswith(("+", "00")):
            digits = digits[2:] if text.startswith("00") else digits
            if not digits.startswith("86"):
                return None  # a foreign number
            digits = digits[2:]
            mobile = len(digits) == 11 and digits[:1] == "1"
            if digits and not mobile and digits[:3] not in ("400", "800") and digits[0] != "0":
                digits = "0" + digits  # "+86 10 1234 5678" drops the trunk 0 of the area code
        elif len(digits) == 13 and digits.startswith("861"):
            digits = digits[2:]  # "8613812345678": country code without the plus
        return _phone_digits(digits) if digits else None

    def phone(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is int:
            text = str(value)
        elif isinstance(value, str):
            text = value.strip()
            if _CANONICAL_PHONE.fullmatch(text):
                return text  # already a mobile or an area-number landline: the common case
            if not text.isascii():
                text = unicodedata.normalize("NFKC", text).strip()  # full-width digits, ＋ and （）
        else:
            raise TransformError(f"expected a phone number, got a {type(value).__name__}", value)
        if not text:
            return None
        result = domestic(text)
        if result is not None:
            return result
        marked = _EXTENSION.fullmatch(text)
        if marked is not None:
            base, extension = domestic(marked.group(1).strip()), marked.group(2)
        else:
            # "010-12345678-801": a dash-separated last group after a complete landline.
            head, _, extension = text.rpartition("-")
            base = domestic(head.strip()) if head and extension.isdigit() and len(extension) <= 6 else None
        if base is not None and "-" in base:  # only landlines have extensions
            return f"{base}-{extension}"
        if strict:
            raise TransformError("not a Chinese mobile or landline number", value)
        return text

    return phone


@_register(
    "uscc",
    output=STRING,
    accepts=_TEXTUAL,
    summary="统一社会信用代码: trimmed, upper-cased, check character verified",
)
def _uscc_factory(_params: None, _ctx: BuildContext) -> Step:
    def uscc(value: Any) -> Any:
        if value is None:
            return None
        code = _need_text("uscc", value)
        if not code.isascii():
            code = unicodedata.normalize("NFKC", code)  # full-width letters and digits from Chinese IMEs
        code = code.strip().upper().replace(" ", "")
        if not code:
            return None
        try:
            return uscc_code.validate(code)  # python-stdnum: length, format, check character
        except InvalidLength:
            raise TransformError(
                f"unified social credit code must have 18 characters, has {len(code)}", value
            ) from None
        except InvalidChecksum:
            raise TransformError("unified social credit code check character is wrong", value) from None
        except ValueError:  # stdnum's InvalidFormat: GB 32100 omits I, O, S, V, Z; 8 leading digits
            bad = sorted({c for c in code if c in "IOSVZ" or not c.isalnum()})
            what = f"invalid characters {''.join(bad)}" if bad else "a non-digit in its first 8 characters"
            raise TransformError(f"unified social credit code has {what}", value) from None

    return uscc
