"""FoPE in Hugging Face ``transformers`` causal LMs of the Llama family: ``convert``, ``from_pretrained``, ``save``.

A converted model is an instance of ``FoPEForCausalLM``, a subclass of the model's own class defined in
``fope.integrations.modeling_fope``: that file rotates q and k with FoPE through PyTorch hooks on the layer's own
projections and norms (no transformers code is copied, read or rebound), and ``save_pretrained`` writes it next to the
weights with an ``auto_map``, so the folder loads with plain ``AutoModelForCausalLM.from_pretrained(dir,
trust_remote_code=True)`` wherever transformers is installed.

Before anything changes, ``convert`` checks two things on the model itself: that ``fope.RoPE`` with the head_dim,
theta, rotary dim and scaling read from the config reproduces the cos/sin of the model's ``rotary_emb`` (which also
gives the layout), and that the first attention layer with FoPE's hooks fed the model's own RoPE gives the layer's
original output. An architecture whose attention FoPE does not understand fails there, loudly.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import shutil
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fope.checks import check_int
from fope.device import model_device
from fope.integrations.modeling_fope import (
    CONFIG_KEY,
    LAYOUTS,
    MODEL_TYPE,
    FourierFeatures,
    PositionlessRotary,
    attach,
    attention_layers,
    classes_for,
)
from fope.positions import FoPE, RoPE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "CONFIG_KEY",
    "FROM_MODEL",
    "check_out_dir",
    "convert",
    "convert_directory",
    "convert_options",
    "fope_modules",
    "from_pretrained",
    "is_converted",
    "is_converted_directory",
    "model_rope",
]

#: ``FoPE`` arguments that ``convert`` reads from the model; passing one is an error.
FROM_MODEL = ("head_dim", "num_heads", "num_kv_heads", "theta", "layout", "rotary_dim")
_PROBE_LENGTH = 48
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
# Relative error allowed between the first attention layer's original output and its output with FoPE's hooks fed the
# model's own RoPE: float32 rounding, or one rounding of the rotated q/k in a 16-bit model.
_PROBE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
_PROBE_TOLERANCE_16BIT = 3e-2


def convert(
    model: PreTrainedModel,
    train_length: int,
    *,
    sigma: float = 0.3,
    share_layers: bool = False,
    seed: int | None = None,
    inplace: bool = True,
    **fope_options: Any,
) -> PreTrainedModel:
    """Switch a Llama-family causal LM from RoPE to FoPE with fresh coefficients; returns it (a copy if not inplace).

    ``train_length`` is the context the model will be trained at (FoPE's floor ``2*pi/train_length``); ``fope_options``
    are ``fope.FoPE``'s (``clip_floor``, ``fourier``, ``output_dim``, ``zero_pad``, ``share_heads``, ``learnable``,
    ``num_inv_freq``, ``scaling``). Heads, head_dim, theta, partial rotary and layout come from the model, and its RoPE
    scaling (linear, YaRN) carries over unless ``scaling`` is given. ``share_layers=True`` uses one coefficient set for
    all layers (Intern stack) instead of one per layer (the authors'); ``seed`` makes the coefficients reproducible.
    The options are recorded in ``model.config.fope``; ``save_pretrained`` then writes a folder that loads with
    ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)``. A model that already has FoPE is refused:
    its coefficients are never silently redrawn.
    """
    for name, flag in (("share_layers", share_layers), ("inplace", inplace)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    train_length = check_int("train_length", train_length, minimum=1)
    _check_option_names(fope_options)
    _check_convertible(model)
    if not inplace:
        model = copy.deepcopy(model)
    base, attentions = attention_layers(model)
    structure = _structure(base.config, attentions[0])
    scaling, same_frequencies = _resolve_scaling(base.config, fope_options)
    layout = _rope_layout(base, structure, scaling, check_frequencies=same_frequencies)
    options = {"train_length": train_length, "sigma": sigma, **fope_options, "scaling": scaling}
    build = functools.partial(FoPE, **structure, **options, layout=layout)
    fopes = [build(seed=seed)] if share_layers else [build(seed=s) for s in _layer_seeds(seed, len(attentions))]
    layout = _probe_attention(model, base, attentions[0], structure, layout)  # the model is unchanged after it
    # Nothing has changed so far: a bad option or an unsupported architecture leaves the model as it was.
    device = model_device(attentions[0])
    attach(model, [_features_of(fope).to(device) for fope in fopes], layout=layout, shared=share_layers)
    config_class, model_class = classes_for(type(model).__name__)
    model.__class__, model.config.__class__ = model_class, config_class
    record = {**_option_defaults(), **options, "seed": seed, "share_layers": share_layers}
    record["base_architecture"] = model_class.__mro__[1].__name__
    record["features"] = _feature_spec(fopes[0], share_layers)
    setattr(model.config, CONFIG_KEY, record)
    return model


def is_converted(model_or_config: Any) -> bool:
    """Whether a model (or its config) already has FoPE from ``convert`` / ``fope export``."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "model_type", None) == MODEL_TYPE or isinstance(getattr(config, CONFIG_KEY, None), Mapping)


