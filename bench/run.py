#!/usr/bin/env python3
"""Runs the benchmark: the same as ``python -m normkit.bench`` (see bench/README.md).

    python bench/run.py --quick
    python bench/run.py --markdown --json bench/results.json > results.md
"""

import sys

from normkit.bench import main

if __name__ == "__main__":
    sys.exit(main())
