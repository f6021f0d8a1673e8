"""FoPE checkpoints of other code: the authors' OLMo fork and the Intern stack (``docs/fope-spec.md`` section 7).

Each loader maps the other code's config keys to ``fope.FoPE`` options, builds equivalent modules and loads their
coefficients; a shape or a setting that ``FoPE`` does not reproduce is an error, never an approximation. Weights come
from a state dict, a ``.safetensors`` file, a directory of checkpoint files, or a ``.bin``/``.pt`` file read with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fope.positions import FoPE
from fope.positions.frequencies import floor_frequency, num_kept_frequencies, rope_frequencies

__all__ = [
    "OLMO_DEFAULTS",
    "export_intern",
    "fope_modules",
    "intern_fope_options",
    "load_intern_fope",
    "load_olmo_fope",
    "named_fope_modules",
    "olmo_fope_options",
    "read_config",
    "read_tensors",
]

Source = str | PathLike[str] | Mapping[str, Tensor]

#: Values the OLMo-fork loader assumes for absent keys: the spec's reference setting (docs/fope-spec.md).
OLMO_DEFAULTS: dict[str, Any] = {
    "fourier": False,
    "fourier_dim": None,
    "fourier_init_norm_gain": 0.3,
    "fourier_separate_basis": True,
    "fourier_separate_head": True,
    "fourier_learnable": False,
    "fourier_norm": False,
    "fourier_ignore_zero": True,
    "rope_clamp_floor_freq": True,
    "rope_clamp_floor_to_zero": True,
    "rope_theta": 10000.0,
}
_OLMO_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.pos_emb\.(cos|sin)_coef$")
_INTERN_KEY = re.compile(r"(?:^|\.)rotary_emb\.(cos|sin)_coef$")
_INTERN_OPTIONS = ("fope_init_factor", "fope_sep_head", "num_inv_freq")
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
    """A config as a dict: a mapping, or a ``.json`` / ``.yaml`` file."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(path.read_text())
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


def olmo_fope_options(config: Mapping[str, Any] | str | PathLike[str]) -> dict[str, Any]:
    """``FoPE`` arguments for a model config of the authors' OLMo fork (``OLMO_DEFAULTS`` fill absent keys).

    ``fourier_init_norm_gain`` -> sigma, ``fourier_dim`` (0/None: ``min(K, D // 4)``) -> output_dim,
    ``fourier_separate_head=False`` -> share_heads, ``fourier_learnable`` -> learnable, ``rope_clamp_floor_freq`` ->
    clip_floor, ``max_sequence_length`` -> train_length, ``d_model // n_heads`` -> head_dim; ``fourier_init`` only
    chose the initialisation and is not needed to load. Settings ``FoPE`` does not implement are errors.
    """
    config = _section(read_config(config), "model", "d_model")
    options = {**OLMO_DEFAULTS, **{key: value for key, value in config.items() if value is not None}}
    for key in ("d_model", "n_heads", "max_sequence_length"):
        if key not in options:
            raise KeyError(f"the OLMo config must give {key!r}; got keys {sorted(config)}")
    if not options["fourier"]:
        raise ValueError("the OLMo config has fourier=False: a RoPE model, with no FoPE coefficients to load")
    unsupported = {
        "fourier_norm": (True, "coefficients normalised in the forward pass"),
        "fourier_separate_basis": (False, "one matrix shared by the cos and sin series"),
    }
    if options["rope_clamp_floor_freq"]:
        unsupported["rope_clamp_floor_to_zero"] = (False, "low frequencies raised to the floor instead of zeroed")
        unsupported["fourier_ignore_zero"] = (False, "zeroed frequencies kept as constant terms of the series")
    for key, (value, meaning) in unsupported.items():
        if bool(options[key]) == value:
            raise ValueError(
                f"the OLMo config sets {key}={options[key]!r} ({meaning}), which fope.FoPE does not implement"
            )
    num_heads = options["n_heads"]
    num_kv_heads = options.get("n_kv_heads") or (1 if options.get("multi_query_attention") else num_heads)
    separate_head = bool(options["fourier_separate_head"])
    if separate_head and num_kv_heads != num_heads:
        raise ValueError(
            f"the OLMo config has per-query-head coefficients (fourier_separate_head=True) with n_kv_heads="
            f"{num_kv_heads} < n_heads={num_heads}: each key would need one rotation per query head, while fope.FoPE "
            "keeps one per KV head"
        )
    return {
        "head_dim": options["d_model"] // num_heads,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "train_length": options["max_sequence_length"],
        "theta": float(options["rope_theta"]),
        "sigma": float(options["fourier_init_norm_gain"]),
        "clip_floor": bool(options["rope_clamp_floor_freq"]),
        "output_dim": options["fourier_dim"] or "official",
        "zero_pad": "official",
        "share_heads": not separate_head,
        "learnable": bool(options["fourier_learnable"]),
        "layout": "half",
    }


