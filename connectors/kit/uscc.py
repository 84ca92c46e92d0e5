"""Unified social credit code (统一社会信用代码, GB 32100-2015): validation and generation.

An 18-character code: registration authority, entity type, 6-digit administrative division,
9-character organisation code and a check character computed modulo 31 over a 31-symbol alphabet
that omits I, O, S, V and Z.
"""

from __future__ import annotations

import random

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Common (authority, type) prefixes: 91 = enterprise registered with market regulation, 92 = individual
# business, 12 = public institution, 52 = social organisation.
_PREFIXES = ("91", "91", "91", "91", "92", "12", "52")
_DIVISIONS = (
    "110105",
    "310115",
    "440300",
    "440106",
    "330106",
    "320506",
    "510107",
    "420106",
    "370202",
    "610113",
)


def check_char(first17: str) -> str:
    """The 18th (check) character for the first 17 characters of a code."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def is_valid(code: object) -> bool:
    """True when ``code`` is an 18-character USCC with a correct check character."""
    if not isinstance(code, str) or len(code) != 18:
        return False
    code = code.upper()
    if any(c not in _VALUE for c in code):
        return False
    return check_char(code[:17]) == code[17]


def generate(rng: random.Random) -> str:
    """A random but valid USCC (for simulators and tests)."""
    body = rng.choice(_PREFIXES) + rng.choice(_DIVISIONS)
    body += "".join(rng.choice(ALPHABET) for _ in range(9))
    return body + check_char(body)
