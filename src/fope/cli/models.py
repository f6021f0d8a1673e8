"""``fope bench``, ``fope convert`` and ``fope export``: timing, and models in and out of transformers."""

from __future__ import annotations

import argparse

from fope.cli.args import command, positive_int, seed_int
from fope.errors import FopeError, one_line
from fope.extras import require


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "bench",
        help="benchmark position-encoding application (forward + backward)",
        description="Time applying each position encoding to queries and keys, forward and backward (or the forward "
        "alone), on the CPU or a GPU, next to copying q and k; prints a table (and writes JSON with --json).",
        handler=_run_bench,
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each scheme (fullgraph)")
    parser.add_argument("--forward", action="store_true", help="time the forward alone (no autograd)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")


def _run_bench(args: argparse.Namespace) -> int:
    from fope.benchmark import format_position_benchmark, run_position_benchmark

    results = run_position_benchmark(
        args.device, args.quick, args.json_path, compile=args.compile, forward_only=args.forward, force=args.force
    )
    print(format_position_benchmark(results))
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "convert",
        help="switch a local transformers model directory (Llama family) from RoPE to FoPE",
        description="Write a copy of a save_pretrained model directory whose attention uses FoPE instead of RoPE "
        "(the modeling file ships with the weights; load it with trust_remote_code=True).",
        handler=_run_convert,
        user_errors=(TypeError, ValueError, OSError),  # an unsupported model or a bad option: one line
    )
    parser.add_argument("src_dir", help="model directory written by save_pretrained (config.json + weights)")
    parser.add_argument("out_dir", help="where to write the converted model (other files of SRC_DIR are copied)")
    parser.add_argument(
        "--train-length", type=positive_int, required=True, help="context length the model will be trained at"
    )
    parser.add_argument("--sigma", type=float, default=0.3, help="coefficient noise gain (default 0.3)")
    parser.add_argument("--share-layers", action="store_true", help="one coefficient set for all layers (Intern)")
    parser.add_argument("--share-heads", action="store_true", help="one coefficient set for all heads")
    parser.add_argument("--seed", type=seed_int, default=None, help="seed for reproducible coefficients")
    parser.add_argument("--output-dim", default="official", help="official, square or an int (default official)")
    parser.add_argument("--zero-pad", default="official", choices=["official", "identity"], help="zero-frequency pairs")
    parser.add_argument("--learnable", action="store_true", help="train the coefficients too")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")


def _run_convert(args: argparse.Namespace) -> int:
    require("transformers", "fope convert")
    from fope.integrations.transformers import convert_directory, fope_modules

    output_dim = int(args.output_dim) if args.output_dim.isdigit() else args.output_dim
    names = ("train_length", "overwrite", "sigma", "share_layers", "seed", "zero_pad", "share_heads", "learnable")
    options = {name: getattr(args, name) for name in names}
    try:  # transformers' dependency: there when transformers is
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # older releases check configs with ValueErrors, one line already
        StrictDataclassError = ValueError

    try:
        model = convert_directory(args.src_dir, args.out_dir, output_dim=output_dim, **options)
    except StrictDataclassError as error:  # transformers' own config checks, which raise no ValueError
        raise FopeError(f"{args.src_dir}: transformers refuses its config.json: {one_line(error)}") from error
    fopes = fope_modules(model)
    sets = (
        "one coefficient set shared by all layers" if args.share_layers else f"{len(fopes)} per-layer coefficient sets"
    )
    print(f"{model.config.fope['base_architecture']} -> FoPE, {sets}: {fopes[0].extra_repr()}")
    print(f"saved to {args.out_dir}: load it with AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)")
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = command(
        subparsers,
        "export",
        help="write a trained run as a transformers model folder (load it with trust_remote_code=True)",
        description="Write a run's checkpoint (default: the latest) as a transformers model directory: config.json, "
        "weights, tokenizer and the FoPE modeling file; the run's name, encoding and step are recorded in config.json.",
        handler=_run_export,
        user_errors=(ValueError,),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from fope train)")
    parser.add_argument("out_dir", metavar="OUT", help="output folder")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument(
        "--max-positions",
        type=positive_int,
        default=None,
        help="max_position_embeddings of the folder (default: the training length, or factor x the original context)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")


def _run_export(args: argparse.Namespace) -> int:
    require("transformers", "fope export")
    from fope.integrations.export import export_run

    out = export_run(
        args.run_dir, args.out_dir, step=args.step, overwrite=args.overwrite, max_position_embeddings=args.max_positions
    )
    print(f"exported {args.run_dir} to {out}")
    return 0


def add(subparsers: argparse._SubParsersAction) -> None:
    for add_command in (_add_bench, _add_convert, _add_export):
        add_command(subparsers)