def load_olmo_fope(config: Mapping[str, Any] | str | PathLike[str], weights: Source) -> list[FoPE]:
    """One ``FoPE`` per block with ``blocks.{i}.pos_emb.{cos,sin}_coef`` (``(n_heads, K, d_out)``) loaded."""
    config = _section(read_config(config), "model", "d_model")
    options = olmo_fope_options(config)
    tensors = read_tensors(weights, keep=lambda name: _OLMO_KEY.search(name) is not None)
    blocks: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        match = _OLMO_KEY.search(name)
        block = blocks.setdefault(int(match.group(1)), {})
        if f"{match.group(2)}_coef" in block:
            raise ValueError(f"block {match.group(1)} has two {match.group(2)}_coef tensors (one is {name!r})")
        block[f"{match.group(2)}_coef"] = tensor
    if not blocks:
        raise KeyError(
            "no 'blocks.{i}.pos_emb.{cos,sin}_coef' tensors in the weights: not an OLMo-fork FoPE checkpoint"
        )
    num_layers = config.get("n_layers", len(blocks))
    if sorted(blocks) != list(range(num_layers)):
        raise ValueError(
            f"the weights hold pos_emb coefficients for blocks {sorted(blocks)}; expected 0..{num_layers - 1}"
        )
    modules = []
    for index in range(num_layers):
        module = FoPE(**options, seed=0)  # placeholder coefficients, overwritten: leave the global RNG alone
        _load_coefficients(module, blocks[index], f"blocks.{index}.pos_emb")
        modules.append(module)
    return modules


def intern_fope_options(config: Mapping[str, Any] | str | PathLike[str]) -> dict[str, Any]:
    """``FoPE`` arguments for an Intern-stack model config (its FoPE keys sit in ``rope_scaling``).

    ``fope_init_factor`` -> sigma, ``fope_sep_head=False`` -> share_heads, K = ``num_inv_freq`` or the number of
    frequencies strictly above ``2*pi/max_position_embeddings``, output_dim K ("square"), layout "half".
    """
    config = _section(read_config(config), "text_config", "num_attention_heads")
    # transformers 5 writes rope_parameters where 4.x wrote rope_scaling (and rope_theta beside it).
    sections = [dict(config.get(key) or {}) for key in ("rope_scaling", "rope_parameters")]
    rope = next((section for section in sections if any(key in section for key in _INTERN_OPTIONS)), None)
    if rope is None:
        raise ValueError(f"neither rope_scaling nor rope_parameters holds the Intern FoPE keys {list(_INTERN_OPTIONS)}")
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type not in (None, "default", "fope") or "factor" in rope:
        raise ValueError(
            f"rope_scaling combines FoPE with rope_type={rope_type!r}, factor={rope.get('factor')!r}; "
            "the Intern loader supports FoPE on plain RoPE frequencies only"
        )
    for key in ("num_attention_heads", "max_position_embeddings"):
        if key not in config:
            raise KeyError(f"the Intern config must give {key!r}; got keys {sorted(config)}")
    num_heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // num_heads
    rotary_dim = int(head_dim * config.get("partial_rotary_factor", rope.get("partial_rotary_factor", 1.0)))
    theta = float(config.get("rope_theta") or next((sec["rope_theta"] for sec in sections if "rope_theta" in sec), 1e4))
    max_positions = config["max_position_embeddings"]
    num_kept = rope.get("num_inv_freq")
    if num_kept is None:
        num_kept = num_kept_frequencies(rope_frequencies(rotary_dim, theta), max_positions, strict=True)
        if num_kept == 0:
            raise ValueError(
                f"no frequency is above 2*pi/max_position_embeddings={floor_frequency(max_positions):.4f}; "
                "the config needs num_inv_freq"
            )
    return {
        "head_dim": head_dim,
        "num_heads": num_heads,
        "num_kv_heads": config.get("num_key_value_heads") or num_heads,
        "train_length": max_positions,
        "theta": theta,
        "sigma": float(rope.get("fope_init_factor", 0.3)),
        "output_dim": "square",
        "share_heads": not rope.get("fope_sep_head", True),
        "num_inv_freq": num_kept,
        "rotary_dim": rotary_dim,
        "layout": "half",
    }


