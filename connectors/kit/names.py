"""Matching Chinese organisation names: one normal form, so that spellings of one name compare equal.

``company_key("  上海（浦东）同步软件 有限公司 ")`` and ``company_key("上海(浦东)同步软件有限公司")``
are the same key: NFKC (full-width letters, digits and brackets to half-width), whitespace and
separator dots removed, brackets unified, Latin letters lower-cased. The key is for matching only;
the name shown stays as written.
"""

from __future__ import annotations

import re
import unicodedata

_DROP = re.compile(r"[\s·•．\.\-_—,，、\"'“”‘’]+")
_BRACKETS = str.maketrans(
    {"（": "(", "）": ")", "【": "(", "】": ")", "[": "(", "]": ")", "〔": "(", "〕": ")"}
)


def company_key(name: str | None) -> str:
    """The normal form of an organisation name ('' for none)."""
    if not name:
        return ""
    text = unicodedata.normalize("NFKC", name).translate(_BRACKETS)
    return _DROP.sub("", text).lower()
