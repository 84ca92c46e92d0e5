"""Identity keys compared by a normalised form instead of exact equality (a company's name).

``match_on: [credit_code, number, name]``: the credit code and the number are exact; a name matches
when its normalised form does (:func:`normalise_name`), and only a hub record whose stronger keys do
not contradict the record's (a different credit code is a different company, whatever its name).
Two or more candidates still go to review, never guessed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

#: hub field -> its normal form for identity matching
NORMALISED_KEYS: dict[str, Callable[[str], str]] = {}


def normalise_name(value: str) -> str:
    """``"上海 同步（科技）有限公司"`` and ``"上海同步(科技)有限公司"`` are the same name.

    Full-width forms become half-width (NFKC), case is folded, and spaces, punctuation and symbols
    are dropped. Legal forms are kept: 股份有限公司 and 有限公司 are different companies.
    """
    text = unicodedata.normalize("NFKC", value).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("Z", "P", "S", "C"))


NORMALISED_KEYS["name"] = normalise_name
