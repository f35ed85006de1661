"""Benchmarks: scripts run by hand (``python -m bench.<name>``), never timed tests.

See bench/README.md for what each one measures and how to run it.
"""
