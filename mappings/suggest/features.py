"""Pair features: how much a source field and a target field look like the same fact.

Every field is first turned into a :class:`FieldView` (terms from its name and label, Chinese text,
pinyin renderings, value profile).  :func:`pair_features` then computes one feature vector per
(source, target) pair; the model in ``model.py`` weighs them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mappings.suggest.glossary import Glossary
from mappings.suggest.profiles import FieldProfile, TableProfile
from mappings.suggest.text import (
    NameParts,
    NamingConventions,
    WordSplitter,
    char_ngrams,
    detect_conventions,
    dice,
    has_cjk,
    parse_name,
    pinyin_forms,
    pinyin_similarity,
)
from mappings.suggest.values import (
    ValueProfile,
    bigram_cosine,
    compatible_kind_similarity,
    expectation_match,
    profile_values,
    stats_similarity,
    value_overlap,
)

FEATURE_NAMES: tuple[str, ...] = (
    "exact_leaf",
    "leaf_terms",
    "leaf_terms_min",
    "all_terms",
    "all_terms_min",
    "label_label",
    "cross_name_label",
    "path_terms",
    "zh_dice",
    "pinyin",
    "pinyin_exact",
    "py_terms",
    "char_trigram",
    "type_compat",
    "expect_s2t",
    "expect_t2s",
    "expect_missing",
    "kind_sim",
    "overlap_jaccard",
    "overlap_contain",
    "bigram_cos",
    "stats_sim",
    "both_samples",
    "src_samples",
    "tgt_samples",
    "both_labels",
    "tgt_opaque",
    "src_opaque",
    "leaf_head",
    "generic_only",
)
N_FEATURES = len(FEATURE_NAMES)
FI = {n: i for i, n in enumerate(FEATURE_NAMES)}

# Terms that say little on their own; a match on them alone is weak evidence.
GENERIC_TERMS = frozenset(
    [
        "id",
        "code",
        "number",
        "name",
        "type",
        "status",
        "time",
        "date",
        "create",
        "modify",
        "last",
        "first",
        "flag",
        "other",
        "record",
        "main",
        "default",
        "detail",
        "level",
        "source",
        "value",
        "total",
        "amount",
        "count",
        "user",
        "owner",
        "group",
    ]
)
_PINYIN_LIKE = re.compile(r"^[a-z]{1,9}(id)?\d?$")
_TYPE_COMPAT = {
    frozenset(["integer", "number"]): 0.8,
    frozenset(["date", "datetime"]): 0.9,
    frozenset(["integer", "datetime"]): 0.6,
    frozenset(["integer", "date"]): 0.5,
    frozenset(["string", "date"]): 0.6,
    frozenset(["string", "datetime"]): 0.6,
    frozenset(["string", "number"]): 0.6,
    frozenset(["string", "integer"]): 0.55,
    frozenset(["string", "object"]): 0.6,
    frozenset(["string", "array"]): 0.5,
    frozenset(["string", "boolean"]): 0.5,
    frozenset(["integer", "boolean"]): 0.4,
    frozenset(["integer", "object"]): 0.4,
    frozenset(["array", "object"]): 0.5,
    frozenset(["integer", "array"]): 0.3,
    frozenset(["number", "object"]): 0.2,
}


def type_compat(a: str, b: str) -> float:
    """Compatibility of two declared field types (1 = same)."""
    if a == b:
        return 1.0
    return _TYPE_COMPAT.get(frozenset([a, b]), 0.15)


@dataclass
class FieldView:
    """Everything the features need to know about one field, computed once per field."""

    profile: FieldProfile
    parts: NameParts
    leaf_terms: list[str]
    path_terms: list[str]
    label_terms: list[str]
    all_terms: list[str]
    zh_texts: list[str]
    renderings: set[str]
    primary_renderings: list[str]
    sub_renderings: set[str]
    pinyin_like: bool
    py_terms: list[str]
    opaque: bool
    values: ValueProfile
    expected: frozenset[str]
    trigrams: set[str]
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The field's name."""
        return self.profile.name


