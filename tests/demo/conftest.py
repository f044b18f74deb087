"""The demo's tests. Those marked `demo_story` run `scripts/run-bot` as a person would, and take
as long as the story does (about 40 s with the default 20 s token; deselect with
`-m "not demo_story"`)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "demo_story: runs the demo end to end as a subprocess; slow by design, because its "
        "workflow must outlive an interaction token (20 s by default)",
    )
