"""Forward + backward (or forward) time of FoPE, RoPE and YaRN application next to a copy; see docs/benchmarks.md.

python benchmarks/bench_positions.py [--device cuda] [--compile] [--forward] [--quick] [--json out.json [--force]]

The same benchmark as ``fope bench`` (this script runs it, with the same options and checks).
"""

from __future__ import annotations

import sys

from fope.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
