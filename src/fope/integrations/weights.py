"""Reading other code's checkpoints: tensors from a state dict, file or directory, configs, FoPE coefficients.

Shared by the OLMo-fork and Intern loaders (``fope.integrations.olmo_fork``, ``fope.integrations.intern``). Weights
come from a state dict, a ``.safetensors`` file, a directory of checkpoint files, or a ``.bin``/``.pt`` file read with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fope.positions import FoPE

__all__ = [
    "Source",
    "config_section",
    "fope_modules",
    "load_coefficients",
    "named_fope_modules",
    "read_config",
    "read_tensors",
]

#: Where weights come from: a state dict, a checkpoint file or a directory of them.
Source = str | PathLike[str] | Mapping[str, Tensor]

_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def read_tensors(source: Source, keep: Callable[[str], bool] | None = None) -> dict[str, Tensor]:
    """The tensors of a state dict, checkpoint file or directory whose names ``keep`` accepts (all by default)."""
    keep = keep or (lambda name: True)
    if isinstance(source, Mapping):
        return {name: tensor for name, tensor in source.items() if keep(name)}
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(
            file for file in path.iterdir() if file.suffix in _CHECKPOINT_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(f"no checkpoint file ({', '.join(_CHECKPOINT_SUFFIXES)}) in directory {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(
            f"weights must be a state dict, a checkpoint file or a directory; {path} does not exist"
        )
    tensors: dict[str, Tensor] = {}
    for file in files:
        tensors.update(_read_file(file, keep))
    return tensors


def _read_file(file: Path, keep: Callable[[str], bool]) -> dict[str, Tensor]:
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            names = [name for name in handle.keys() if keep(name)]  # noqa: SIM118 (a safetensors handle, not a dict)
            return {name: handle.get_tensor(name) for name in names}
    if file.suffix not in _CHECKPOINT_SUFFIXES:
        raise ValueError(f"checkpoint files must end in one of {list(_CHECKPOINT_SUFFIXES)}; got {file.name}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise TypeError(f"{file} must hold a state dict (name -> tensor); it holds a {type(state).__name__}")
    return {name: tensor for name, tensor in state.items() if keep(name) and isinstance(tensor, Tensor)}


def read_config(config: Mapping[str, Any] | str | PathLike[str]) -> dict[str, Any]:
    """A config as a dict: a mapping, or a ``.json`` / ``.yaml`` file. YAML is read as fope's own configs are
    (``fope.config.parse_yaml``): safely, and an alias bomb or a key written twice is an error, not minutes of work."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix in (".yaml", ".yml"):
        import yaml

        from fope.config import parse_yaml

        try:
            return parse_yaml(path.read_text())
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    raise ValueError(f"config must be a mapping or a .json/.yaml file; got {str(config)!r}")


def named_fope_modules(model: nn.Module) -> list[tuple[str, FoPE]]:
    """(state-dict prefix, module) of each distinct FoPE in ``model`` (a shared one is listed once)."""
    seen: set[int] = set()
    found = []
    for name, module in model.named_modules():
        if isinstance(module, FoPE) and id(module) not in seen:
            seen.add(id(module))
            found.append((name, module))
    return found


def fope_modules(model: nn.Module) -> list[FoPE]:
    """The distinct FoPE modules of ``model``: one per layer, or the single shared one."""
    return [module for _, module in named_fope_modules(model)]


def config_section(config: dict[str, Any], key: str, marker: str) -> dict[str, Any]:
    """``config[key]`` when ``config`` wraps the model section there (OLMo's train config, a multimodal config)."""
    inner = config.get(key)
    return dict(inner) if marker not in config and isinstance(inner, Mapping) else config


def load_coefficients(module: FoPE, tensors: Mapping[str, Tensor], where: str) -> None:
    """Copy ``cos_coef``/``sin_coef`` into ``module`` after checking them against the shape its options give."""
    expected = tuple(module.cos_coef.shape)
    for name in ("cos_coef", "sin_coef"):
        if name not in tensors:
            raise KeyError(f"{where}.{name} is missing from the weights (found {sorted(tensors)})")
        tensor = tensors[name]
        if tensor.dim() == 2 and module.share_heads:
            tensor = tensor.unsqueeze(0)  # coefficients shared by all heads are stored without the head axis
        if tuple(tensor.shape) != expected:
            heads = f"{module.num_coef_heads} coefficient head(s)"
            if module.share_heads:
                heads = "1 coefficient head shared by all (2-D (K, d_out) accepted)"
            terms = f"K={module.num_kept} of {module.frequency_dim // 2} frequencies kept"
            if module.keep_zeroed:
                terms = f"K={module.num_terms} series terms ({module.num_kept} of {module.frequency_dim // 2} kept)"
            raise ValueError(
                f"{where}.{name} has shape {tuple(tensor.shape)}; the config gives (heads, K, d_out) = {expected}: "
                f"{heads}, {terms} (head_dim={module.head_dim}, theta={module.theta:g}, "
                f"train_length={module.train_length}), d_out={module.output_dim}"
            )
        with torch.no_grad():
            getattr(module, name).copy_(tensor.to(torch.float32))