def from_pretrained(path: str | PathLike[str], **kwargs: Any) -> PreTrainedModel:
    """Load a folder saved from a converted model with fope's copy of its modeling code (no remote code run).

    ``kwargs`` go to transformers' ``from_pretrained`` (``dtype``, ``device_map``, ``attn_implementation``, ...). The
    result equals ``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)``; missing FoPE tensors are an
    error, never a silent fresh initialisation.
    """
    directory = Path(path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"path must be a local model directory (written by save_pretrained); got {str(path)!r}")
    record = _read_record(config_file)
    config_class, model_class = classes_for(record["base_architecture"])
    config = kwargs.pop("config", None) or config_class.from_pretrained(directory)
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__} (read from {config_file}); got {type(config)}")
    return model_class.from_pretrained(directory, config=config, **kwargs)


def convert_directory(
    src_dir: str | PathLike[str],
    out_dir: str | PathLike[str],
    train_length: int,
    *,
    overwrite: bool = False,
    **options: Any,
) -> PreTrainedModel:
    """``fope convert``: load a local model directory, ``convert`` it, save it to ``out_dir``; returns the model.

    ``options`` are ``convert``'s. Top-level files of ``src_dir`` that are not weights (tokenizer, README, ...) are
    copied unchanged. A non-empty ``out_dir`` is refused unless ``overwrite``; a folder already converted is refused.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    source, target = Path(src_dir), Path(out_dir)
    config_file = source / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"src_dir must be a model directory with a config.json; got {str(src_dir)!r}")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"out_dir must differ from src_dir; got {str(out_dir)!r} for both")
    check_out_dir(target, overwrite)
    if is_converted_directory(source):
        raise ValueError(
            f"{src_dir} is already a FoPE model: converting again would draw new coefficients over its trained ones. "
            "Convert the original RoPE model, or copy this folder"
        )
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    train_length = check_int("train_length", train_length, minimum=1)
    _check_option_names({k: v for k, v in options.items() if k not in ("sigma", "share_layers", "seed")})
    model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype="auto", local_files_only=True)
    convert(model, train_length, **options)
    if target.exists() and overwrite:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    model.save_pretrained(target)
    for file in sorted(source.iterdir()):
        is_weights = file.suffix in _WEIGHT_SUFFIXES or file.name.endswith(".index.json")
        if file.is_file() and not is_weights and not (target / file.name).exists():
            shutil.copy2(file, target / file.name)
    return model


def check_out_dir(out_dir: str | PathLike[str], overwrite: bool) -> Path:
    """``out_dir`` as a Path, if it is absent, empty, or ``overwrite`` allows replacing it; else FileExistsError."""
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False; got {overwrite!r}")
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise FileExistsError(f"out_dir {str(out_dir)!r} exists and is not empty; pass --overwrite to replace it")
    return target


def convert_options() -> list[str]:
    """The keyword options ``convert`` accepts besides ``train_length`` and ``inplace``."""
    return sorted({*_option_defaults(), "share_layers"})


def fope_modules(model: nn.Module) -> list[FoPE]:
    """``fope.FoPE`` copies of a converted model's coefficient sets (one per layer, or the one shared), as they are now.

    They are rebuilt from ``config.fope`` and hold copies of the model's tensors (changing them changes nothing in the
    model); [] for a model that is not converted.
    """
    for module in model.modules():  # the transformers model itself, or inside a wrapper such as HFCausalLM
        record = getattr(getattr(module, "config", None), CONFIG_KEY, None)
        if isinstance(record, Mapping) and hasattr(module, "base_model"):
            break
    else:
        return []
    base, attentions = attention_layers(module)
    features = [base.rotary_emb.fope] if record["share_layers"] else [attention.fope for attention in attentions]
    structure = _structure(base.config, attentions[0])
    options = {key: record[key] for key in ("train_length", *_option_defaults()) if key in record}
    layout = record["features"]["layout"]
    modules = []
    for feature in features:
        fope = FoPE(**structure, **options, layout=layout)
        with torch.no_grad():
            for name in ("inv_freq", "cos_coef", "sin_coef"):
                saved = getattr(feature, name)
                if name == "inv_freq":  # keep_zeroed: the constant terms are stored as zero frequencies
                    saved = saved[: fope.num_kept]
                if getattr(fope, name).shape != saved.shape:
                    raise ValueError(
                        f"config.fope {options} gives {name} of shape {tuple(getattr(fope, name).shape)}; the model "
                        f"holds {tuple(saved.shape)}"
                    )
                getattr(fope, name).copy_(saved.detach().to("cpu", torch.float32))
        modules.append(fope.to(saved.device))
    return modules


def model_rope(model: PreTrainedModel) -> RoPE:
    """A ``fope.RoPE`` equal to the RoPE of a (not converted) Llama-family model, checked on probe positions.

    Heads, theta, rotary dim and scaling come from the config as in ``convert``; an architecture or RoPE type that
    ``fope.RoPE`` does not reproduce is an error.
    """
    _check_convertible(model)
    base, attentions = attention_layers(model)
    structure = _structure(base.config, attentions[0])
    scaling, unmapped = _model_scaling(base.config)
    if unmapped is not None:
        raise ValueError(unmapped)
    layout = _rope_layout(base, structure, scaling, check_frequencies=True)
    return RoPE(structure["head_dim"], structure["theta"], layout, structure["rotary_dim"], scaling)


def _check_convertible(model: nn.Module) -> None:
    if is_converted(model) or isinstance(
        getattr(getattr(model, "base_model", model), "rotary_emb", None), PositionlessRotary
    ):
        raise ValueError(
            f"this {type(model).__name__} already uses FoPE; converting again would draw new coefficients over its "
            "own. Convert the original RoPE model"
        )
    attention_layers(model)


def _read_record(config_file: Path) -> dict[str, Any]:
    try:
        values = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_file} is not readable JSON: {error}") from None
    record = values.get(CONFIG_KEY) if isinstance(values, dict) else None
    if not isinstance(record, dict) or "base_architecture" not in record:
        raise ValueError(
            f"{config_file} has no {CONFIG_KEY!r} entry with a base_architecture: it was not saved from a model "
            "converted by fope; load it with transformers and call fope.integrations.transformers.convert"
        )
    return record


def is_converted_directory(path: str | PathLike[str]) -> bool:
    """Whether the model folder ``path`` holds a model converted by fope (its config.json says so)."""
    return _is_converted_file(Path(path) / "config.json")


def _is_converted_file(config_file: Path) -> bool:
    try:
        values = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and (values.get("model_type") == MODEL_TYPE or CONFIG_KEY in values)


def _option_defaults() -> dict[str, Any]:
    """``FoPE``'s keyword defaults for the options ``convert`` accepts."""
    parameters = inspect.signature(FoPE.__init__).parameters
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if parameter.kind == parameter.KEYWORD_ONLY and parameter.default is not parameter.empty
        if name not in FROM_MODEL
    }