class FieldViewer:
    """Builds :class:`FieldView` objects for the fields of one table."""

    def __init__(self, glossary: Glossary) -> None:
        self.g = glossary
        self.splitter = WordSplitter(glossary.vocab)
        self._initials_index = self._build_initials_index()

    def _build_initials_index(self) -> dict[str, str]:
        idx: dict[str, str] = {}
        for tid, term in self.g.terms.items():
            for z in term.zh[:4]:
                ini = pinyin_forms(z)[0]
                if ini and (ini not in idx or len(z) > 1):
                    idx.setdefault(ini, tid)
        return idx

    def parse_initials(self, raw: str) -> list[str]:
        """Read a pinyin-initial name (``khmc``) as glossary terms (``[customer, name]``), best effort."""
        n = len(raw)
        if n < 2:
            return []
        inf = float("inf")
        best = [inf] * (n + 1)
        back: list[tuple[int, str | None]] = [(0, None)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] == inf:
                continue
            if best[i] + 2.0 < best[i + 1]:
                best[i + 1] = best[i] + 2.0
                back[i + 1] = (i, None)
            for j in range(i + 1, min(n, i + 6) + 1):
                tid = self._initials_index.get(raw[i:j])
                if tid:
                    c = best[i] + (1.0 if j - i >= 2 else 1.6)
                    if c < best[j]:
                        best[j] = c
                        back[j] = (i, tid)
        terms: list[str] = []
        unknown = 0
        j = n
        while j > 0:
            i, tid = back[j]
            if tid is None:
                unknown += 1
            else:
                terms.append(tid)
            j = i
        if unknown > max(1, n // 4):
            return []
        return terms[::-1]

    def table(self, table: TableProfile) -> list[FieldView]:
        """Views of every field of a table, with term weights from within-table frequency."""
        conv = detect_conventions(table.names)
        views = [self.field(f, conv) for f in table.fields]
        df: Counter[str] = Counter()
        for v in views:
            df.update(set(v.all_terms))
        n = max(len(views), 1)
        for v in views:
            v.weights = {t: _term_weight(t, df[t], n) for t in set(v.all_terms) | set(v.py_terms)}
        return views

    def field(self, f: FieldProfile, conv: NamingConventions) -> FieldView:
        """The view of one field."""
        g = self.g
        parts = parse_name(f.name, conv, self.splitter)
        per_part: list[list[str]] = []
        zh_texts: list[str] = []
        for words in parts.parts:
            if any(has_cjk(w) for w in words):
                text = "".join(words)
                zh_texts.append(text)
                per_part.append(g.terms_from_chinese(text))
            else:
                per_part.append(g.terms_from_words(words))
        leaf_terms = per_part[-1] if per_part else []
        path_terms = [t for p in per_part[:-1] for t in p]
        label_terms: list[str] = []
        if f.label:
            label_terms = g.terms_from_text(f.label)
            if has_cjk(f.label):
                zh_texts.append(f.label)
        raw = parts.leaf_raw
        pinyin_like = bool(
            raw and not has_cjk(raw) and _PINYIN_LIKE.match(raw) and all(t not in g.terms for t in leaf_terms)
        )
        py_terms = (
            self.parse_initials(re.sub(r"id$", "", raw))
            + (["id"] if raw.endswith("id") and len(raw) > 2 else [])
            if pinyin_like
            else []
        )
        all_terms = leaf_terms + path_terms + label_terms
        # Pinyin renderings: how this field would be named in a pinyin-initial CRM.
        primary: list[str] = []
        for z in zh_texts:
            ini, full = pinyin_forms(re.sub(r"[的之]", "", z))
            for s in (ini, full):
                if s and s not in primary:
                    primary.append(s)
        for terms in (leaf_terms, label_terms):
            if terms:
                for s in sorted(
                    g.render(terms, limit=24), key=lambda r: (len(r), r)
                ):  # stable across hash seeds
                    if s not in primary:
                        primary.append(s)
                fp = g.full_pinyin(terms)
                if fp and fp not in primary:
                    primary.append(fp)
        renderings = set(primary)
        if path_terms and leaf_terms:
            renderings |= g.render((path_terms + leaf_terms)[-3:], limit=12)
        # Renderings of parts of the name: a pinyin CRM often drops qualifiers (采购项目名称 → xmmc).
        sub: set[str] = set()
        for terms in (leaf_terms, label_terms):
            for a in range(len(terms)):
                for b in range(a + 1, len(terms) + 1):
                    if (a, b) != (0, len(terms)) and b - a <= 3:
                        sub |= g.render(terms[a:b], limit=8)
        sub -= renderings
        expected: frozenset[str] = frozenset()
        for terms in (leaf_terms, label_terms, py_terms):
            for t in reversed(terms):  # the head noun comes last
                k = g.kinds(t)
                if k:
                    expected = expected | k
                    break
        known = [t for t in all_terms if t in g.terms]
        opaque = not known and not pinyin_like and not zh_texts
        return FieldView(
            profile=f,
            parts=parts,
            leaf_terms=leaf_terms,
            path_terms=path_terms,
            label_terms=label_terms,
            all_terms=all_terms,
            zh_texts=zh_texts,
            renderings=renderings,
            primary_renderings=primary[:10],
            sub_renderings=sub,
            pinyin_like=pinyin_like,
            py_terms=py_terms,
            opaque=opaque,
            values=profile_values(f.samples),
            expected=expected,
            trigrams=char_ngrams(raw if not has_cjk(raw) else "", 3) if raw else set(),
        )


def _term_weight(term: str, df: int, n: int) -> float:
    idf = math.log((n + 1) / (df + 0.5)) / math.log(n + 1.5)
    base = 0.6 if term in GENERIC_TERMS else 1.0
    if len(term) <= 2 and term.isascii():
        base *= 0.5
    return base * max(0.15, min(1.0, idf + 0.25))


def soft_cover(a: list[str], b: list[str], wa: dict[str, float], g: Glossary) -> float:
    """Weighted share of the terms of ``a`` that have a (related) counterpart in ``b``."""
    if not a or not b:
        return 0.0
    num = den = 0.0
    for t in sorted(set(a)):  # fixed order: sums must not depend on the hash seed
        w = wa.get(t, 0.5)
        den += w
        best = 0.0
        for u in b:
            s = g.sim(t, u)
            if s > best:
                best = s
                if best >= 1.0:
                    break
        num += w * best
    return num / den if den else 0.0


def _pair_overlap(
    a: list[str], b: list[str], va: FieldView, vb: FieldView, g: Glossary
) -> tuple[float, float]:
    ca = soft_cover(a, b, va.weights, g)
    cb = soft_cover(b, a, vb.weights, g)
    return (ca + cb) / 2.0, min(ca, cb)


def _pinyin_score(src: FieldView, tgt: FieldView) -> tuple[float, float]:
    """Best similarity of one side's pinyin renderings to the other side's pinyin-like name."""
    best = exact = 0.0
    for pinyin_side, other in ((tgt, src), (src, tgt)):
        if not pinyin_side.pinyin_like:
            continue
        raw = pinyin_side.parts.leaf_raw
        if raw in other.renderings:
            return 1.0, 1.0
        if raw in other.sub_renderings:
            exact = max(exact, 0.5)
        for r in other.primary_renderings:
            if abs(len(r) - len(raw)) <= 6:
                best = max(best, pinyin_similarity(r, raw))
    return best, exact


def pair_features(src: list[FieldView], tgt: list[FieldView], g: Glossary) -> np.ndarray:
    """Feature tensor of shape (len(src), len(tgt), N_FEATURES)."""
    out = np.zeros((len(src), len(tgt), N_FEATURES), dtype=np.float64)
    for i, s in enumerate(src):
        for j, t in enumerate(tgt):
            out[i, j] = _features(s, t, g)
    return out


def _features(s: FieldView, t: FieldView, g: Glossary) -> list[float]:
    f = [0.0] * N_FEATURES
    sl, tl = s.parts.leaf_raw, t.parts.leaf_raw
    f[FI["exact_leaf"]] = 1.0 if sl and sl == tl else 0.0
    f[FI["leaf_terms"]], f[FI["leaf_terms_min"]] = _pair_overlap(s.leaf_terms, t.leaf_terms, s, t, g)
    s_all = s.all_terms + s.py_terms
    t_all = t.all_terms + t.py_terms
    f[FI["all_terms"]], f[FI["all_terms_min"]] = _pair_overlap(s_all, t_all, s, t, g)
    if s.label_terms and t.label_terms:
        f[FI["label_label"]] = _pair_overlap(s.label_terms, t.label_terms, s, t, g)[0]
        f[FI["both_labels"]] = 1.0
    cross = 0.0
    if t.label_terms:
        cross = max(cross, _pair_overlap(s.leaf_terms, t.label_terms, s, t, g)[0])
    if s.label_terms:
        cross = max(cross, _pair_overlap(s.label_terms, t.leaf_terms + t.py_terms, s, t, g)[0])
    f[FI["cross_name_label"]] = cross
    if s.path_terms or t.path_terms:
        f[FI["path_terms"]] = _pair_overlap(
            s.path_terms + s.leaf_terms, t.path_terms + t.leaf_terms, s, t, g
        )[0]
    else:
        f[FI["path_terms"]] = f[FI["leaf_terms"]]
    if s.zh_texts and t.zh_texts:
        f[FI["zh_dice"]] = max(
            dice(char_ngrams(a, 2), char_ngrams(b, 2)) for a in s.zh_texts for b in t.zh_texts
        )
    f[FI["pinyin"]], f[FI["pinyin_exact"]] = _pinyin_score(s, t)
    if s.py_terms or t.py_terms:
        a = s.py_terms or (s.leaf_terms + s.label_terms)
        b = t.py_terms or (t.leaf_terms + t.label_terms)
        f[FI["py_terms"]] = _pair_overlap(a, b, s, t, g)[0]
    f[FI["char_trigram"]] = dice(s.trigrams, t.trigrams)
    f[FI["type_compat"]] = type_compat(s.profile.type, t.profile.type)
    e1 = expectation_match(s.values, t.expected)
    e2 = expectation_match(t.values, s.expected)
    f[FI["expect_s2t"]] = 0.5 if e1 is None else e1
    f[FI["expect_t2s"]] = 0.5 if e2 is None else e2
    f[FI["expect_missing"]] = float(e1 is None) + float(e2 is None)
    sv, tv = s.values, t.values
    if not sv.empty and not tv.empty:
        f[FI["both_samples"]] = 1.0
        f[FI["kind_sim"]] = compatible_kind_similarity(sv, tv)
        f[FI["overlap_jaccard"]], f[FI["overlap_contain"]] = value_overlap(sv, tv)
        f[FI["bigram_cos"]] = bigram_cosine(sv, tv)
        f[FI["stats_sim"]] = stats_similarity(sv, tv)
    f[FI["src_samples"]] = 0.0 if sv.empty else 1.0
    f[FI["tgt_samples"]] = 0.0 if tv.empty else 1.0
    f[FI["tgt_opaque"]] = 1.0 if t.opaque and not t.label_terms else 0.0
    f[FI["src_opaque"]] = 1.0 if s.opaque and not s.label_terms else 0.0
    sh = (s.leaf_terms or s.label_terms or s.py_terms or [""])[-1]
    th = (t.leaf_terms or t.label_terms or t.py_terms or [""])[-1]
    f[FI["leaf_head"]] = g.sim(sh, th) if sh and th else 0.0
    shared = {a for a in s_all for b in t_all if g.sim(a, b) >= 0.8}
    f[FI["generic_only"]] = 1.0 if shared and shared <= GENERIC_TERMS else 0.0
    return f
