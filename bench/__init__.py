"""Benchmarks of the reminder engine: start-up, dispatch throughput and punctuality.

Each module runs alone (``python -m bench.startup``), prints readable figures and, as its
last line, one JSON object of them. ``--quick`` shrinks the sizes for the smoke test.
"""

import os

# Benchmarks measure the engine, not Open-Meteo: UV forecasts go to a closed loopback port
# (they fail at once and back off), so nothing here reaches the internet.
os.environ.setdefault("MILIABOT_UV_API_URL", "http://127.0.0.1:9")
