"""Benchmarks of celery-svcjwt: see README.md; run them all with ``python benchmarks/run_all.py``."""
