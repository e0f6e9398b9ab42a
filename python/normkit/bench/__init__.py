"""Benchmarks of normkit against torch and NumPy, with a memory-copy roof.

Run ``python -m normkit.bench --help``; bench/README.md describes the method.
Nothing here asserts on timings: it measures and reports.
"""

from .cli import main

__all__ = ["main"]
