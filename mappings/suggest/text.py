"""Field-name normalisation: identifier styles, ERP prefixes, concatenated words, Chinese and pinyin.

Field names in this market come as ``customer_name``, ``customerName``, ``CustomerName``, ``customername``,
Kingdee ``FCUSTNAME`` / ``F_PAEZ_Email`` / ``FSaleOrderEntry_FAmount``, Yonyou U8 Hungarian ``cCusName``,
SAP codes ``KUNNR``, Chinese ``客户名称`` and pinyin initials ``khmc``.  This module turns a name into
lower-case English words (or Chinese text) that the glossary can read; it knows no business vocabulary
itself except through the word list it is given for splitting run-together words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_KINGDEE_CUSTOM_RE = re.compile(r"^F_[A-Z][A-Z0-9]{1,7}_(?=.)")
_KINGDEE_F_RE = re.compile(r"^F(?=[A-Z])")
_HUNGARIAN_RE = re.compile(r"^[cidbnfmvl](?=[A-Z][a-z])")
# Once a table is known to be Hungarian, the prefix also comes off before an all-caps code
# (U8 ``cCCCode`` customer class code, ``cDCCode`` region code), which detection alone would not trust.
_HUNGARIAN_STRIP_RE = re.compile(r"^[cidbnfmvl](?=[A-Z][A-Za-z])")
# English inflections and the stem each leaves (``entries`` → entry, ``addresses`` → address).
INFLECTIONS = (
    ("ies", "y"),
    ("ses", "s"),
    ("es", ""),
    ("s", ""),
    ("ed", ""),
    ("ed", "e"),
    ("ing", ""),
    ("ing", "e"),
)


def inflection_stems(word: str) -> Iterator[tuple[str, str]]:
    """``(suffix, stem)`` for every inflection ``word`` ends with, in the order of ``INFLECTIONS``."""
    for suffix, repl in INFLECTIONS:
        if word.endswith(suffix):
            yield suffix, word[: len(word) - len(suffix)] + repl


_SF_SUFFIX_RE = re.compile(r"__(c|s|r|pc|x|mdt|e)$", re.IGNORECASE)
_PATH_SPLIT_RE = re.compile(r"[./\\\[\]]+")
_SEP_RE = re.compile(r"[\s_\-:#@$%&*+=|,;()\[\]{}<>'\"?!~`^]+")

# Words that carry no meaning for matching (they are kept out of term bags).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "to",
        "in",
        "and",
        "or",
        "via",
        "per",
        "with",
        "from",
        "as",
        "c",
        "s",
        "r",
        "x",
        "pc",
        "field",
        "fields",
        "value",
        "values",
        "info",
        "data",
        "obj",
        "object",
        "set",
        "shop",
        "money",
    ]
)


def has_cjk(text: str) -> bool:
    """True when ``text`` contains a CJK ideograph."""
    return bool(_CJK_RE.search(text or ""))


def cjk_ratio(text: str) -> float:
    """Share of characters of ``text`` that are CJK ideographs."""
    if not text:
        return 0.0
    return sum(1 for ch in text if _CJK_RE.match(ch)) / len(text)


def fold(text: str) -> str:
    """NFKC-normalise (full-width letters and brackets become ASCII) and strip."""
    return unicodedata.normalize("NFKC", text or "").strip()


@dataclass(frozen=True)
class NamingConventions:
    """Table-level naming conventions detected from all field names of one profile."""

    kingdee: bool = False  # F-prefixed names: FNumber, FCUSTID, F_PAEZ_Email
    hungarian: bool = False  # type-prefixed names: cCusName, iCusCreLine, dCusDevDate


def detect_conventions(names: Iterable[str]) -> NamingConventions:
    """Guess whether a table uses Kingdee ``F`` prefixes or Hungarian type prefixes."""
    leaves = [_PATH_SPLIT_RE.split(n)[-1] for n in names if n]
    firsts = [_PATH_SPLIT_RE.split(n)[0] for n in names if n]
    if not leaves:
        return NamingConventions()
    kingdee = sum(1 for n in firsts if _KINGDEE_F_RE.match(n) or n.startswith("F_")) / len(firsts) >= 0.5
    hungarian = sum(1 for n in leaves if _HUNGARIAN_RE.match(n)) / len(leaves) >= 0.4
    return NamingConventions(kingdee=kingdee, hungarian=hungarian)


def split_path(name: str) -> list[str]:
    """Split a flattened field path (``a.b``, ``a/b``) into its parts, outermost first."""
    parts = [p for p in _PATH_SPLIT_RE.split(fold(name)) if p]
    return parts or [fold(name)]


def _strip_part(part: str, conv: NamingConventions) -> tuple[str, str | None]:
    """Remove vendor prefixes/suffixes from one path part; return (rest, hungarian type letter)."""
    part = _SF_SUFFIX_RE.sub("", part)
    hint = None
    if conv.kingdee:
        part = _KINGDEE_CUSTOM_RE.sub("", part)
        pieces = []
        for piece in part.split("_"):
            pieces.append(_KINGDEE_F_RE.sub("", piece) if len(piece) > 2 else piece)
        part = "_".join(pieces)
    if conv.hungarian:
        m = _HUNGARIAN_STRIP_RE.match(part)
        if m:
            hint = m.group(0)
            part = part[1:]
    return part, hint


def raw_words(part: str) -> list[str]:
    """Split one identifier part on separators, camelCase and digit boundaries; lower-case."""
    out: list[str] = []
    for chunk in _SEP_RE.split(part):
        if not chunk:
            continue
        if has_cjk(chunk):
            out.append(chunk)
            continue
        pieces = _CAMEL_RE.findall(chunk)
        merged: list[str] = []
        for w in pieces:
            # "IoT", "AccountID" style: a lone capital after a short word belongs to it.
            if len(w) == 1 and w.isupper() and merged and len(merged[-1]) <= 2 and merged[-1][:1].isupper():
                merged[-1] += w
            else:
                merged.append(w)
        out.extend(w.lower() for w in merged)
    return out


class WordSplitter:
    """Splits run-together words (``socialcrecode``, ``numberofemployees``) with a vocabulary.

    Dynamic programming over the string: known words cost 1 each, characters that belong to no
    known word cost 2.5 each, so the split with the fewest, longest dictionary words wins and
    a string with no good split (pinyin initials such as ``khmc``) is left whole.
    """

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self.vocab = {w for w in vocabulary if w and w.isascii() and w.isalpha() and len(w) > 1}
        self.max_len = max((len(w) for w in self.vocab), default=1)

    def _inflected(self, word: str) -> bool:
        """An inflected known word (``reports``, ``orders``, ``shipped``) stays whole: left to the DP it
        would shatter into short vocabulary fragments (``rep`` + ``or`` + ``ts``)."""
        return any(len(stem) >= 4 and stem in self.vocab for _, stem in inflection_stems(word))

    @lru_cache(maxsize=20000)  # noqa: B019 - one splitter per process, cache is the point
    def split(self, word: str) -> tuple[str, ...]:
        """Return the best split of ``word`` (lower-case ASCII) into vocabulary words."""
        n = len(word)
        if n < 4 or word in self.vocab or not word.isalpha() or self._inflected(word):
            return (word,)
        inf = float("inf")
        best = [inf] * (n + 1)
        back: list[tuple[int, bool]] = [(0, False)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] == inf:
                continue
            # an unknown character
            c = best[i] + 2.5
            if c < best[i + 1]:
                best[i + 1] = c
                back[i + 1] = (i, False)
            for j in range(i + 2, min(n, i + self.max_len) + 1):
                if word[i:j] in self.vocab:
                    c = best[i] + 1.0
                    if c < best[j]:
                        best[j] = c
                        back[j] = (i, True)
        pieces: list[str] = []
        j = n
        unknown = ""
        while j > 0:
            i, known = back[j]
            if known:
                if unknown:
                    pieces.append(unknown[::-1])
                    unknown = ""
                pieces.append(word[i:j])
            else:
                unknown += word[i]
            j = i
        if unknown:
            pieces.append(unknown[::-1])
        pieces.reverse()
        # Accept the split only when most of the word is covered by known words.
        known_chars = sum(len(p) for p in pieces if p in self.vocab)
        if known_chars < 0.75 * n:
            return (word,)
        return tuple(pieces)


@dataclass
class NameParts:
    """Normalised words of one field name: per path part, plus type hint and raw leaf."""

    parts: list[list[str]]  # English words (lower-case) or Chinese chunks, per path part
    leaf_raw: str  # the last path part, prefixes removed, lower-case alnum (``khmc``, ``createdate``)
    type_hint: str | None  # Hungarian type letter (c, i, d, b, n, ...)

    @property
    def leaf(self) -> list[str]:
        """Words of the last path part."""
        return self.parts[-1] if self.parts else []

    @property
    def words(self) -> list[str]:
        """All words, outermost path part first."""
        return [w for p in self.parts for w in p]


def parse_name(name: str, conv: NamingConventions, splitter: WordSplitter) -> NameParts:
    """Normalise a field name into words per path part."""
    parts_out: list[list[str]] = []
    hint = None
    leaf_raw = ""
    path = split_path(name)
    for idx, part in enumerate(path):
        stripped, h = _strip_part(part, conv)
        if idx == len(path) - 1:
            hint = h
            leaf_raw = re.sub(r"[^0-9a-z]", "", stripped.lower()) if not has_cjk(stripped) else stripped
        words: list[str] = []
        for w in raw_words(stripped):
            if has_cjk(w):
                words.append(w)
            elif w.isalpha() and len(w) >= 4:
                words.extend(splitter.split(w))
            else:
                words.append(w)
        parts_out.append(words)
    return NameParts(parts=parts_out, leaf_raw=leaf_raw, type_hint=hint)


# ----------------------------------------------------------------------------- pinyin
#
# Start-up matters (the CLI runs once per table pair), so pypinyin's 0.2 s phrase dictionary is not
# loaded at run time.  Words of the glossary carry pinyin computed with full pypinyin (polyphones
# resolved in context: 行业 hangye, 银行 yinhang) in data/pinyin_cache.json; other characters are read
# from pypinyin's character table alone, loaded without importing the package.

_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")
_PHRASES: dict[str, tuple[str, str]] = {}
_PHRASE_MAX = 1
_CHARS: dict[int, str] | None = None


def set_pinyin_phrases(phrases: dict[str, tuple[str, str]]) -> None:
    """Register words whose (initials, full pinyin) are known (the glossary's Chinese forms)."""
    global _PHRASE_MAX
    _PHRASES.update(phrases)
    _PHRASE_MAX = max((len(k) for k in _PHRASES), default=1)
    pinyin_forms.cache_clear()


def _char_table() -> dict[int, str]:
    global _CHARS
    if _CHARS is None:
        import importlib.util
        import os

        spec = importlib.util.find_spec("pypinyin")
        if spec is None or not spec.submodule_search_locations:  # pragma: no cover - pypinyin is a dependency
            _CHARS = {}
        else:
            path = os.path.join(list(spec.submodule_search_locations)[0], "pinyin_dict.py")
            mspec = importlib.util.spec_from_file_location("_tongbu_pinyin_chars", path)
            module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
            _CHARS = module.pinyin_dict
    return _CHARS


def _char_pinyin(ch: str) -> str:
    reading = _char_table().get(ord(ch))
    if not reading:
        return ch.lower() if ch.isascii() and ch.isalnum() else ""
    return reading.split(",")[0].translate(_TONES)


def exact_pinyin(text: str) -> tuple[str, str]:
    """(initials, full) with the full pypinyin phrase dictionary (slow to import; used to build the cache)."""
    from pypinyin import Style, lazy_pinyin

    cleaned = "".join(ch for ch in fold(text) if ch.isalnum())
    full = "".join(lazy_pinyin(cleaned, errors="default")).lower()
    initials = "".join(lazy_pinyin(cleaned, style=Style.FIRST_LETTER, errors="default")).lower()
    return re.sub(r"[^0-9a-z]", "", initials), re.sub(r"[^0-9a-z]", "", full)


@lru_cache(maxsize=50000)
def pinyin_forms(text: str) -> tuple[str, str]:
    """(initials, full pinyin) of a Chinese string; ASCII runs are kept lower-cased (``ID`` → ``id``)."""
    s = "".join(ch for ch in fold(text) if ch.isalnum())
    ini: list[str] = []
    full: list[str] = []
    i = 0
    while i < len(s):
        if s[i].isascii():
            j = i
            while j < len(s) and s[i : j + 1].isascii():
                j += 1
            ini.append(s[i:j].lower())
            full.append(s[i:j].lower())
            i = j
            continue
        for j in range(min(len(s), i + _PHRASE_MAX), i + 1, -1):
            known = _PHRASES.get(s[i:j])
            if known:
                ini.append(known[0])
                full.append(known[1])
                i = j
                break
        else:
            py = _char_pinyin(s[i])
            ini.append(py[:1])
            full.append(py)
            i += 1
    return re.sub(r"[^0-9a-z]", "", "".join(ini)), re.sub(r"[^0-9a-z]", "", "".join(full))


def pinyin_similarity(a: str, b: str) -> float:
    """Similarity of two pinyin-style names: subsequence overlap, with credit for a shared suffix/prefix.

    ``cgxmmc`` (采购项目名称) vs ``xmmc`` (项目名称): the shorter is the tail of the longer.
    """
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    score = lcs_ratio(a, b)
    if len(short) >= 2 and (long_.endswith(short) or long_.startswith(short)):
        score = max(score, 0.6 + 0.35 * len(short) / len(long_))
    return score


def lcs_ratio(a: str, b: str) -> float:
    """2·LCS(a, b) / (|a| + |b|): similarity of two short strings (subsequence based)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return _lcs_ratio(a, b) if len(a) <= len(b) else _lcs_ratio(b, a)


@lru_cache(maxsize=200000)
def _lcs_ratio(a: str, b: str) -> float:
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return 2.0 * prev[-1] / (len(a) + len(b))


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of ``text`` padded with spaces (n-grams of a 1-2 character string: itself)."""
    t = f" {text} "
    if len(t) <= n:
        return {t}
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def dice(a: set[str], b: set[str]) -> float:
    """Dice coefficient of two sets."""
    if not a or not b:
        return 0.0
    return 2.0 * len(a & b) / (len(a) + len(b))