def _check_option_names(fope_options: Mapping[str, Any]) -> None:
    accepted = sorted(set(_option_defaults()) - {"sigma", "seed"})
    for name in fope_options:
        if name in FROM_MODEL:
            raise TypeError(
                f"convert reads {name!r} from the model's config; do not pass {name}={fope_options[name]!r}"
            )
        if name not in accepted:
            raise TypeError(f"convert got an unknown FoPE option {name!r}; accepted: {accepted}")


def _rope_parameters(config: Any) -> dict[str, Any]:
    """The model's RoPE settings: ``rope_parameters``, or 4.x-style ``rope_theta`` and ``rope_scaling``."""
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, Mapping) and parameters:
        if "rope_theta" not in parameters:
            raise ValueError(
                f"{type(config).__name__}.rope_parameters has no single 'rope_theta' (RoPE per layer type?): "
                f"{dict(parameters)}; convert supports one RoPE for all layers"
            )
        return dict(parameters)
    parameters = dict(getattr(config, "rope_scaling", None) or {})
    parameters["rope_type"] = parameters.get("rope_type", parameters.get("type", "default"))
    parameters["rope_theta"] = getattr(config, "rope_theta", 10000.0)
    if getattr(config, "partial_rotary_factor", None) is not None:
        parameters.setdefault("partial_rotary_factor", config.partial_rotary_factor)
    return parameters


