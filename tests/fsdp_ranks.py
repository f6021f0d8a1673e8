"""What ``tests/test_fsdp.py`` runs under ``torchrun --nproc_per_node 2`` (one launch, several checks).

``python fsdp_ranks.py CONFIG RUN_DIR OUT``, every rank:

1. ``fope train --config CONFIG --out RUN_DIR --set train.parallel=fsdp --until-step 4`` (the command line);
2. a global batch of 9 rows, which 2 ranks cannot split: the ``ConfigError`` goes to ``OUT/odd-RANK.txt``;
3. rank 0 alone (``WORLD_SIZE=1``: no collectives, the model neither replicated nor sharded) resumes the run with
   ``train.parallel=ddp`` up to step 8, while rank 1 waits; then both resume it with ``fsdp`` up to ``max_steps``;
4. FoPE coefficients, frozen, learnable and learnable shared by the layers, drawn differently on each rank
   (``position_seed = 100 + rank``), then ``shard_model``, one optimizer step on the rank's half of a batch and
   ``save_sharded_checkpoint`` into ``OUT/coef-KIND``: each rank writes what it drew, what it holds after the step and
   what one process that trains rank 0's draw on the whole batch holds to ``OUT/{drawn,live,alone}-KIND-RANK``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from fope.cli import main
from fope.config import ConfigError, load_config
from fope.fsdp import clip_gradients, save_sharded_checkpoint, shard_model
from fope.model import ModelConfig, TransformerLM
from fope.train import train


def coefficients(model: TransformerLM) -> dict[str, torch.Tensor]:
    """The FoPE coefficients this rank holds, whole (a learnable one is a DTensor shard once sharded)."""
    found = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name.endswith(("cos_coef", "sin_coef")):
            whole = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            found[name] = whole.detach().clone().contiguous()
    return found


def main_rank(config_path: Path, run_dir: Path, out: Path) -> None:
    command = ["train", "--config", str(config_path), "--out", str(run_dir), "--no-progress"]
    assert main([*command, "--set", "train.parallel=fsdp", "--until-step", "4"]) == 0
    rank = dist.get_rank()
    try:
        train(
            load_config(config_path, ["train.parallel=fsdp", "train.batch_size=9", "train.grad_accum=1"]),
            out / "odd",
            progress=False,
        )
    except ConfigError as error:
        (out / f"odd-{rank}.txt").write_text(str(error))
    if rank == 0:
        os.environ["WORLD_SIZE"] = "1"
        train(load_config(run_dir / "config.yaml", ["train.parallel=ddp"]), run_dir, resume=True, until_step=8)
        os.environ["WORLD_SIZE"] = "2"
    dist.barrier()
    assert main(["train", "--out", str(run_dir), "--resume", "--no-progress", "--set", "train.parallel=fsdp"]) == 0
    for kind in ("frozen", "learnable", "shared"):  # shared: one learnable set, called by every layer
        config = ModelConfig(
            vocab_size=64, d_model=32, num_layers=2, num_heads=2, position="fope", train_length=32,
            position_options={"learnable": kind != "frozen"}, share_position=kind == "shared", position_seed=100 + rank,
        )  # fmt: skip
        torch.manual_seed(0)
        model = TransformerLM(config)
        torch.manual_seed(0)
        alone = TransformerLM(dataclasses.replace(config, position_seed=100))  # rank 0's draw, trained in 1 process
        save_file(coefficients(model), str(out / f"drawn-{kind}-{rank}.safetensors"))
        shard_model(model, bf16=False)
        tokens = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
        optimizers = [torch.optim.AdamW(trained.parameters(), lr=1e-2) for trained in (model, alone)]
        batches = (tokens[2 * rank : 2 * rank + 2], tokens)
        for trained, optimizer, rows in zip((model, alone), optimizers, batches, strict=True):
            trained(rows, targets=rows).loss.backward()
            clip_gradients(trained, 1.0)
            optimizer.step()
        state = {"scheduler": {}, "rng": {"torch": torch.get_rng_state()}, "tokens": 0}
        save_sharded_checkpoint(out / f"coef-{kind}", 1, model, optimizers[0], state, {})
        save_file(coefficients(model), str(out / f"live-{kind}-{rank}.safetensors"))
        save_file(coefficients(alone), str(out / f"alone-{kind}-{rank}.safetensors"))


if __name__ == "__main__":
    main_rank(*map(Path, sys.argv[1:4]))
    dist.destroy_process_group()
