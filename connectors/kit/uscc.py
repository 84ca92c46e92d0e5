"""Unified social credit code (统一社会信用代码, GB 32100-2015) for connectors: validation and generation.

Validation and the check character are python-stdnum's (``stdnum.cn.uscc``); this module only adds
what stdnum does not have: generating valid codes for simulators and tests.
"""

from __future__ import annotations

import random

from stdnum.cn import uscc as _stdnum_uscc

__all__ = ["ALPHABET", "check_char", "generate", "is_valid"]

#: the 31 symbols of the code (GB 32100 omits I, O, S, V and Z)
ALPHABET = "".join(c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "IOSVZ")
# Common (authority, type) prefixes: 91 = enterprise registered with market regulation, 92 = individual
# business, 12 = public institution, 52 = social organisation.
_PREFIXES = ("91", "91", "91", "91", "92", "12", "52")
_DIVISIONS = ("110105", "310115", "440300", "440106", "330106", "320506", "510107", "420106", "370202")


def check_char(first17: str) -> str:
    """The 18th (check) character for the first 17 characters of a code."""
    return _stdnum_uscc.calc_check_digit(first17)


def is_valid(code: object) -> bool:
    """True when ``code`` is an 18-character USCC with a correct check character."""
    return isinstance(code, str) and _stdnum_uscc.is_valid(code)


def generate(rng: random.Random) -> str:
    """A random but valid USCC (for simulators and tests)."""
    body = rng.choice(_PREFIXES) + rng.choice(_DIVISIONS)
    body += "".join(rng.choice(ALPHABET) for _ in range(9))
    return body + check_char(body)
