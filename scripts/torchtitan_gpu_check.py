"""A few training steps of torchtitan's Llama 3 debug model with FoPE, on GPUs: the check the CPU cannot run.

    .venv/bin/python scripts/torchtitan_gpu_check.py --gpus 1 --steps 20 [--json out.json [--force]]

torchtitan 0.3.0's ``Trainer`` takes ``cuda`` when no accelerator is found (``torchtitan.tools.utils``:
``device_type = _get_available_device_type() or "cuda"``) and calls ``torch.cuda.set_device`` while it builds, so its
trainer does not run on a CPU-only torch (docs/torchtitan.md). This script runs it unchanged:
``torchrun -m torchtitan.train --module llama3 --config llama3_debugmodel`` with FoPE put in by fope's override,
``--override.imports 'fope.integrations.torchtitan.fope_position={...}'``. The debug config reads a tokenizer and a
``c4_test`` dataset from ``./tests/assets`` of a torchtitan checkout, which the wheel does not ship, so the script
writes both into a temporary folder (a byte-level BPE of 2,000 tokens trained on generated text, and that text) and
runs there. It fails unless the loss falls, prints the losses, and checks that the checkpoint written at the last
step holds every layer's coefficients. ``--json`` also writes the losses and the checkpoint's coefficient names there.
Without CUDA it stops at once with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = "the a of to and in is it that was for on are with as his they be at one have this from or had by"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def write_assets(folder: Path, documents: int = 2000) -> None:
    """``tests/assets/tokenizer`` (tokenizer.json + tokenizer_config.json) and ``tests/assets/c4_test`` (JSON lines)."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS.split()) for _ in range(rng.randint(50, 400))) + "." for _ in range(documents)]
    data = folder / "tests/assets/c4_test"
    data.mkdir(parents=True)
    (data / "train.json").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    special = ["<|begin_of_text|>", "<|end_of_text|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=special))
    assets = folder / "tests/assets/tokenizer"
    assets.mkdir(parents=True)
    tokenizer.save(str(assets / "tokenizer.json"))
    config = {"bos_token": special[0], "eos_token": special[1], "add_bos_token": True, "add_eos_token": True}
    (assets / "tokenizer_config.json").write_text(json.dumps(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=1, help="processes (one GPU each; default 1)")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--position", default="fope", help="fope position encoding (default fope)")
    parser.add_argument("--seq-len", type=int, default=512, help="training length, FoPE's train_length (default 512)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        message = "torchtitan_gpu_check: needs CUDA (torch.cuda.is_available() is False here); run it on a GPU machine"
        print(message, file=sys.stderr)
        sys.exit(2)
    from fope.benchmark import check_json_path

    json_path = check_json_path(args.json_path, force=args.force) if args.json_path else None
    options = {"position": args.position, "train_length": args.seq_len}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_assets(folder)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={args.gpus}",
            "-m",
            "torchtitan.train",
            "--module",
            "llama3",
            "--config",
            "llama3_debugmodel",
            "--training.steps",
            str(args.steps),
            "--training.seq_len",
            str(args.seq_len),
            "--checkpoint.enable",
            "--checkpoint.interval",
            str(args.steps),
            "--checkpoint.folder",
            "checkpoint",
            "--dump_folder",
            str(folder / "outputs"),
            "--override.imports",
            f"fope.integrations.torchtitan.fope_position={json.dumps(options)}",
        ]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=os.environ.copy())
        log = ANSI.sub("", done.stdout + done.stderr)
        if done.returncode:
            sys.exit(f"torchtitan's trainer failed (exit {done.returncode}):\n{log[-6000:]}")
        losses = [float(value) for value in re.findall(r"step:\s*\d+\s+loss:\s*([0-9.]+)", log)]
        print("override:", *[line for line in log.splitlines() if "[Override]" in line][:1])
        print("losses:", " ".join(f"{loss:.4f}" for loss in losses))
        if len(losses) < 2 or not losses[-1] < losses[0]:
            sys.exit(f"the loss did not fall over {args.steps} steps: {losses}")
        checkpoint = folder / "outputs" / "checkpoint" / f"step-{args.steps}"
        keys = _checkpoint_keys(checkpoint)
        rope = sorted(key for key in keys if ".attention.rope." in key)
        if not rope:
            sys.exit(f"the checkpoint {checkpoint} holds no FoPE coefficients")
        print(f"checkpoint step-{args.steps}: {len(rope)} coefficient tensors, e.g. {rope[0]}")
    if json_path is not None:
        from fope.files import write_atomic

        result = {"check": "torchtitan", "passed": True, "steps": args.steps, "losses": losses}
        result |= {"coefficient_tensors": rope, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
        write_atomic(json_path, json.dumps(result, indent=2))


def _checkpoint_keys(checkpoint: Path) -> list[str]:
    from torch.distributed.checkpoint import FileSystemReader

    return list(FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata)


if __name__ == "__main__":
    main()
