"""Sharded checkpoints on disk: ``torch.distributed.checkpoint`` (DCP) folders, written and read without conversion.

A checkpoint of a ``train.parallel: fsdp`` run holds two DCP folders besides ``training_state.pt`` and ``meta.json``:
``model/`` (the model's state dict, every tensor under its plain name, ``layers.0.attention.qkv_proj.weight``) and
``optimizer/`` (the AdamW state, keyed by parameter name: ``state.embed.weight.exp_avg``). Each rank writes its own
shards (``__R_0.distcp``) and rank 0 the index (``.metadata``). A DCP folder holds global shapes, so it loads into
any number of ranks, or into one process without a process group (``read_sharded_tensors``): ``fope eval``,
``fope passkey``, ``fope export`` and the campaign worker read it as they read ``model.safetensors``.

DCP writes its index with ``pickle``; ``safe_reader`` reads it with an unpickler that accepts only the classes of
DCP's metadata (sizes, dtypes, chunk offsets), so loading a checkpoint runs no code from it. Tensor shards are read
by DCP with ``torch.load(weights_only=True)``; only tensors are ever written (the optimizer's hyper-parameters go to
``training_state.pt``).
"""

from __future__ import annotations

import functools
import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fope.errors import FopeError

__all__ = [
    "SHARDED_MODEL",
    "SHARDED_OPTIMIZER",
    "is_sharded",
    "read_sharded",
    "read_sharded_tensors",
    "safe_reader",
    "sharded_shapes",
    "write_sharded",
]

#: The DCP folders of a sharded checkpoint: the model's state dict, and the optimizer's per-parameter state.
SHARDED_MODEL = "model"
SHARDED_OPTIMIZER = "optimizer"

#: What a DCP ``.metadata`` pickle may name: its own metadata classes, ``torch.Size``, dtypes, layouts and a path.
_METADATA_MODULES = ("torch.distributed.checkpoint.metadata",)
_ALLOWED = {
    ("torch", "Size"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """An unpickler that builds DCP's metadata and refuses every other global (a pickle cannot run code through it)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in _ALLOWED or module in _METADATA_MODULES
        if module == "torch" and not allowed:
            allowed = isinstance(getattr(torch, name, None), torch.dtype)
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint index")
        return super().find_class(module, name)


@functools.cache
def _safe_reader_class() -> type:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeReader(FileSystemReader):
        """``FileSystemReader`` whose ``.metadata`` is read by an allow-list unpickler (DCP's own uses ``pickle``)."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            rank = kwargs.get("rank")
            path = Path(self.path) / (".metadata" if rank is None else f"__{rank}.metadata")
            try:
                metadata = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as error:
                raise FopeError(f"{path} is not a checkpoint index: {error}") from error
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader


def safe_reader(path: str | Path) -> Any:
    """A DCP ``FileSystemReader`` of the folder ``path`` that reads its index without running code from it (its
    class is built on first use: DCP is slow to import)."""
    return _safe_reader_class()(path)


def is_sharded(directory: str | Path) -> bool:
    """Whether the checkpoint folder ``directory`` holds its weights as a DCP folder (``model/``)."""
    return (Path(directory) / SHARDED_MODEL).is_dir()


def sharded_shapes(folder: str | Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every tensor of the DCP folder ``folder``: name -> (global shape, dtype), from its index alone."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = safe_reader(folder).read_metadata()
    return {
        name: (tuple(item.size), item.properties.dtype)
        for name, item in metadata.state_dict_metadata.items()
        if isinstance(item, TensorStorageMetadata)
    }


def read_sharded_tensors(folder: str | Path) -> dict[str, Tensor]:
    """Every tensor of the DCP folder ``folder``, whole (unsharded), read on the CPU by this process alone."""
    state = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in sharded_shapes(folder).items()}
    read_sharded(state, folder, alone=True)
    return state


def read_sharded(state: dict[str, Any], folder: str | Path, *, alone: bool) -> None:
    """Fill the (nested) tensors of ``state`` from the DCP folder ``folder``: ``alone``, by this process whole
    tensors; else collectively, every rank its shards of DTensors (of any world size: DCP reshards)."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # DCP warns that it loads in a single process: that is what is meant
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=safe_reader(folder), no_dist=alone)


def write_sharded(state: dict[str, Any], folder: str | Path) -> None:
    """Write the (nested) tensors of ``state`` as the DCP folder ``folder``: every rank its shards, rank 0 the index.

    A collective under a process group: every rank calls it with its part of the same state dict.
    """
    import torch.distributed.checkpoint as dcp

    dcp.save(state, checkpoint_id=Path(folder))
