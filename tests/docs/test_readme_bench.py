"""The README's benchmark commands run (in their --quick smoke form; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "name", ["fanout", "loop_lag", "persistence", "index", "scale", "progress", "steps"]
)
def test_each_benchmark_named_in_the_readme_measures(name: str, tmp_path: Path) -> None:
    assert f"bench.{name}" in README
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio:"), last
    assert "Traceback" not in proc.stderr