def load_intern_fope(
    config: Mapping[str, Any] | str | PathLike[str], weights: Source, *, zero_pad: str = "official"
) -> FoPE:
    """The model-level ``FoPE`` of an Intern-stack checkpoint, ``rotary_emb.{cos,sin}_coef`` (``(Hkv, K, K)``) loaded.

    ``zero_pad``: the pairs past K hold ``c = s = 1`` in the Intern checkpoint's training convention ("official");
    a newer vLLM patch uses ``c = 1, s = 0`` ("identity").
    """
    module = FoPE(**intern_fope_options(config), zero_pad=zero_pad, seed=0)  # placeholder coefficients, overwritten
    tensors = read_tensors(weights, keep=lambda name: _INTERN_KEY.search(name) is not None)
    coefficients: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        kind = f"{_INTERN_KEY.search(name).group(1)}_coef"
        if kind in coefficients:
            names = sorted(tensors)
            raise ValueError(f"the weights hold several rotary_emb.{kind} tensors {names}; pass only the model's")
        coefficients[kind] = tensor
    _load_coefficients(module, coefficients, "rotary_emb")
    return module


def export_intern(source: nn.Module, *, prefix: str = "model.") -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(``rope_scaling`` entries, ``{prefix}rotary_emb.{cos,sin}_coef`` tensors) of a FoPE shared by all layers.

    ``source`` is a ``FoPE`` or a model holding exactly one (``convert(..., share_layers=True)``). The Intern layout
    stores square ``(Hkv, K, K)`` coefficients on plain RoPE frequencies in the half layout with ``c = s = 1`` pairs.
    """
    modules = [source] if isinstance(source, FoPE) else fope_modules(source)
    if len(modules) != 1:
        raise ValueError(
            f"the Intern layout has one FoPE shared by all layers; {type(source).__name__} holds {len(modules)} "
            "(convert with share_layers=True)"
        )
    fope = modules[0]
    requirements = {
        "output_dim": (fope.output_dim, fope.num_kept, "square coefficients: output_dim='square'"),
        "zero_pad": (fope.zero_pad, "official", "pairs past K with c = s = 1"),
        "layout": (fope.layout, "half", "the half (Llama) layout"),
        "scaling": (fope.scaling, None, "plain RoPE frequencies"),
    }
    for name, (value, needed, meaning) in requirements.items():
        if value != needed:
            raise ValueError(f"the Intern layout needs {meaning}; this FoPE has {name}={value!r}")
    entries = {"fope_init_factor": fope.sigma, "fope_sep_head": not fope.share_heads, "num_inv_freq": fope.num_kept}
    tensors = {
        f"{prefix}rotary_emb.{name}": getattr(fope, name).detach().to("cpu", torch.float32).contiguous().clone()
        for name in ("cos_coef", "sin_coef")
    }
    return entries, tensors


def _section(config: dict[str, Any], key: str, marker: str) -> dict[str, Any]:
    """``config[key]`` when ``config`` wraps the model section there (OLMo's train config, a multimodal config)."""
    inner = config.get(key)
    return dict(inner) if marker not in config and isinstance(inner, Mapping) else config


def _load_coefficients(module: FoPE, tensors: Mapping[str, Tensor], where: str) -> None:
    """Copy ``cos_coef``/``sin_coef`` into ``module`` after checking them against the shape its options give."""
    expected = tuple(module.cos_coef.shape)
    for name in ("cos_coef", "sin_coef"):
        if name not in tensors:
            raise KeyError(f"{where}.{name} is missing from the weights (found {sorted(tensors)})")
        tensor = tensors[name]
        if tensor.dim() == 2 and expected[0] == 1:
            tensor = tensor.unsqueeze(0)  # coefficients shared by all heads may be stored without the head axis
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"{where}.{name} has shape {tuple(tensor.shape)}; the config gives (heads, K, d_out) = {expected}: "
                f"{module.num_coef_heads} coefficient head(s), K={module.num_kept} of {module.rotary_dim // 2} "
                f"frequencies kept (head_dim={module.head_dim}, theta={module.theta:g}, "
                f"train_length={module.train_length}), d_out={module.output_dim}"
            )
        with torch.no_grad():
            getattr(module, name).copy_(tensor.to(torch.float32))
