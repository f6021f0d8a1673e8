"""FoPE checkpoints of other code: the authors' OLMo fork and the Intern stack (``docs/fope-spec.md`` section 7).

Each loader maps the other code's config keys to ``fope.FoPE`` options, builds equivalent modules and loads their
coefficients; a shape or a setting that ``FoPE`` does not reproduce is an error, never an approximation. Weights come
from a state dict, a ``.safetensors`` file, a directory of checkpoint files, or a ``.bin``/``.pt`` file read with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fope.positions import FoPE
from fope.positions.frequencies import (
    floor_frequency,
    num_kept_frequencies,
    rope_frequencies,
    scaled_frequencies,
)

__all__ = [
    "OLMO_DEFAULTS",
    "OLMO_NEUTRAL",
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

#: Values the OLMo-fork loader assumes for absent keys: the spec's reference setting (docs/fope-spec.md); every other
#: key takes the default of the authors' ``olmo/config.py``.
OLMO_DEFAULTS: dict[str, Any] = {
    "fourier": False,
    "fourier_dim": 0,
    "fourier_init_norm_gain": 0.3,
    "fourier_separate_basis": True,
    "fourier_separate_head": True,
    "fourier_learnable": False,
    "fourier_norm": False,
    "fourier_ignore_zero": True,
    "rope": True,
    "rope_clamp_floor_freq": True,
    "rope_clamp_floor_to_zero": True,
    "rope_theta": 10000.0,
}
#: Keys of the authors' ``olmo/config.py`` that change the position math only away from these values (their defaults);
#: the loader refuses any other value by name. Keys it maps (len_extra*, rope_floor_freq_ratio, rope_clamp_upper_freq,
#: fourier_*) are handled in ``olmo_fope_options``.
OLMO_NEUTRAL: dict[str, tuple[Any, str]] = {
    "pos_emb": (True, "no position encoding at all"),
    "alibi": (False, "ALiBi biases added to FoPE"),
    "rope_init_distribution": ("exponential", "a frequency ladder other than theta ** (-2i / d)"),
    "rope_no_pos": (False, "every position set to 1"),
    "rope_learnable": (False, "trained frequencies"),
    "rope_include_neg_freq": (False, "every other frequency negated"),
    "rope_init_floor_freq": (0.0, "frequencies remapped to [floor, upper]"),
    "rope_init_upper_freq": (1.0, "frequencies remapped to [floor, upper]"),
    "rope_zero_freq_ratio": (-1.0, "a forced number of zero frequencies"),
    "rope_clamp_to_linear": (False, "frequencies snapped to multiples of 2*pi/max_sequence_length"),
    "fourier_norm": (False, "coefficients normalised in the forward pass"),
    "fourier_separate_basis": (True, "one matrix shared by the cos and sin series"),
}
_OLMO_EXTENSIONS = ("PI", "YARN")
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

    Every key of their ``olmo/config.py`` that changes the position math is mapped or refused by name (a ValueError
    naming the key, its value and what is accepted); ``OLMO_NEUTRAL`` lists the keys accepted at one value only.
    Mapped: ``d_model // n_heads`` -> head_dim, ``max_sequence_length`` -> train_length, ``rope_theta`` -> theta,
    ``fourier_init_norm_gain`` -> sigma, ``fourier_dim`` (when above head_dim; ignored otherwise) -> frequency_dim,
    ``fourier_ignore_zero=False`` -> keep_zeroed (``d_out = head_dim / 2``), ``fourier_separate_head=False`` ->
    share_heads, ``fourier_learnable`` -> learnable, ``rope_clamp_floor_freq`` -> clip_floor, ``rope_floor_freq_ratio``
    and ``len_extra_before_clamp`` -> num_inv_freq, ``len_extra`` PI -> ``scaling={"type": "linear"}``, YARN ->
    ``scaling={"type": "yarn", ..., "temperature": False}`` (their YaRN has no attention temperature).
    ``fourier_init`` and ``len_extra_fourier_expand`` only chose initialisations, which loaded weights replace;
    ``rope_full_precision`` is accepted at any value (FoPE computes positions in float32, spec section 5).
    """
    config = _section(read_config(config), "model", "d_model")
    options = {**OLMO_DEFAULTS, **{key: value for key, value in config.items() if value is not None}}
    for key in ("d_model", "n_heads", "max_sequence_length"):
        if key not in options:
            raise KeyError(f"the OLMo config must give {key!r}; got keys {sorted(config)}")
    if not options["fourier"]:
        raise ValueError("the OLMo config has fourier=False: a RoPE model, with no FoPE coefficients to load")
    if not options["rope"]:
        raise ValueError("the OLMo config has rope=False: the authors' code builds no FoPE then; accepted: rope=True")
    for key, (neutral, meaning) in OLMO_NEUTRAL.items():
        if key in options and options[key] != neutral:
            raise _olmo_refusal(key, options[key], meaning, f"{key}={neutral!r}")

    num_heads = options["n_heads"]
    head_dim = options["d_model"] // num_heads
    length = options["max_sequence_length"]
    theta = float(options["rope_theta"])
    fourier_dim = options["fourier_dim"] or 0
    frequency_dim = fourier_dim if fourier_dim > head_dim else head_dim  # the authors' FourierEmbedding rule
    if frequency_dim % 2:
        raise ValueError(f"the OLMo config sets fourier_dim={fourier_dim}; accepted: an even number (or <= head_dim)")
    clip_floor = bool(options["rope_clamp_floor_freq"])
    if clip_floor and not options["rope_clamp_floor_to_zero"]:
        raise _olmo_refusal(
            "rope_clamp_floor_to_zero",
            options["rope_clamp_floor_to_zero"],
            "low frequencies raised to the floor instead of zeroed; the authors' code cannot build it either",
            "True with rope_clamp_floor_freq=True",
        )
    scaling, before_clamp = _olmo_extension(options, length)
    floor_ratio = float(options.get("rope_floor_freq_ratio", 1.0)) if clip_floor else 1.0
    if floor_ratio < 0:
        raise _olmo_refusal("rope_floor_freq_ratio", floor_ratio, "a negative floor", "a ratio >= 0")

    # The frequencies the authors' get_inv_freq clamps: scaled first when len_extra_before_clamp.
    frequencies, _ = scaled_frequencies(frequency_dim, theta, scaling if before_clamp else None)
    if options.get("rope_clamp_upper_freq", False):
        upper = math.pi * float(options.get("rope_upper_freq_ratio", 1.0))
        if not options.get("rope_clamp_upper_to_zero", True) or float(frequencies.max()) > upper:
            raise _olmo_refusal(
                "rope_clamp_upper_freq",
                True,
                f"frequencies above pi * rope_upper_freq_ratio = {upper:.4g} zeroed (the highest is "
                f"{float(frequencies.max()):.4g}); with rope_clamp_upper_to_zero=False the authors' code fails",
                "False, or an upper bound at or above every frequency with rope_clamp_upper_to_zero=True",
            )
    num_inv_freq = None
    if clip_floor and (floor_ratio != 1.0 or before_clamp):
        num_inv_freq = int((frequencies >= floor_frequency(length) * floor_ratio).sum())  # a prefix: decreasing
        if num_inv_freq == 0:
            raise ValueError(
                f"the OLMo config keeps no frequency above the floor {floor_ratio:g} * 2*pi/{length} "
                "(rope_floor_freq_ratio, len_extra_before_clamp); accepted: settings that keep at least one"
            )

    num_kv_heads = options.get("n_kv_heads") or (1 if options.get("multi_query_attention") else num_heads)
    separate_head = bool(options["fourier_separate_head"])
    if separate_head and num_kv_heads != num_heads:
        raise ValueError(
            f"the OLMo config has per-query-head coefficients (fourier_separate_head=True) with n_kv_heads="
            f"{num_kv_heads} < n_heads={num_heads}: each key would need one rotation per query head, while fope.FoPE "
            "keeps one per KV head"
        )
    result = {
        "head_dim": head_dim,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "train_length": length,
        "theta": theta,
        "sigma": float(options["fourier_init_norm_gain"]),
        "clip_floor": clip_floor,
        "output_dim": "official",
        "zero_pad": "official",
        "share_heads": not separate_head,
        "learnable": bool(options["fourier_learnable"]),
        "layout": "half",
    }
    if frequency_dim != head_dim:
        result["frequency_dim"] = frequency_dim
    if not options["fourier_ignore_zero"]:
        result["keep_zeroed"] = True  # input dim frequency_dim / 2 (zeroed ones constant), d_out = head_dim / 2
    if num_inv_freq is not None:
        result["num_inv_freq"] = num_inv_freq
    if scaling is not None:
        result["scaling"] = scaling
    return result


