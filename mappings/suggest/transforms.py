"""Value-transform suggestions for a matched pair, in the step vocabulary of the mapping engine.

Steps: ``str, int, float, decimal, bool, strip, upper, lower, {datetime: {tz, format}}, date,
{epoch: {unit}}, {enum: {map, default}}, {scale: {factor}}, phone, uscc, {split: {sep, index}},
{default: value}, {regex: {pattern, group}}``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mappings.suggest.features import FieldView

DEFAULT_TZ = "+08:00"

# Well-known code tables (enum value maps), keyed by a canonical concept.
GENDER_CODES = {"0": "unknown", "1": "male", "2": "female"}
_GENDER_WORDS = {
    "unknown": ("unknown", "未知", "0", "u"),
    "male": ("male", "男", "m", "先生", "1"),
    "female": ("female", "女", "f", "女士", "2"),
}
_BOOL_WORDS = {
    True: (
        "true",
        "1",
        "y",
        "yes",
        "是",
        "在线",
        "online",
        "启用",
        "有效",
        "active",
        "enabled",
        "normal",
        "正常",
    ),
    False: ("false", "0", "n", "no", "否", "离线", "offline", "禁用", "无效", "inactive", "disabled"),
}
_KINGDEE_STATUS = {"A": "active", "B": "disabled"}  # 禁用状态 FForbidStatus: A = in use, B = disabled


def _kinds(view: FieldView) -> dict[str, float]:
    return view.values.kinds


def _has(view: FieldView, *kinds: str, share: float = 0.5) -> bool:
    k = _kinds(view)
    return sum(k.get(x, 0.0) for x in kinds) >= share


def _expects(view: FieldView, *kinds: str) -> bool:
    return bool(view.expected & set(kinds))


def suggest_transform(src: FieldView, tgt: FieldView) -> tuple[list[Any], str]:
    """Transform steps turning ``src`` values into ``tgt`` values, and a one-line note ('' = none)."""
    ttype = tgt.profile.type
    # ---------------------------------------------------------------- dates and times
    if ttype in ("date", "datetime") or (
        _has(tgt, "date", "datetime", "epoch_s", "epoch_ms") and not tgt.values.empty
    ):
        want_epoch_ms = _has(tgt, "epoch_ms")
        want_date = ttype == "date" and not want_epoch_ms
        if _has(src, "epoch_s"):
            steps: list[Any] = [{"epoch": {"unit": "s"}}]
            return steps + (["date"] if want_date else []), "epoch seconds → timestamp"
        if _has(src, "epoch_ms"):
            return [{"epoch": {"unit": "ms"}}] + (
                ["date"] if want_date else []
            ), "epoch milliseconds → timestamp"
        fmts = src.values.date_formats
        if fmts:
            fmt = fmts[0]
            tz = None if "%z" in fmt else DEFAULT_TZ
            spec: dict[str, Any] = {"format": fmt.replace(".%f", "")} if "%f" not in fmt else {"format": fmt}
            if tz:
                spec["tz"] = tz
            steps = [{"datetime": spec}]
            if want_date:
                steps.append("date")
            note = f"parse {fmt}" + (f" as {tz}" if tz else "") + (" → epoch ms" if want_epoch_ms else "")
            return steps, note
    # ---------------------------------------------------------------- amounts and units
    label = (tgt.profile.label or "") + " " + tgt.profile.name
    if ttype in ("number", "integer"):
        if _has(src, "amount_wan", share=0.3):
            target_in_wan = "万" in label
            steps = [{"regex": {"pattern": r"([0-9][0-9,]*\.?[0-9]*)", "group": 1}}, "decimal"]
            if not target_in_wan:
                steps.append({"scale": {"factor": 10000}})
                return steps, "万元 → 元 (×10000)"
            return steps, "strip unit text"
        src_label = (src.profile.label or "") + " " + src.profile.name
        if "万" in src_label and "万" not in label and _has(src, "money", "number", "integer"):
            return ["decimal", {"scale": {"factor": 10000}}], "万元 → 元 (×10000)"
        if (src.profile.type == "string" or _has(src, "money", "number")) and any(
            isinstance(v, str) for v in src.profile.samples
        ):
            return ["decimal"], "numeric string → decimal"
        if ttype == "integer" and src.profile.type == "number":
            return ["int"], ""
    # ---------------------------------------------------------------- identifiers with check rules
    if _expects(tgt, "uscc") or (_has(src, "uscc", share=0.6) and _expects(tgt, "uscc", "taxno")):
        return ["strip", "upper", "uscc"], "unified social credit code (check digit validated)"
    if _expects(tgt, "phone", "mobile", "landline") and _has(src, "mobile", "phone", "landline"):
        return ["phone"], "normalise phone number"
    # ---------------------------------------------------------------- enum code tables
    enum = _enum_map(src, tgt)
    if enum:
        return [{"enum": {"map": enum, "default": None}}], "code table"
    # ---------------------------------------------------------------- booleans
    if src.profile.type == "boolean" and ttype == "string":
        bmap = _bool_map(tgt)
        if bmap:
            return [{"enum": {"map": bmap, "default": None}}], "boolean → status text"
        return ["str"], ""
    if ttype == "boolean" and src.profile.type != "boolean":
        return ["bool"], ""
    if ttype == "string" and src.profile.type in ("integer", "number"):
        return ["str"], ""
    if (
        ttype == "string"
        and src.profile.type == "string"
        and _has(src, "text", "zh_text", "en_text", "company_name", "person_name", "address", share=0.5)
    ):
        return ["strip"], ""
    return [], ""


def _enum_map(src: FieldView, tgt: FieldView) -> dict[str, Any] | None:
    sv = [str(v) for v in src.values.enum_values]
    tv = [str(v) for v in tgt.values.enum_values]
    terms = set(src.all_terms) | set(tgt.all_terms) | set(tgt.py_terms)
    if "gender" in terms:
        if not tv or set(tv) <= {"male", "female", "unknown"}:
            return dict(GENDER_CODES) if (not sv or set(sv) <= set(GENDER_CODES)) else None
        out = {}
        for code, canon in GENDER_CODES.items():
            for t in tv:
                if t.lower() in _GENDER_WORDS[canon]:
                    out[code] = t
        return out or None
    if not sv or not tv or set(sv) == set(tv) or len(sv) > 12:
        return None
    # Kingdee forbid status A/B → active flag or status codes
    if set(sv) <= set(_KINGDEE_STATUS) and set(tv) <= {"true", "false", "1", "0", "2", "True", "False"}:
        if set(tv) <= {"true", "false", "True", "False"}:
            return {"A": True, "B": False}
        return {"A": "1", "B": "2"}
    return None


def _bool_map(tgt: FieldView) -> dict[str, Any] | None:
    tv = [str(v) for v in tgt.values.enum_values]
    if len(tv) != 2:
        return None
    out: dict[str, Any] = {}
    for flag, words in _BOOL_WORDS.items():
        for t in tv:
            if t.lower() in words:
                out["true" if flag else "false"] = t
    return out if len(out) == 2 else None


def is_identity(steps: list[Any]) -> bool:
    """True when the steps do not change values (none, or only whitespace stripping)."""
    return all(s in ("strip",) for s in steps)


_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")
