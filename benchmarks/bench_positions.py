"""Forward + backward (or forward) time of FoPE, RoPE and YaRN application; see docs/benchmarks.md.

python benchmarks/bench_positions.py [--device cuda] [--compile] [--forward] [--quick] [--json out.json [--force]]
"""

from __future__ import annotations

import argparse

from fope.benchmark import format_position_benchmark, run_position_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile each scheme (fullgraph)")
    parser.add_argument("--forward", action="store_true", help="time the forward alone (no autograd)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args()
    results = run_position_benchmark(
        args.device, args.quick, args.json_path, compile=args.compile, forward_only=args.forward, force=args.force
    )
    print(format_position_benchmark(results))


if __name__ == "__main__":
    main()
