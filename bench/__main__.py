"""Run every benchmark, one after the other, each in its own process.

    .venv/bin/python -m bench                      # all ten, the documented sizes
    .venv/bin/python -m bench --quick              # all ten, small sizes (a smoke run)

`distributed` and `rest_budget` need PostgreSQL (found or started as the tests do).
    .venv/bin/python -m bench fanout loop_lag      # just these

Each benchmark prints its own tables; this prints, at the end, every benchmark's exit status and
its `ratio:` line. Exits 1 if any benchmark could not measure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCHMARKS = (
    "fanout",
    "loop_lag",
    "persistence",
    "index",
    "scale",
    "progress",
    "hostile",
    "steps",
    "distributed",
    "rest_budget",
)
# Per benchmark, generous: the index build alone takes about 100 s here.
LIMIT_S = 1800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    root = Path(__file__).resolve().parent.parent
    summary: list[tuple[str, str, float, str]] = []
    for name in names:
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        print(f"\n===== {' '.join(['python', *command[1:]])}", flush=True)
        began = time.monotonic()
        ratio = ""
        try:
            with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
                # Bounded: a benchmark that hangs is killed after LIMIT_S.
                killer = threading.Timer(LIMIT_S, proc.kill)
                killer.start()
                try:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        print(line, end="", flush=True)
                        if line.startswith("ratio:"):
                            ratio = line.strip()
                    code = proc.wait()
                finally:
                    killer.cancel()
            status = "ok" if code == 0 else f"COULD NOT MEASURE (exit {code})"
        except OSError as exc:
            status = f"did not start ({exc})"
        summary.append((name, status, time.monotonic() - began, ratio))
    print("\n===== summary")
    for name, status, seconds, ratio in summary:
        print(f"{name:12} {status:10} {seconds:7.1f} s  {ratio}")
    sys.exit(0 if all(s == "ok" for _, s, _, _ in summary) else 1)


if __name__ == "__main__":
    main()
