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
import os
import shutil
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from fope.checks import check_int
from fope.device import model_device
from fope.errors import FopeError
from fope.files import publish_directory
from fope.integrations.modeling_fope import (
    CONFIG_KEY,
    MODEL_TYPE,
    FourierFeatures,
    PositionlessRotary,
    attach,
    attention_layers,
    classes_for,
)
from fope.integrations.rope_check import (
    model_scaling,
    model_structure,
    probe_attention,
    resolve_scaling,
    rope_layout,
)
from fope.positions import FoPE, RoPE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "CONFIG_KEY",
    "FROM_MODEL",
    "check_model_out_dir",
    "convert",
    "convert_directory",
    "convert_options",
    "fope_modules",
    "from_pretrained",
    "is_converted",
    "is_converted_directory",
    "model_rope",
    "write_out_dir",
]

#: ``FoPE`` arguments that ``convert`` reads from the model; passing one is an error.
FROM_MODEL = ("head_dim", "num_heads", "num_kv_heads", "theta", "layout", "rotary_dim")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


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
    structure = model_structure(base.config, attentions[0])
    scaling, same_frequencies = resolve_scaling(base.config, fope_options)
    layout = rope_layout(base, structure, scaling, check_frequencies=same_frequencies)
    options = {"train_length": train_length, "sigma": sigma, **fope_options, "scaling": scaling}
    build = functools.partial(FoPE, **structure, **options, layout=layout)
    fopes = [build(seed=seed)] if share_layers else [build(seed=s) for s in _layer_seeds(seed, len(attentions))]
    layout = probe_attention(model, base, attentions[0], structure, layout)  # the model is unchanged after it
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
    check_safetensors_files(directory)  # transformers' own error for a truncated file names no file
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
    copied unchanged. A non-empty ``out_dir`` is refused unless ``overwrite``, one that is, holds or lies inside
    ``src_dir`` always (``check_model_out_dir``); a folder already converted is refused. ``out_dir`` is replaced in one
    rename once the converted model is written (``write_out_dir``).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    source, target = Path(src_dir), Path(out_dir)
    config_file = source / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"src_dir must be a model directory with a config.json; got {str(src_dir)!r}")
    check_model_out_dir(target, overwrite, inputs={"SRC_DIR": source})
    if is_converted_directory(source):
        raise ValueError(
            f"{src_dir} is already a FoPE model: converting again would draw new coefficients over its trained ones. "
            "Convert the original RoPE model, or copy this folder"
        )
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    train_length = check_int("train_length", train_length, minimum=1)
    _check_option_names({k: v for k, v in options.items() if k not in ("sigma", "share_layers", "seed")})
    check_safetensors_files(source)
    model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype="auto", local_files_only=True)
    convert(model, train_length, **options)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        for file in sorted(source.iterdir()):
            is_weights = file.suffix in _WEIGHT_SUFFIXES or file.name.endswith(".index.json")
            if file.is_file() and not is_weights and not (folder / file.name).exists():
                shutil.copy2(file, folder / file.name)

    write_out_dir(target, write)
    return model


def check_safetensors_files(directory: str | PathLike[str]) -> None:
    """Every ``*.safetensors`` file of ``directory`` opens: a truncated or corrupt one is a ``ValueError`` naming it
    (transformers would raise safetensors' own error, which names no file)."""
    from safetensors import safe_open

    for file in sorted(Path(directory).glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own error type for a malformed file
            reason = " ".join(str(error).split())
            raise ValueError(
                f"{file} is not a readable safetensors file ({reason}): it may be truncated; copy or save it again"
            ) from error


def check_model_out_dir(
    out_dir: str | PathLike[str], overwrite: bool, inputs: Mapping[str, str | PathLike[str]] | None = None
) -> Path:
    """``out_dir`` as a Path, if it is absent, empty, or ``overwrite`` allows replacing it, and apart from ``inputs``.

    ``inputs`` (name -> path, e.g. ``{"RUN_DIR": run_dir}``) are what the command reads: an ``out_dir`` that is one of
    them, lies inside one or contains one (compared after resolving symlinks) is a ``FopeError`` whatever
    ``overwrite`` says, since writing it would replace what is read. A non-empty ``out_dir`` is a FileExistsError
    unless ``overwrite``.
    """
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False; got {overwrite!r}")
    target = Path(out_dir)
    resolved = target.resolve()
    for name, path in (inputs or {}).items():
        source = Path(path).resolve()
        if resolved == source:
            relation = "is"
        elif resolved.is_relative_to(source):
            relation = "is inside"
        elif source.is_relative_to(resolved):
            relation = "contains"
        else:
            continue
        where = "" if (str(target), str(path)) == (str(resolved), str(source)) else f" ({resolved}, {source})"
        raise FopeError(
            f"out_dir {str(out_dir)!r} {relation} {name} {str(path)!r}{where}: writing it would replace or change "
            f"what is read; choose an output folder outside {name}"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        what = "exists and is not empty" if target.is_dir() else "is a file, not a folder"
        raise FileExistsError(f"out_dir {str(out_dir)!r} {what}; pass --overwrite to replace it")
    return target


def write_out_dir(out_dir: str | PathLike[str], write: Callable[[Path], None]) -> Path:
    """``write(folder)`` into a temporary sibling of ``out_dir``, then that folder replaces ``out_dir`` in one rename.

    Call ``check_model_out_dir`` first: whatever is at ``out_dir`` is replaced. Until the rename it is untouched, so a
    failed write leaves it as it was.
    """
    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir()
        write(staging)
        publish_directory(staging, target, replace=target.exists() or target.is_symlink())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Path(out_dir)


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
    structure = model_structure(base.config, attentions[0])
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
    structure = model_structure(base.config, attentions[0])
    scaling, unmapped = model_scaling(base.config)
    if unmapped is not None:
        raise ValueError(unmapped)
    layout = rope_layout(base, structure, scaling, check_frequencies=True)
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


def load_tokenizer(path: str | PathLike[str]) -> Any:
    """``AutoTokenizer.from_pretrained`` on a local folder, running none of the folder's code.

    ``trust_remote_code=False``: the tokenizers fope writes and reads (fast ``tokenizer.json`` ones) are no code. Left
    unset, transformers asks on a terminal whether to run the code a FoPE folder's config.json names, and waits 15 s.
    A FoPE folder's config is read with fope's copy of its class (as ``from_pretrained`` does), so transformers does
    not warn about an unknown model type. A folder whose tokenizer is itself remote code is refused by transformers.
    """
    from transformers import AutoTokenizer

    directory = Path(path)
    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if is_converted_directory(directory):
        config_class, _ = classes_for(_read_record(directory / "config.json")["base_architecture"])
        options["config"] = config_class.from_pretrained(directory)
    return AutoTokenizer.from_pretrained(str(directory), **options)


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


def _features_of(fope: FoPE) -> FourierFeatures:
    """The ``FourierFeatures`` (the modeling file's module) holding ``fope``'s frequencies and coefficients."""
    module = FourierFeatures(**{k: v for k, v in _feature_spec(fope, False).items() if k != "share_layers"})
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
