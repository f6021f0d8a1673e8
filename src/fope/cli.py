"""The ``fope`` command line: thin wrappers that parse, call the library, and print."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmark position-encoding application (forward + backward)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each scheme (fullgraph)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    parser.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from fope.benchmark import format_position_benchmark, run_position_benchmark

    results = run_position_benchmark(args.device, args.quick, args.json_path, compile=args.compile)
    print(format_position_benchmark(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fope", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)
