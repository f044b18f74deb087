"""Issue #6, the fault matrix: every stage of a workflow's life against every fault, on the real bot
and the loopback Discord emulator.

One row per (stage, fault); the cell's id is ``stage-fault``. `faults.py` says how each fault is
injected at each stage, `cell.py` drives the workflow and gives the common verdict
(`assert_cell_outcome`), `crash.py` runs the `kill -9` column with a real bot process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.testing import DiscordEmulator

from .cell import STAGES, assert_cell_outcome, drive, open_cell
from .crash import run_kill9_cell
from .faults import FAULTS
from .harness import LogCapture

FAULT_NAMES = [*FAULTS, "kill9"]
CELLS = [(stage, fault) for fault in FAULT_NAMES for stage in STAGES]


@pytest.mark.parametrize(("stage", "fault_name"), CELLS, ids=[f"{s}-{f}" for s, f in CELLS])
async def test_cell(
    stage: str,
    fault_name: str,
    emulator: DiscordEmulator,
    tmp_path: Path,
    cell_logs: LogCapture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if fault_name == "kill9":
        await run_kill9_cell(stage, emulator, tmp_path, cell_logs, capfd)
        return
    fault = FAULTS[fault_name]()
    async with open_cell(stage, fault_name, emulator, tmp_path, cell_logs) as run:
        try:
            await fault.configure(run)
            run.expect_persisted()
            async with run.running():
                await drive(run, fault)
                await assert_cell_outcome(run, fault, capfd)
        finally:
            await fault.cleanup(run)
