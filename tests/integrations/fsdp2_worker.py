"""One rank of the FSDP2 check of a converted model (tests/integrations/test_hf_trainer.py runs two).

    torchrun --nproc_per_node 2 tests/integrations/fsdp2_worker.py MODEL_DIR OUT_DIR

(the test starts the two ranks itself, with torchrun's environment variables).

The steps accelerate's FSDP2 takes with ``cpu_ram_efficient_loading`` (accelerate.utils.fsdp_utils), written with
torch's public API, because accelerate turns FSDP on only for accelerator devices (on CPU processes it wraps the model
in DDP): rank 0 loads the folder, the others let transformers build the model on the meta device (the environment
``accelerate launch --use_fsdp --fsdp_cpu_ram_efficient_loading true`` sets); ``fully_shard`` each decoder layer and
the root (the layer classes ``fope.integrations.hf_trainer.fsdp_config`` names); rank 0's full state dict is broadcast
into the shards. Then a few AdamW steps on a fixed batch, and the gathered full state dict saved by rank 0 twice: with
``save_pretrained`` into OUT_DIR and, as the reference, with safetensors into OUT_DIR.gathered.safetensors. Prints
one JSON line per rank.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

os.environ["ACCELERATE_USE_FSDP"] = "true"
os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"


def main(model_dir: str, out_dir: str) -> None:
    from transformers import AutoModelForCausalLM

    from fope.integrations.hf_trainer import fsdp_config

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    saved = {name: tensor for name, tensor in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True)
    loaded = _fope_equal(model, saved)
    full = model.state_dict() if rank == 0 else {}
    layer_classes = fsdp_config(model)["transformer_layer_cls_to_wrap"]
    for module in list(model.modules()):
        if type(module).__name__ in layer_classes:
            fully_shard(module)
    fully_shard(model)
    if rank != 0:
        model.to_empty(device="cpu")
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full, options=options)

    sharded_intact = _fope_equal(model, saved)
    sharded = all(isinstance(parameter, DTensor) for parameter in model.parameters())

    generator = torch.Generator().manual_seed(rank)
    ids = torch.randint(3, model.config.vocab_size, (4, 24), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        model.save_pretrained(out_dir, state_dict=state)
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, f"{out_dir}.gathered.safetensors")
    dist.barrier()
    result = {"rank": rank, "loaded": loaded, "sharded_intact": sharded_intact, "sharded": sharded, "losses": losses}
    print(json.dumps(result))
    dist.destroy_process_group()


def _fope_equal(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """Whether the model's FoPE tensors (gathered when sharded) are exactly the saved ones, no more, no fewer."""
    fope = {name: tensor for name, tensor in model.state_dict().items() if ".fope." in name}
    if sorted(fope) != sorted(name for name in saved if ".fope." in name):
        return False
    full = {name: tensor.full_tensor() if isinstance(tensor, DTensor) else tensor for name, tensor in fope.items()}
    return all(torch.equal(tensor.detach().cpu(), saved[name]) for name, tensor in full.items())


if __name__ == "__main__":
    main(*sys.argv[1:3])
