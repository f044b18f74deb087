"""The fault matrix's reporting: one line per cell and a closing tally.

A cell is a test of `test_fault_matrix.py` whose id is ``stage-fault``. The terminal summary gets a
"fault matrix" section with one line per cell in run order, ``cell final/token_expired: passed``
(a skip adds its reason), closed by ``fault matrix: N passed, N failed`` (plus skips, if any).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import LogCapture

_MATRIX_FILE = "test_fault_matrix.py"
_KEY = pytest.StashKey[dict[str, str]]()
_config: pytest.Config | None = None


def _cell_of(nodeid: str) -> str | None:
    """`.../test_fault_matrix.py::test_cell[final-token_expired]` -> `final/token_expired`."""
    if _MATRIX_FILE not in nodeid or "[" not in nodeid:
        return None
    param = nodeid.rsplit("[", 1)[1].rstrip("]")
    stage, _, fault = param.partition("-")
    return f"{stage}/{fault}" if fault else None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    config.stash[_KEY] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each cell's outcome as its phases end (a failing teardown fails the cell)."""
    cell = _cell_of(report.nodeid)
    if cell is None or _config is None:
        return
    outcomes = _config.stash[_KEY]
    if report.failed:
        outcomes[cell] = "failed"
    elif report.skipped and outcomes.get(cell) != "failed":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        outcomes[cell] = f"skipped ({reason.removeprefix('Skipped: ')})"
    elif report.when == "call":
        outcomes[cell] = "passed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    outcomes = terminalreporter.config.stash[_KEY]
    if not outcomes:
        return
    terminalreporter.write_sep("-", "fault matrix")
    for cell, outcome in outcomes.items():
        terminalreporter.write_line(f"cell {cell}: {outcome}")
    values = list(outcomes.values())
    passed = values.count("passed")
    failed = values.count("failed")
    skipped = sum(1 for v in values if v.startswith("skipped"))
    tail = f", {skipped} skipped" if skipped else ""
    terminalreporter.write_line(f"fault matrix: {passed} passed, {failed} failed{tail}")


@pytest.fixture
def cell_logs() -> Iterator[LogCapture]:
    """Every loguru line of the test (stdlib logging routed in), with exceptions rendered."""
    with LogCapture.installed() as capture:
        yield capture
