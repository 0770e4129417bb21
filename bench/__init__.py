"""sealbridge benchmarks: speed is measured here, never asserted in a timed test.

Run everything with ``python -m bench.run_all [--quick]``; each module is also runnable
alone (``python -m bench.bench_runtime``). Results go to ``bench/results/<name>.json``.
"""
