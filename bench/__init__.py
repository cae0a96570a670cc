"""Benchmarks of the reminder engine: start-up, dispatch throughput and punctuality.

Each module runs alone (``python -m bench.startup``), prints readable figures and, as its
last line, one JSON object of them. ``--quick`` shrinks the sizes for the smoke test.
"""
