"""Where tensors live: the device a config or command line names, this process's place in a data-parallel job,
and the device a model's weights are on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fope.errors import ConfigError

__all__ = ["DEVICE_TYPES", "Distributed", "init_distributed", "model_device", "resolve_device"]


#: The device types fope runs on.
DEVICE_TYPES = ("cpu", "cuda", "mps")
_ACCEPTED = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA (this process's local GPU) when available, else CPU; a device that is not there is an error,
    and so is one fope does not run on (``meta``, ``xpu``, ...)."""
    if isinstance(name, torch.device):
        device = name
    else:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as error:
            raise ConfigError(f"device must be {_ACCEPTED}; got {name!r}") from error
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"device must be {_ACCEPTED}; got {str(device)!r}, a device type fope does not run on")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} asks for CUDA, which is not available here; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r} asks for MPS, which is not available here; use cpu or auto")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_type: str, *, sharded: bool = False) -> Distributed:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA).

    ``sharded`` (``train.parallel: fsdp``) needs a process group even for one process: one already initialised, or
    torchrun's (``WORLD_SIZE`` set); without either it is a ``ConfigError``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if sharded and not dist.is_initialized() and "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "train.parallel=fsdp shards the model across the processes of torchrun, and this process was not "
            "started by torchrun: run torchrun --nproc_per_node N -m fope train ..., or set train.parallel=ddp"
        )
    if world_size == 1 and not sharded:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