def _olmo_refusal(key: str, value: object, meaning: str, accepted: str) -> ValueError:
    return ValueError(
        f"the OLMo config sets {key}={value!r} ({meaning}), which fope.FoPE does not implement; accepted: {accepted}"
    )


def _olmo_extension(options: Mapping[str, Any], length: int) -> tuple[dict[str, Any] | None, bool]:
    """(FoPE ``scaling``, applied before the floor clamp) for the authors' ``len_extra*`` keys."""
    if not options.get("len_extra", False):
        return None, False
    kind = options.get("len_extra_type", "PI")
    if kind not in _OLMO_EXTENSIONS:
        raise _olmo_refusal(
            "len_extra_type", kind, "an extension the authors' model code does not apply", f"one of {_OLMO_EXTENSIONS}"
        )
    original = options.get("len_extra_orig_length", 0)
    if isinstance(original, bool) or not isinstance(original, int) or original <= 0:
        raise _olmo_refusal("len_extra_orig_length", original, "len_extra needs the original length", "a positive int")
    if kind == "PI":
        scaling: dict[str, Any] = {"type": "linear", "factor": length / original}  # theirs: w * orig / length
    else:
        extrapolation = float(options.get("len_extra_yarn_factor", 1.0))
        if extrapolation != 1.0:
            raise _olmo_refusal("len_extra_yarn_factor", extrapolation, "YaRN's extrapolation mask scaled", "1.0")
        scaling = {
            "type": "yarn",
            "factor": float(options.get("len_extra_yarn_scale", 16.0)),
            "original_max_position": original,
            "beta_fast": float(options.get("len_extra_yarn_beta_fast", 32.0)),
            "beta_slow": float(options.get("len_extra_yarn_beta_slow", 1.0)),
            "truncate": True,
            "temperature": False,
        }
    return scaling, bool(options.get("len_extra_before_clamp", False))


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
    partial = config.get("partial_rotary_factor")
    partial = rope.get("partial_rotary_factor") if partial is None else partial
    partial = 1.0 if partial is None else partial
    if partial != 1.0:
        raise ValueError(
            f"the Intern config sets partial_rotary_factor={partial!r}; vLLM and xtuner pair dimension j with "
            "j + head_dim/2 across the whole head, so Intern FoPE is defined for partial_rotary_factor=1.0 only"
        )
    rotary_dim = head_dim
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
        "layout": "half",
    }


