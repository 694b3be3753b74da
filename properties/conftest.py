from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
# CI's second pass: fresh random examples every run, a bounded budget, and no example database,
# so that a failure is not replayed from .hypothesis/ by later runs; .ci/run passes and prints
# --hypothesis-seed, the way to run the same examples again.
settings.register_profile(
    "random",
    max_examples=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
