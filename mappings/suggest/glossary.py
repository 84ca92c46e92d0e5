"""The bilingual CRM / ERP glossary: English words and phrases, Chinese terms, pinyin, ERP codes.

The data lives in ``data/glossary.txt`` (format described at its top).  A :class:`Glossary` turns the
words of a field name or label into a sequence of *terms* — language-neutral units of meaning such as
``customer``, ``name``, ``uscc`` — so that ``customer_name``, ``FCUSTNAME``, ``客户名称`` and ``khmc``
all become ``[customer, name]``.  It also renders a term sequence as pinyin initials / full pinyin,
which is how English or Chinese fields are compared with pinyin-initial field names.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mappings.suggest.text import (
    STOP_WORDS,
    exact_pinyin,
    fold,
    has_cjk,
    inflection_stems,
    pinyin_forms,
    raw_words,
    set_pinyin_phrases,
    split_path,
)

DATA_FILE = Path(__file__).parent / "data" / "glossary.txt"
PINYIN_CACHE = DATA_FILE.with_name("pinyin_cache.json")
_ZH_FUNCTION_CHARS = set("的之及与和或")
_EXTRA_STOP = {"on"}


@dataclass
class Term:
    """One unit of meaning with its English and Chinese surface forms and expected value kinds."""

    id: str
    en: list[str] = field(default_factory=list)
    zh: list[str] = field(default_factory=list)
    kinds: frozenset[str] = frozenset()
    learned: bool = False  # added from accepted review decisions, not shipped


class Glossary:
    """Lookup tables built from ``glossary.txt`` (plus aliases learned from review decisions)."""

    def __init__(
        self, terms: dict[str, Term], related: dict[tuple[str, str], float], erp: dict[str, list[str]]
    ):
        self.terms = terms
        self.related = related
        self.erp = erp
        self.word_term: dict[str, str] = {}
        self.phrase_term: dict[tuple[str, ...], str] = {}
        self.zh_term: dict[str, str] = {}
        self.blocked_ids: frozenset[str] = frozenset()  # term ids that are not surface forms themselves
        self._build()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: Path | None = None) -> Glossary:
        """Parse a glossary file."""
        terms: dict[str, Term] = {}
        related: dict[tuple[str, str], float] = {}
        erp: dict[str, list[str]] = {}
        for lineno, raw in enumerate((path or DATA_FILE).read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("~"):
                parts = line[1:].split()
                if len(parts) != 3:
                    raise ValueError(f"{path or DATA_FILE}:{lineno}: related line needs 'a b sim'")
                a, b, sim = parts[0], parts[1], float(parts[2])
                related[(a, b)] = related[(b, a)] = sim
                continue
            if line.startswith("@"):
                code, _, expansion = line[1:].partition("|")
                erp[code.strip().lower()] = expansion.strip().lower().split()
                continue
            cols = [c.strip() for c in line.split("|")]
            if len(cols) < 3:
                raise ValueError(f"{path or DATA_FILE}:{lineno}: term line needs 'id | en | zh | kinds'")
            tid = cols[0]
            en = [w.strip().lower() for w in cols[1].split(",") if w.strip()]
            zh = [w.strip() for w in cols[2].split(",") if w.strip()]
            kinds = frozenset(k.strip() for k in (cols[3] if len(cols) > 3 else "").split(",") if k.strip())
            if tid in terms:
                t = terms[tid]
                t.en.extend(en)
                t.zh.extend(zh)
                t.kinds = t.kinds | kinds
            else:
                terms[tid] = Term(tid, en, zh, kinds)
        return cls(terms, related, erp)

    def _build(self) -> None:
        Glossary.canon_word.cache_clear()
        self.word_term.clear()
        self.phrase_term.clear()
        self.zh_term.clear()
        for t in self.terms.values():  # pass 1: single words (first definition wins)
            own = t.id if " " not in t.id and "_" not in t.id and t.id not in self.blocked_ids else None
            for surface in [own, *t.en]:
                if surface and " " not in surface and "-" not in surface:
                    self.word_term.setdefault(surface, t.id)
        for t in self.terms.values():  # pass 2: phrases, keyed by canonical words
            for surface in t.en:
                words = [w for w in re.split(r"[\s\-]+", surface) if w and w not in STOP_WORDS]
                if len(words) >= 2:
                    self.phrase_term.setdefault(tuple(self.canon_word(w) for w in words), t.id)
                    self.phrase_term.setdefault(tuple(words), t.id)
            for z in t.zh:
                self.zh_term.setdefault(z, t.id)
        self.zh_max = max((len(z) for z in self.zh_term), default=1)
        set_pinyin_phrases(_pinyin_cache(tuple(sorted(self.zh_term))))
        self.phrase_max = max((len(k) for k in self.phrase_term), default=1)
        self.vocab = (
            set(self.word_term) | {w for k in self.phrase_term for w in k if w.isalpha()} | set(self.erp)
        )
        self.vocab |= {w for words in self.erp.values() for w in words}
        self.vocab |= {
            "of",
            "for",
            "by",
            "to",
            "in",
            "and",
            "or",
            "is",
            "has",
            "all",
            "not",
            "off",
            "at",
            "on",
        }
        self.vocab |= set(STOP_WORDS) | _common_words()
        self._render_cache: dict[str, tuple[str, ...]] = {}

    def add_alias(self, term_id: str, english: Iterable[str] = (), chinese: Iterable[str] = ()) -> None:
        """Register extra surface forms for a term (used for aliases learned from review decisions)."""
        t = self.terms.setdefault(term_id, Term(term_id, learned=True))
        t.en.extend(e.lower() for e in english)
        t.zh.extend(chinese)
        self._build()

    def without(self, forms: Iterable[str]) -> Glossary:
        """A copy without the surface forms whose normalised form is in ``forms``.

        ``forms`` are lower-case strings as :func:`surface_forms` gives them (words joined with a
        space and with nothing).  English and Chinese forms, single-word term ids and ERP codes
        that match are dropped; the terms themselves (their relations and value kinds) stay, so
        the rest of the glossary reads exactly as before.  Used to measure the suggester on a
        system whose vocabulary the glossary does not know (leave-one-system-out without its
        entries).
        """
        banned = set(forms)
        # Forms that read the same once inflections and synonyms are folded ("uniform social credit
        # code" for a removed "unified social credit code") go too: they would give the name away.
        canon = {self._canon_key(f) for f in banned if f.isascii()}

        def keep(surface: str) -> bool:
            if surface_forms(surface) & banned:
                return False
            return not (surface.isascii() and self._canon_key(surface) in canon)

        terms = {
            tid: Term(t.id, [e for e in t.en if keep(e)], [z for z in t.zh if keep(z)], t.kinds, t.learned)
            for tid, t in self.terms.items()
        }
        erp = {code: exp for code, exp in self.erp.items() if keep(code) and keep(" ".join(exp))}
        g = Glossary.__new__(Glossary)
        g.terms, g.related, g.erp = terms, dict(self.related), erp
        g.word_term, g.phrase_term, g.zh_term = {}, {}, {}
        g.blocked_ids = frozenset(
            self.blocked_ids | {tid for tid in terms if not keep(tid.replace("_", " "))}
        )
        g._build()
        return g

    def _canon_key(self, text: str) -> tuple[str, ...]:
        words = [w for w in re.split(r"[\s_\-.]+", text.lower()) if w and w not in STOP_WORDS]
        return tuple(self.canon_word(w) for w in words)

    # ------------------------------------------------------------------ lookup
    @lru_cache(maxsize=50000)  # noqa: B019 - glossaries are long-lived singletons
    def canon_word(self, word: str) -> str:
        """Map one English word to its term id, or to a crude singular when unknown."""
        w = word.lower()
        if w in self.word_term:
            return self.word_term[w]
        for suffix, stem in inflection_stems(w):
            if len(w) - len(suffix) >= 3 and stem in self.word_term:
                return self.word_term[stem]
        if w.endswith("s") and len(w) > 3 and not w.endswith("ss"):
            w = w[:-1]
        if w in self.blocked_ids:
            # A word that is the id of a term whose surface forms were removed must not read as that
            # term (its value kinds, relations): it is just an unknown word.
            return "~" + w
        return w

    def expand_codes(self, words: Sequence[str]) -> list[str]:
        """Replace known ERP field codes (``kunnr``, ``cusabbname``) with their English expansion."""
        joined = "".join(words)
        if len(words) > 1 and joined in self.erp:
            return list(self.erp[joined])
        out: list[str] = []
        for w in words:
            out.extend(self.erp.get(w, [w]))
        return out

    def terms_from_words(self, words: Sequence[str]) -> list[str]:
        """English words → term ids, longest phrase first; unknown words stay as themselves."""
        words = [
            w
            for w in self.expand_codes([w.lower() for w in words])
            if w and w not in STOP_WORDS and w not in _EXTRA_STOP
        ]
        if len(words) > 1 and words[-1] == "add":
            # "add" leads verb phrases (add_time, add_way) but closes noun phrases as the usual
            # abbreviation of address (ship_to_add, email_add).
            words[-1] = "address"
        canon = [self.canon_word(w) for w in words]
        out: list[str] = []
        i = 0
        n = len(words)
        while i < n:
            matched = False
            for j in range(min(n, i + self.phrase_max), i + 1, -1):
                key = tuple(canon[i:j])
                tid = self.phrase_term.get(key) or self.phrase_term.get(tuple(words[i:j]))
                if tid:
                    out.append(tid)
                    i = j
                    matched = True
                    break
            if not matched:
                if not words[i].isdigit():
                    out.append(canon[i])
                i += 1
        return out

    def terms_from_chinese(self, text: str) -> list[str]:
        """Chinese text → term ids by forward maximum matching; unknown runs stay as raw text."""
        out: list[str] = []
        s = "".join(ch for ch in text if ch.isalnum())
        i = 0
        unknown = ""
        while i < len(s):
            if s[i].isascii():
                j = i
                while j < len(s) and s[j].isascii():
                    j += 1
                if unknown:
                    out.append(unknown)
                    unknown = ""
                out.extend(self.terms_from_words(re.findall(r"[A-Za-z]+", s[i:j])))
                i = j
                continue
            for j in range(min(len(s), i + self.zh_max), i, -1):
                tid = self.zh_term.get(s[i:j])
                if tid:
                    if unknown:
                        out.append(unknown)
                        unknown = ""
                    out.append(tid)
                    i = j
                    break
            else:
                if s[i] not in _ZH_FUNCTION_CHARS:
                    unknown += s[i]
                elif unknown:
                    out.append(unknown)
                    unknown = ""
                i += 1
        if unknown:
            out.append(unknown)
        return out

    def terms_from_text(self, text: str) -> list[str]:
        """Terms of a free label: Chinese or English."""
        if has_cjk(text):
            return self.terms_from_chinese(text)
        return self.terms_from_words(re.findall(r"[A-Za-z]+|\d+", text))

    def sim(self, a: str, b: str) -> float:
        """Similarity of two terms (1 for equal, glossary relation, abbreviation prefix for raw words)."""
        if a == b:
            return 1.0
        r = self.related.get((a, b))
        if r is not None:
            return r
        if a in self.terms or b in self.terms or has_cjk(a) or has_cjk(b):
            return 0.0
        short, long_ = (a, b) if len(a) <= len(b) else (b, a)
        if len(short) >= 3 and long_.startswith(short):
            return 0.7
        return 0.0

    def kinds(self, term: str) -> frozenset[str]:
        """Value kinds a term expects (empty when it has no expectation)."""
        t = self.terms.get(term)
        return t.kinds if t else frozenset()

    # ------------------------------------------------------------------ pinyin renderings
    def term_renderings(self, term: str) -> tuple[str, ...]:
        """Pinyin initials (and short English) a term can appear as inside a pinyin-style name."""
        got = self._render_cache.get(term)
        if got is not None:
            return got
        opts: list[str] = []
        t = self.terms.get(term)
        if t is None:
            if has_cjk(term):
                opts.append(pinyin_forms(term)[0])
            else:
                opts.append(term)
        else:
            for z in t.zh[:4]:
                ini = pinyin_forms(z)[0]
                if ini and ini not in opts:
                    opts.append(ini)
            if len(term) <= 3 and term.isalpha() and term not in opts:
                opts.append(term)
        got = tuple(opts[:4])
        self._render_cache[term] = got
        return got

    def render(self, terms: Sequence[str], limit: int = 48) -> set[str]:
        """Pinyin-initial strings a field with these terms could be named (``[customer, name]`` → khmc …)."""
        terms = [t for t in terms if t][-5:]
        if not terms:
            return set()
        options = [self.term_renderings(t) or ("",) for t in terms]
        out: set[str] = set()
        for combo in itertools.islice(itertools.product(*options), limit):
            s = "".join(combo)
            if s:
                out.add(s)
        return out

    def full_pinyin(self, terms: Sequence[str]) -> str:
        """Full pinyin of the first Chinese form of each term (``[temperature]`` → wendu)."""
        out = []
        for term in terms:
            t = self.terms.get(term)
            if t and t.zh:
                out.append(pinyin_forms(t.zh[0])[1])
            elif has_cjk(term):
                out.append(pinyin_forms(term)[1])
            else:
                out.append(term)
        return "".join(out)


def surface_forms(text: str) -> set[str]:
    """Normalised forms of a name or surface form: lower-case, and its words joined by a space and by nothing.

    ``BillingCity``, ``billing_city``, ``billing.city`` and ``billing city`` all give
    ``{"billing city", "billingcity", …}``; Chinese runs stay whole.
    """
    text = fold(text)
    words: list[str] = []
    for part in split_path(text):
        words.extend(raw_words(part))
    out = {text.lower(), " ".join(words), "".join(words)}
    out.discard("")
    return out


def _pinyin_cache(words: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Pinyin of the glossary's Chinese words: from the shipped cache, computed with pypinyin when missing."""
    cached: dict[str, list[str]] = {}
    if PINYIN_CACHE.exists():
        cached = json.loads(PINYIN_CACHE.read_text(encoding="utf-8"))
    out = {w: (v[0], v[1]) for w, v in cached.items()}
    missing = [w for w in words if w not in out]
    if missing:
        for w in missing:
            out[w] = exact_pinyin(w)
    return out


def write_pinyin_cache(path: Path | None = None) -> Path:
    """Regenerate ``data/pinyin_cache.json`` from the glossary with full pypinyin (run after editing it)."""
    g = Glossary.load()
    data = {w: list(exact_pinyin(w)) for w in sorted(g.zh_term)}
    target = path or PINYIN_CACHE
    target.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return target


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    path = DATA_FILE.with_name("words.txt")
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            words.update(w for w in line.split() if len(w) > 2)
    return frozenset(words)


_DEFAULT: Glossary | None = None


def default_glossary() -> Glossary:
    """The shipped glossary (loaded once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Glossary.load()
    return _DEFAULT


if __name__ == "__main__":  # pragma: no cover - maintenance: python -m mappings.suggest.glossary
    print(write_pinyin_cache())
