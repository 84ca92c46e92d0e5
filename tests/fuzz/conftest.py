"""Hypothesis profiles for the fuzzing and abuse suite (``tests/fuzz``).

``TONGBU_FUZZ_PROFILE`` (or ``HYPOTHESIS_PROFILE``) selects one:

* ``dev`` (default on a developer's machine): a few hundred examples per property, so the test command
  stays quick;
* ``ci`` (default when ``CI`` or ``TONGBU_REQUIRE_SERVICES`` is set, as ``.ci/run`` does): 10,000 examples for every parser's main property, no example database, 1 s per example;
* ``soak``: 100,000 examples, for a nightly or a run by hand.

Every example has a deadline (``bounded time per input``): a parser that goes super-linear on some
input fails the property instead of slowing the suite.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

_COMMON = {
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "deadline": timedelta(milliseconds=1000),  # generous: the machine is shared; super-linear is far slower
    "print_blob": True,
}
settings.register_profile("dev", max_examples=300, **_COMMON)
settings.register_profile("ci", max_examples=10_000, database=None, **_COMMON)
settings.register_profile("soak", max_examples=100_000, database=None, **_COMMON)
_IN_CI = os.environ.get("CI") or os.environ.get("TONGBU_REQUIRE_SERVICES")
settings.load_profile(
    os.environ.get("TONGBU_FUZZ_PROFILE")
    or os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if _IN_CI else "dev")
)


def examples(share: float) -> int:
    """A share of the profile's examples, for secondary properties of a parser (at least 50)."""
    return max(50, int(settings.default.max_examples * share))
