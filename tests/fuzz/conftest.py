"""Shared settings for the fuzz suite.

Every property runs at least `EXAMPLES` examples (issue #6: "at least 500 examples each in CI").
`deadline=None`: some examples (a 5000-digit integer, a 2 MB result) are slow by nature, and a
timing assertion is not what these tests are about.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

EXAMPLES = 500

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