def load_intern_fope(
    config: Mapping[str, Any] | str | PathLike[str], weights: Source, *, zero_pad: str = "official"
) -> FoPE:
    """The model-level ``FoPE`` of an Intern-stack checkpoint, ``rotary_emb.{cos,sin}_coef`` loaded.

    Coefficients are ``(Hkv, K, K)`` per KV head (``fope_sep_head=True``) or the 2-D ``(K, K)`` xtuner stores when
    all heads share one set (a ``(1, K, K)`` tensor is accepted too). Partial rotary is refused.

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
    stores square coefficients on plain RoPE frequencies in the half layout over the whole head with ``c = s = 1``
    pairs: ``(Hkv, K, K)`` per KV head, or the 2-D ``(K, K)`` tensor xtuner reads when heads share one set.
    """
    modules = [source] if isinstance(source, FoPE) else fope_modules(source)
    if not modules and isinstance(getattr(getattr(source, "config", None), "fope", None), Mapping):
        from fope.integrations.transformers import fope_modules as converted_modules  # a converted HF model

        modules = converted_modules(source)
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
        "rotary_dim": (fope.rotary_dim, fope.head_dim, "rotation over the whole head (vLLM/xtuner pair j, j + D/2)"),
        "frequency_dim": (fope.frequency_dim, fope.rotary_dim, "the frequencies theta ** (-2i / head_dim)"),
        "keep_zeroed": (fope.keep_zeroed, False, "only the kept frequencies in the series"),
    }
    for name, (value, needed, meaning) in requirements.items():
        if value != needed:
            raise ValueError(f"the Intern layout needs {meaning}; this FoPE has {name}={value!r}")
    entries = {"fope_init_factor": fope.sigma, "fope_sep_head": not fope.share_heads, "num_inv_freq": fope.num_kept}
    tensors = {}
    for name in ("cos_coef", "sin_coef"):
        tensor = getattr(fope, name).detach().to("cpu", torch.float32)
        if fope.share_heads:
            tensor = tensor[0]  # xtuner's shared buffer is the 2-D (K, K) tensor
        tensors[f"{prefix}rotary_emb.{name}"] = tensor.contiguous().clone()
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
