"""How long the fuzz tests run: Hypothesis settings profiles.

* ``fuzz`` (default): ``FUZZ_DEFAULT_EXAMPLES`` examples per test, derandomized (the same
  inputs on every run), so it belongs in the normal suite and CI is deterministic.
* ``fuzz-long``: chosen by ``FUZZ_EXAMPLES=<n>`` (e.g. 10000): ``n`` examples per test from
  a random seed (printed with any failure), with a per-test timeout to match::

      FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/fuzz -q
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_DEFAULT_EXAMPLES = 150
_SLOW_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "fuzz",
    max_examples=FUZZ_DEFAULT_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW_CHECKS,
    print_blob=False,
)
settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES") or FUZZ_DEFAULT_EXAMPLES),
    derandomize=False,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW_CHECKS,
    print_blob=True,
)

PROFILE = "fuzz-long" if os.environ.get("FUZZ_EXAMPLES") else "fuzz"
FUZZ = settings(settings.get_profile(PROFILE))
EXAMPLES = FUZZ.max_examples
#: pytest-timeout per test: room for ~50 ms an example plus shrinking.
TIMEOUT_S = max(300, EXAMPLES // 20 + 300)