def _structure(config: Any, attention: nn.Module) -> dict[str, Any]:
    """FoPE's structural arguments (``FROM_MODEL`` except the layout) read from the config."""
    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(attention, "head_dim", None) or getattr(config, "head_dim", None)
    head_dim = head_dim or config.hidden_size // num_heads
    parameters = _rope_parameters(config)
    factor = parameters.get("partial_rotary_factor", 1.0)
    rotary_dim = int(head_dim * factor)
    if rotary_dim % 2:
        raise ValueError(f"partial_rotary_factor={factor} gives an odd rotary dimension {rotary_dim} of {head_dim}")
    return {
        "head_dim": head_dim,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "theta": float(parameters["rope_theta"]),
        "rotary_dim": rotary_dim,
    }


def _model_scaling(config: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the model's RoPE scaling as a ``fope`` scaling dict, None) or (None, why it has no equivalent here)."""
    parameters = _rope_parameters(config)
    rope_type = parameters.get("rope_type", "default")
    if rope_type == "default":
        return None, None
    if rope_type == "linear":
        return {"type": "linear", "factor": parameters["factor"]}, None
    unmapped = {key for key in ("mscale", "mscale_all_dim") if parameters.get(key) is not None}
    if rope_type == "yarn" and not unmapped:
        original = parameters.get("original_max_position_embeddings") or config.max_position_embeddings
        scaling = {"type": "yarn", "factor": parameters["factor"], "original_max_position": original}
        for key in ("beta_fast", "beta_slow", "attention_factor", "truncate"):
            if parameters.get(key) is not None:
                scaling[key] = parameters[key]
        # the model was trained with transformers' YaRN, temperature included: FoPE keeps it (fope's FoPE+YaRN
        # default, the authors', has none; pass scaling= to choose)
        scaling["temperature"] = True
        return scaling, None
    detail = f" with {sorted(unmapped)}" if unmapped else ""
    return None, (
        f"the model's RoPE type {rope_type!r}{detail} has no fope equivalent (mapped: 'default', 'linear', 'yarn'); "
        "pass scaling=None to convert with plain RoPE frequencies, or scaling={'type': ...} with one of "
        "fope.positions.SCALING_SCHEMES"
    )


def _resolve_scaling(config: Any, fope_options: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """FoPE's frequency scaling (the model's own unless ``scaling`` is passed), and whether it is the model's own."""
    model_scaling, unmapped = _model_scaling(config)
    if "scaling" in fope_options:
        scaling = fope_options["scaling"]
        return scaling, unmapped is None and scaling == model_scaling
    if unmapped is not None:
        raise ValueError(unmapped)
    return model_scaling, True


def _model_pairs(rotary: nn.Module, position_ids: Tensor, head_dim: int) -> tuple[Tensor, Tensor, str]:
    """The model's RoPE as one float32 value per pair ``(B, T, P)``, and the layout its cos/sin are laid out in."""
    cos, sin = rotary(torch.zeros(1, position_ids.shape[-1], head_dim), position_ids)
    cos, sin = cos.float(), sin.float()
    half = cos.shape[-1] // 2
    if torch.equal(cos[..., :half], cos[..., half:]) and torch.equal(sin[..., :half], sin[..., half:]):
        return cos[..., :half], sin[..., :half], "half"
    if torch.equal(cos[..., ::2], cos[..., 1::2]) and torch.equal(sin[..., ::2], sin[..., 1::2]):
        return cos[..., ::2], sin[..., ::2], "interleaved"
    raise TypeError(f"the model's rotary_emb returns cos/sin {tuple(cos.shape)} in a layout convert cannot read")


def _fresh_rotary(base: nn.Module) -> nn.Module:
    """A float32 CPU copy of the model's ``rotary_emb`` (whatever the model's dtype and device)."""
    rotary = copy.deepcopy(base.rotary_emb).to("cpu")
    for name, buffer in rotary.named_buffers():
        if "inv_freq" in name and buffer.dtype != torch.float32:
            raise TypeError(
                f"the model's rotary_emb holds {name} in {buffer.dtype}: its frequencies were rounded; load the model "
                "in float32 (or with dtype=..., which keeps them) before converting"
            )
    return rotary


def _rope_layout(
    base: nn.Module, structure: Mapping[str, Any], scaling: Mapping[str, Any] | None, *, check_frequencies: bool
) -> str:
    """The layout of the model's own RoPE, after checking that ``fope.RoPE`` reproduces its frequencies (if asked)."""
    positions = torch.tensor([0, 1, 2, 3, 7, 31, 100, 1000, 4095])
    cos, sin, layout = _model_pairs(_fresh_rotary(base), positions.unsqueeze(0), structure["head_dim"])
    if cos.shape[-1] != structure["rotary_dim"] // 2:
        raise ValueError(
            f"{type(base.rotary_emb).__name__} rotates {cos.shape[-1]} pairs; the config gives rotary_dim="
            f"{structure['rotary_dim']} (head_dim={structure['head_dim']} times partial_rotary_factor)"
        )
    if check_frequencies:
        rope = RoPE(structure["head_dim"], structure["theta"], layout, structure["rotary_dim"], scaling)
        ours_cos, ours_sin = (feature.squeeze(1) for feature in rope.features(positions))
        if not (torch.allclose(ours_cos, cos, atol=2e-3) and torch.allclose(ours_sin, sin, atol=2e-3)):
            raise ValueError(
                f"fope.RoPE with theta={structure['theta']:g}, rotary_dim={structure['rotary_dim']}, "
                f"scaling={scaling} does not reproduce {type(base.rotary_emb).__name__}: the config does not describe "
                "this model's RoPE in a way convert understands; pass scaling= to choose FoPE's frequencies yourself"
            )
    return layout


class _ModelRoPE(nn.Module):
    """The model's own RoPE as FoPE-style features: what the probe feeds FoPE's hooks."""

    def __init__(self, rotary: nn.Module, head_dim: int) -> None:
        super().__init__()
        self.rotary, self.head_dim = rotary, head_dim

    def features(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        cos, sin, _ = _model_pairs(self.rotary, position_ids.cpu(), self.head_dim)
        return cos.unsqueeze(1).to(position_ids.device), sin.unsqueeze(1).to(position_ids.device)


class _Captured(Exception):
    def __init__(self, output: Tensor) -> None:
        super().__init__()
        self.output = output


def _probe_attention(
    model: nn.Module, base: nn.Module, attention: nn.Module, structure: Mapping[str, Any], layout: str
) -> str:
    """The layout in which FoPE's hooks fed the model's own RoPE reproduce the first attention layer; else an error.

    Runs the model on a short random prompt up to that layer: as it is, then with the hooks (cos = 1, sin = 0 in the
    architecture's rotation, the rotation done by the hooks on its q/k) in the layout its cos/sin suggest, then in
    the other (GLM lays cos/sin out in halves and rotates interleaved pairs). The model is left as it was.
    """

    def capture(module: nn.Module, args: tuple, output: Any) -> None:
        raise _Captured(output[0] if isinstance(output, tuple) else output)

    def first_attention() -> Tensor:
        handle = attention.register_forward_hook(capture)
        try:
            model(input_ids=ids, use_cache=False)
        except _Captured as captured:
            return captured.output.detach().float()
        finally:
            handle.remove()
        raise TypeError(f"the model's forward never ran its first {type(attention).__name__}")

    device = model_device(attention)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, base.config.vocab_size, (1, _PROBE_LENGTH), generator=generator).to(device)
    probe = _ModelRoPE(_fresh_rotary(base), structure["head_dim"])
    tolerance = _PROBE_TOLERANCE.get(next(attention.parameters()).dtype, _PROBE_TOLERANCE_16BIT)
    errors = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = first_attention()
            for candidate in (layout, *(other for other in LAYOUTS if other != layout)):
                detach = attach(model, [probe], layout=candidate, shared=True)
                try:
                    actual = first_attention()
                finally:
                    detach()
                errors[candidate] = float((actual - expected).norm() / expected.norm().clamp_min(1e-30))
                if errors[candidate] <= tolerance:
                    return candidate
    finally:
        model.train(was_training)
    raise TypeError(
        f"{type(attention).__name__} with FoPE's hooks fed the model's own RoPE does not reproduce its output in "
        f"either layout (relative errors {', '.join(f'{k} {v:.1e}' for k, v in errors.items())}, tolerance "
        f"{tolerance:g}): FoPE does not support this architecture"
    )


def _features_of(fope: FoPE) -> FourierFeatures:
    """The ``FourierFeatures`` (the modeling file's module) holding ``fope``'s frequencies and coefficients."""
    module = FourierFeatures(
        **{k: v for k, v in _feature_spec(fope, False).items() if k not in ("share_layers", "layout")}
    )
    with torch.no_grad():
        # keep_zeroed: the zeroed frequencies stay in the series as constant terms, i.e. frequency 0
        module.inv_freq.copy_(F.pad(fope.inv_freq, (0, fope.num_terms - fope.num_kept)))
        module.cos_coef.copy_(fope.cos_coef)
        module.sin_coef.copy_(fope.sin_coef)
    return module


def _feature_spec(fope: FoPE, share_layers: bool) -> dict[str, Any]:
    """``config.fope["features"]``: what the modeling file needs to rebuild ``fope``'s modules."""
    return {
        "share_layers": share_layers,
        "num_coef_heads": fope.num_coef_heads,
        "num_kept": fope.num_terms,
        "output_dim": fope.output_dim,
        "rotary_dim": fope.rotary_dim,
        "zero_pad": fope.zero_pad,
        "attention_factor": float(fope.attention_factor),
        "layout": fope.layout,
        "learnable": fope.learnable,
    }


def _layer_seeds(seed: int | None, num_layers: int) -> list[int | None]:
    """Distinct reproducible seeds for the layers' coefficients (all None, the global RNG, when ``seed`` is None)."""
    if seed is None:
        return [None] * num_layers
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    return [int(value) for value in torch.randint(0, 2**62, (num_layers,), generator=generator)]
