"""``train.parallel: fsdp``: the model sharded with FSDP2 (``fully_shard``), its checkpoints sharded with DCP.

``shard_model`` gives every rank rank 0's weights and buffers, then shards each transformer block, each position
module that has parameters and the root. On a GPU (``train.precision`` auto or bf16) the blocks and the root compute
in bf16 and reduce gradients in float32 (``MixedPrecisionPolicy``); FoPE's coefficients are float32 buffers, which
FSDP never casts, and learnable ones get their own float32 unit, so position math stays float32 either way.

``save_sharded_checkpoint`` is ``fope.checkpoint.save_checkpoint`` for a sharded model, called by every rank: each
writes its shards of the weights (``model/``) and of the AdamW state (``optimizer/``) into one staging folder
(``checkpoints/.step_N.tmp-PID``, PID being rank 0's), then rank 0 adds ``training_state.pt`` and ``meta.json``
(checksums of every file), publishes the folder by one rename and points ``latest`` at it. A run killed during a save
leaves the previous checkpoint as ``latest``, and the staging folder is removed by the next save or resume.

``load_optimizer_state`` restores AdamW from either kind of checkpoint into either kind of model (DCP reshards: a run
saved on 2 ranks resumes on 1, or on 4); the weights are read before sharding, by ``fope.checkpoint``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fope.checkpoint import (
    CHECKPOINTS,
    checkpoint_name,
    clean_stale_temporaries,
    file_sha256,
    point_latest,
    publish_directory,
)
from fope.device import model_device
from fope.files import renamed_error
from fope.sharded import SHARDED_MODEL, SHARDED_OPTIMIZER, read_sharded, write_sharded

if TYPE_CHECKING:
    from fope.model import TransformerLM

__all__ = ["clip_gradients", "is_sharded_model", "load_optimizer_state", "save_sharded_checkpoint", "shard_model"]


def shard_model(model: TransformerLM, *, bf16: bool) -> TransformerLM:
    """Shard ``model`` (already on this rank's device) in place: rank 0's weights and buffers on every rank, then
    ``fully_shard`` per block, per position module with parameters (float32), and on the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = model_device(model)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with torch.no_grad():  # FoPE's coefficients are seeded alike on every rank; this makes sure, as DDP does
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            dist.broadcast(tensor, src=0)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
    exact = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32, cast_forward_inputs=False)
    for block in model.layers:
        fully_shard(block, **({"mp_policy": policy} if policy else {}))
    for position in model.position_modules:
        if next(position.parameters(), None) is not None:  # learnable coefficients: never cast to bf16
            fully_shard(position, mp_policy=exact)
    fully_shard(model, **({"mp_policy": policy} if policy else {}))
    return model


def is_sharded_model(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are DTensors (sharded by ``shard_model``)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(parameter, DTensor) for parameter in model.parameters())


def clip_gradients(model: nn.Module, max_norm: float) -> Tensor:
    """Clip the global gradient norm of a sharded model to ``max_norm``; the norm before clipping, whole."""
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _main_pid(model: nn.Module) -> int:
    """Rank 0's process id, on every rank: it names the staging folder, whose writer is then rank 0."""
    pid = torch.tensor([os.getpid()], dtype=torch.int64, device=model_device(model))
    dist.broadcast(pid, src=0)
    return int(pid.item())


def save_sharded_checkpoint(
    run_dir: str | Path,
    step: int,
    model: TransformerLM,
    optimizer: torch.optim.Optimizer,
    training_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Write ``checkpoints/step_XXXXXXX`` of a sharded model atomically (every rank calls it); see the module doc.

    ``training_state`` holds the scheduler, RNG and token count; the optimizer's tensors go to ``optimizer/`` and its
    hyper-parameters (``param_groups``, parameters by name) to ``training_state.pt`` as ``optimizer_groups``.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    root = Path(run_dir) / CHECKPOINTS
    final = root / checkpoint_name(step)
    staging = root / f".{final.name}.tmp-{_main_pid(model)}"
    is_main = dist.get_rank() == 0
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(root)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    dist.barrier()
    try:
        optimizer_state = get_optimizer_state_dict(model, optimizer)
        write_sharded(get_model_state_dict(model), staging / SHARDED_MODEL)
        write_sharded({"state": optimizer_state["state"]}, staging / SHARDED_OPTIMIZER)
        if is_main:  # every rank's shards are on disk: DCP's save ends once rank 0 has written the index
            with open(staging / "training_state.pt", "wb") as handle:  # a handle: a write error is an OSError
                torch.save({**training_state, "optimizer_groups": optimizer_state["param_groups"]}, handle)
            files = sorted(str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file())
            record = {
                "step": step,
                "time": time.time(),
                "model_config": model.config.to_dict(),
                **meta,
                "format": "sharded",
                "world_size": dist.get_world_size(),
                "files": {name: file_sha256(staging / name) for name in files},
            }
            (staging / "meta.json").write_text(json.dumps(record, indent=2))
            publish_directory(staging, final, replace=True)
    except BaseException as error:  # a full disk, Ctrl-C: no half-written checkpoint stays; `latest` is unchanged
        if is_main:
            shutil.rmtree(staging, ignore_errors=True)
        named = renamed_error(error, staging, final) if isinstance(error, OSError) else error
        if named is error:
            raise
        raise named from error
    if is_main:
        point_latest(final, keep)
    dist.barrier()
    return final


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, directory: str | Path, training_state: dict[str, Any]
) -> None:
    """Restore ``optimizer`` (over ``model``'s parameters, sharded or not) from a checkpoint of either kind."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    folder = Path(directory) / SHARDED_OPTIMIZER
    sharded = is_sharded_model(model)
    if folder.is_dir():
        state = {"state": get_optimizer_state_dict(model, optimizer)["state"]}  # its tensors are the destination
        read_sharded(state, folder, alone=not sharded)
        restored = {"state": state["state"], "param_groups": training_state["optimizer_groups"]}
    elif not sharded:
        optimizer.load_state_dict(training_state["optimizer"])
        return
    else:
        restored = _by_name(training_state["optimizer"], model, optimizer)
    set_optimizer_state_dict(model, optimizer, restored)


def _by_name(saved: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A plain optimizer state dict (parameters by index) keyed by parameter name, each tensor sharded like its
    parameter: what ``set_optimizer_state_dict`` takes for a sharded model."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    names = {id(parameter): name for name, parameter in model.named_parameters()}
    state: dict[str, Any] = {}
    groups = []
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        for index, parameter in zip(saved_group["params"], group["params"], strict=True):
            if index not in saved["state"]:
                continue
            state[names[id(parameter)]] = {
                key: distribute_tensor(value.to(parameter.device), parameter.device_mesh, parameter.placements)
                if isinstance(parameter, DTensor) and isinstance(value, Tensor) and value.dim() > 0
                else value
                for key, value in saved["state"][index].items()
            }
        groups.append({**saved_group, "params": [names[id(parameter)] for parameter in group["params"]]})
    return {"state": state, "param_groups": groups}
