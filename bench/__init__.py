"""Benchmarks for issue #7: each module is one script, run from the project root.

    .venv/bin/python -m bench.fanout        # and loop_lag, persistence, index, scale, progress
    .venv/bin/python -m bench               # all of them, one after the other
    .venv/bin/python -m bench --quick       # a smoke run with small sizes

Every script prints a table, says which targets are met, and ends with one `ratio:` line. It exits
non-zero only when it could not measure (a sink did not answer, a delivery is missing), never
because a target was missed. No timings are asserted in tests.
"""
