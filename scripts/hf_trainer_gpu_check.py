"""A converted FoPE model fine-tuned by transformers' ``Trainer`` under accelerate's FSDP2, on GPUs: the check the CPU
cannot run (accelerate 1.16 enables FSDP for accelerator devices only; docs/transformers.md, section 4).

    .venv/bin/python scripts/hf_trainer_gpu_check.py [--nproc 1] [--steps 30] [--model DIR] [--json out.json [--force]]

Without ``--model`` it converts a small random Llama (4 layers, 8 query / 4 KV heads, head_dim 32, per-layer FoPE
coefficients, seed 0) into a temporary folder; with it, it fine-tunes that folder (written by ``fope convert`` or
``fope export``). Then ``torchrun --nproc_per_node N`` runs this file on N GPUs: each rank loads the folder with
``fope.integrations.transformers.from_pretrained``, and ``Trainer(TrainingArguments(fsdp=True,
fsdp_config=fsdp_config(model), bf16=True))`` trains it on 4 fixed random sequences. It checks, and fails (exit 1)
unless every check holds:

- accelerate really ran FSDP2 (``distributed_type`` FSDP, version 2, the parameters are DTensors);
- the FoPE tensors equal the saved file's after loading, and after training (frozen coefficients), on every rank;
- the training loss falls (last logged loss below the first by 0.3);
- ``save_model`` -> ``AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`` gives the gathered full state
  dict tensor for tensor, FoPE's included.

It prints one JSON line (the checks, losses, GPU name, versions, seconds). Without CUDA it stops at once with one line
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

#: The random Llama converted when no --model is given (~3.4M parameters).
SMALL = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "intermediate_size": 688,
    "vocab_size": 2048,
    "max_position_embeddings": 512,
}
SEQ_LEN = 128
TRAIN_LENGTH = 128


def needs_cuda(name: str) -> None:
    """Stop with one line and exit code 2 where no CUDA device is visible."""
    if not torch.cuda.is_available():
        print(f"{name}: needs CUDA (torch.cuda.is_available() is False here); run it on a GPU machine", file=sys.stderr)
        sys.exit(2)


def make_model(folder: Path) -> Path:
    """A small random Llama converted to FoPE and saved with ``save_pretrained``."""
    import transformers

    from fope.integrations.transformers import convert

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL))
    convert(model, TRAIN_LENGTH, seed=0)
    model.save_pretrained(folder)
    return folder


def fope_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The FoPE entries of a state dict, whole (a DTensor gathered) and on the CPU."""
    return {name: full(tensor) for name, tensor in state.items() if ".fope." in name}


def full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu()


def equal(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> bool:
    """Same names, and every tensor equal in value and dtype."""
    return sorted(found) == sorted(expected) and all(
        found[name].dtype == tensor.dtype and torch.equal(found[name], tensor) for name, tensor in expected.items()
    )


def worker(model_dir: Path, out: Path, steps: int) -> None:
    """One rank: load, train under the Trainer's FSDP2, check, save, reload; rank 0 writes ``out/result.json``."""
    import transformers
    from accelerate.utils import DistributedType
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from fope.integrations.hf_trainer import fsdp_config
    from fope.integrations.transformers import from_pretrained

    started = time.perf_counter()
    saved = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        saved.update(fope_tensors(load_file(path)))
    model = from_pretrained(model_dir)
    checks = {"fope_after_loading": bool(saved) and equal(fope_tensors(model.state_dict()), saved)}
    vocab = model.config.vocab_size

    class Batches(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 256

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            row = torch.randint(3, vocab, (SEQ_LEN,), generator=torch.Generator().manual_seed(index % 4))
            return {"input_ids": row, "labels": row}

    arguments = transformers.TrainingArguments(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=8,
        max_steps=steps,
        learning_rate=3e-3,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=torch.cuda.is_available(),  # the check needs CUDA; on a CPU (developing this script) accelerate runs DDP
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=0,
        fsdp=True,
        fsdp_config=fsdp_config(model),
    )
    trainer = transformers.Trainer(model=model, args=arguments, train_dataset=Batches())
    trainer.train()
    accelerator = trainer.accelerator
    trained = trainer.model  # FSDP2 shards in place: the model itself, its parameters DTensors
    checks["fsdp2"] = (
        accelerator.distributed_type == DistributedType.FSDP
        and accelerator.is_fsdp2
        and any(hasattr(p, "full_tensor") for p in trained.parameters())
    )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    checks["loss_falls"] = len(losses) >= 2 and losses[-1] < losses[0] - 0.3
    checks["fope_after_training"] = equal(fope_tensors(trained.state_dict()), saved)
    # every rank gathers the whole state dict (cpu_offload would give it to rank 0 only): a small model's check
    gathered = get_model_state_dict(trained, options=StateDictOptions(full_state_dict=True))
    final = out / "final"
    trainer.save_model(str(final))
    accelerator.wait_for_everyone()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True).state_dict()
    not_reloaded = sorted(name for name in gathered if name not in reloaded)  # e.g. a tied lm_head
    checks["save_reload_exact"] = not (set(reloaded) - set(gathered)) and all(
        torch.equal(reloaded[name], gathered[name].cpu()) for name in reloaded
    )
    checks["fope_after_reload"] = equal(fope_tensors(reloaded), saved)
    if accelerator.is_main_process:
        result = {
            "check": "hf_trainer_fsdp2",
            "passed": all(checks.values()),
            "checks": checks,
            "losses": losses,
            "steps": steps,
            "world_size": accelerator.num_processes,
            "fope_tensors": len(saved),
            "parameters": sum(t.numel() for t in reloaded.values()),
            "not_reloaded": not_reloaded,
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": __import__("accelerate").__version__,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (out / "result.json").write_text(json.dumps(result))
    if not all(checks.values()):
        sys.exit(f"rank {accelerator.process_index}: failed checks {[name for name, ok in checks.items() if not ok]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=1, help="processes, one GPU each (default 1)")
    parser.add_argument("--steps", type=int, default=30, help="Trainer steps (default 30)")
    parser.add_argument("--model", default=None, help="a folder written by fope convert or fope export")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON result here")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    needs_cuda("hf_trainer_gpu_check")
    if args.worker:
        return worker(Path(args.worker[0]), Path(args.worker[1]), args.steps)
    from fope.benchmark import check_json_path
    from fope.files import write_atomic

    json_path = check_json_path(args.json_path, force=args.force) if args.json_path else None

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        model_dir = Path(args.model) if args.model else make_model(folder / "model")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
                   __file__, "--worker", str(model_dir), str(folder), "--steps", str(args.steps)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        result_path = folder / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
        if result is None:
            result = {"check": "hf_trainer_fsdp2", "passed": False, "exit_code": done.returncode}
        result["log_tail"] = (done.stdout + done.stderr)[-4000:] if done.returncode or not result["passed"] else ""
    if json_path is not None:
        write_atomic(json_path, json.dumps(result, indent=2))
    print(json.dumps({key: value for key, value in result.items() if key != "log_tail"}))
    if done.returncode or not result["passed"]:
        sys.exit(f"hf_trainer_gpu_check failed (torchrun exit {done.returncode}):\n{result['log_tail']}")


if __name__ == "__main__":
    main()
