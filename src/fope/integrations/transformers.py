"""FoPE in Hugging Face ``transformers`` causal LMs of the Llama family: ``convert`` and ``from_pretrained``.

How it works. Each attention layer becomes an instance of a subclass of its own class whose ``forward`` runs
transformers' own forward code with one global name rebound: the module-level ``apply_rotary_pos_emb`` it calls becomes
FoPE's rotation (``fope.positions.apply_rotary``), and it receives FoPE's per-pair features instead of RoPE's cos/sin.
Projections, q/k norms, the KV cache, sliding windows and the attention implementation (eager, sdpa, flash) stay
transformers' code. Per-layer coefficients (the authors' setting) live in each attention layer (``...self_attn.fope``)
and are computed from the ``position_ids`` the decoder layer passes it; one set shared by all layers (the Intern stack)
replaces the model-level ``rotary_emb`` (``model.rotary_emb.fope``) and is computed once per forward.

Before replacing anything, ``convert`` runs the model's own ``rotary_emb`` and ``apply_rotary_pos_emb`` on random q/k
and checks that ``fope.RoPE`` with the head_dim, theta, rotary dim, scaling and layout it read from the config
reproduces them, so an architecture whose RoPE it does not understand fails loudly instead of converting wrongly.
"""

from __future__ import annotations

import copy
import dis
import functools
import inspect
import logging
import shutil
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from fope.integrations.checkpoints import fope_modules, named_fope_modules, read_tensors
from fope.positions import FoPE, RoPE, apply_rotary
from fope.positions._checks import LAYOUTS, check_int

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "CONFIG_KEY",
    "FROM_MODEL",
    "FoPEFeatures",
    "SharedFoPE",
    "convert",
    "convert_directory",
    "convert_options",
    "fope_modules",
    "from_pretrained",
    "model_rope",
]

#: The entry of ``config.json`` (``model.config.fope``) that records the options of ``convert``.
CONFIG_KEY = "fope"
#: ``FoPE`` arguments that ``convert`` reads from the model; passing one is an error.
FROM_MODEL = ("head_dim", "num_heads", "num_kv_heads", "theta", "layout", "rotary_dim")
#: The name transformers' attention code calls to rotate q and k (resolved in its module's globals at call time).
ROTARY_FUNCTION = "apply_rotary_pos_emb"
_COEFFICIENTS = ("cos_coef", "sin_coef")
_PROBE_LENGTH = 64
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


class FoPEFeatures(NamedTuple):
    """FoPE's per-pair ``(cos, sin)``, float32 ``(B|1, Hc, T, P)``: what a converted attention layer rotates with."""

    cos: Tensor
    sin: Tensor


class SharedFoPE(nn.Module):
    """Stands in for the model-level ``rotary_emb``: features of one FoPE shared by all layers, once per forward."""

    def __init__(self, fope: FoPE) -> None:
        super().__init__()
        self.fope = fope

    def forward(self, x: Tensor, position_ids: Tensor, *args: Any, **kwargs: Any) -> FoPEFeatures:
        return FoPEFeatures(*self.fope.features(position_ids))


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
    The options are recorded in ``model.config.fope`` so that ``save_pretrained`` / ``from_pretrained`` round-trip.
    """
    for name, flag in (("share_layers", share_layers), ("inplace", inplace)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    _check_option_names(fope_options)
    _attention_layers(model)  # fail before copying
    if not inplace:
        model = copy.deepcopy(model)
    base, attentions = _attention_layers(model)
    model_rotation = _model_rotation(type(attentions[0]))
    structure = _structure(base.config, attentions[0])
    scaling, same_frequencies = _resolve_scaling(base.config, fope_options)
    layout = _probe_rotary(base, model_rotation, structure, scaling, check_frequencies=same_frequencies)
    attention_class = _fope_attention_class(type(attentions[0]), layout)

    options = {"train_length": train_length, "sigma": sigma, **fope_options, "scaling": scaling}
    build = functools.partial(FoPE, **structure, **options, layout=layout)
    shared = build(seed=seed) if share_layers else None
    per_layer = [None if share_layers else build(seed=s) for s in _layer_seeds(seed, len(attentions))]
    # Nothing has changed so far: a bad option leaves the model as it was.
    for attention, fope in zip(attentions, per_layer, strict=True):
        attention.__class__ = attention_class
        attention.fope = None if fope is None else fope.to(_device_of(attention))
    if shared is not None:
        base.rotary_emb = SharedFoPE(shared.to(_device_of(attentions[0])))
    record = {**_option_defaults(), **options, "seed": seed, "share_layers": share_layers}
    setattr(model.config, CONFIG_KEY, record)
    return model


def from_pretrained(path: str | PathLike[str], **kwargs: Any) -> PreTrainedModel:
    """Load a model saved after ``convert`` from a local directory: the recorded options and the saved coefficients.

    transformers loads the RoPE architecture and the weights (``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``,
    e.g. ``dtype``, ``device_map``, ``attn_implementation``), ``convert`` re-applies ``config.fope``, and the
    coefficients are read from the checkpoint files (safetensors, or ``.bin`` with ``weights_only=True``).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"path must be a local model directory (written by save_pretrained); got {str(path)!r}")
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(directory)
    options = getattr(config, CONFIG_KEY, None)
    if not isinstance(options, Mapping):
        raise ValueError(
            f"{directory}/config.json has no {CONFIG_KEY!r} entry: it was not saved from a converted model; "
            "load it with transformers and call fope.integrations.transformers.convert"
        )
    recorded = dict(options)
    options = dict(options)
    share_layers, seed = options.pop("share_layers", False), options.pop("seed", None)
    with _quiet_load_report():
        model, info = AutoModelForCausalLM.from_pretrained(directory, config=config, output_loading_info=True, **kwargs)
    # The placeholder coefficients are overwritten below: draw them from a fixed seed, not from the global RNG.
    convert(model, share_layers=share_layers, seed=0 if seed is None else seed, **options)
    setattr(model.config, CONFIG_KEY, recorded)
    names = [f"{prefix}.{name}" for prefix, module in named_fope_modules(model) for name in _COEFFICIENTS]
    saved = read_tensors(directory, keep=set(names).__contains__)
    missing = [name for name in names if name not in saved]
    if missing:
        raise KeyError(f"the checkpoint in {directory} lacks the FoPE coefficients {missing}")
    with torch.no_grad():
        for prefix, module in named_fope_modules(model):
            for name in _COEFFICIENTS:
                tensor = getattr(module, name)
                value = saved[f"{prefix}.{name}"]
                if value.shape != tensor.shape:
                    raise ValueError(
                        f"{prefix}.{name} in {directory} has shape {tuple(value.shape)}; the options in config.json "
                        f"give {tuple(tensor.shape)}"
                    )
                tensor.copy_(value)
    _report_other_keys(directory, info, set(names))
    return model


def convert_directory(
    src_dir: str | PathLike[str], out_dir: str | PathLike[str], train_length: int, **options: Any
) -> PreTrainedModel:
    """``fope convert``: load a local model directory, ``convert`` it, save it to ``out_dir``; returns the model.

    ``options`` are ``convert``'s. Top-level files of ``src_dir`` that are not weights (tokenizer, README, ...) are
    copied unchanged.
    """
    from transformers import AutoModelForCausalLM

    source, target = Path(src_dir), Path(out_dir)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"src_dir must be a model directory with a config.json; got {str(src_dir)!r}")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"out_dir must differ from src_dir; got {str(out_dir)!r} for both")
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")  # keep the checkpoint's dtype
    convert(model, train_length, **options)
    model.save_pretrained(target)
    for file in sorted(source.iterdir()):
        is_weights = file.suffix in _WEIGHT_SUFFIXES or file.name.endswith(".index.json")
        if file.is_file() and not is_weights and not (target / file.name).exists():
            shutil.copy2(file, target / file.name)
    return model


def convert_options() -> list[str]:
    """The keyword options ``convert`` accepts besides ``train_length`` and ``inplace``."""
    return sorted({*_option_defaults(), "share_layers"})


def model_rope(model: PreTrainedModel) -> RoPE:
    """A ``fope.RoPE`` equal to the RoPE of a (not converted) Llama-family model, checked on probe positions.

    Heads, theta, rotary dim and scaling come from the config as in ``convert``; an architecture or RoPE type that
    ``fope.RoPE`` does not reproduce is an error.
    """
    base, attentions = _attention_layers(model)
    structure = _structure(base.config, attentions[0])
    scaling, unmapped = _model_scaling(base.config)
    if unmapped is not None:
        raise ValueError(unmapped)
    layout = _probe_rotary(base, _model_rotation(type(attentions[0])), structure, scaling, check_frequencies=True)
    return RoPE(structure["head_dim"], structure["theta"], layout, structure["rotary_dim"], scaling)


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


def _attention_layers(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(the decoder stack, its attention layers) of a Llama-family model; errors name what is missing."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not layers or not hasattr(base, "rotary_emb"):
        raise TypeError(
            f"convert supports Llama-family causal LMs (a base model with .layers[i].self_attn and .rotary_emb); "
            f"got {type(model).__name__}"
        )
    attentions = [getattr(layer, "self_attn", None) for layer in layers]
    if any(attention is None for attention in attentions):
        raise TypeError(f"every decoder layer must have .self_attn; {type(layers[0]).__name__} has none")
    if any(isinstance(attention, _FoPEAttention) for attention in attentions):
        raise ValueError(f"this {type(model).__name__} already uses FoPE; convert the original RoPE model")
    if len({type(attention) for attention in attentions}) != 1:
        names = sorted({type(attention).__name__ for attention in attentions})
        raise TypeError(f"all attention layers must share one class; got {names}")
    return base, attentions


def _rope_parameters(config: Any) -> dict[str, Any]:
    """The model's RoPE settings: transformers 5 ``rope_parameters``, or 4.x ``rope_theta`` and ``rope_scaling``."""
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


def _model_rotation(attention_class: type) -> Callable[..., tuple[Tensor, Tensor]]:
    """The ``apply_rotary_pos_emb`` that ``attention_class.forward`` calls, after checking that FoPE can replace it."""
    forward = attention_class.forward
    name = attention_class.__name__
    if hasattr(forward, "__wrapped__"):
        raise TypeError(
            f"{name}.forward is wrapped by a decorator (transformers < 5 wraps it in deprecate_kwarg); "
            "convert needs the undecorated forward of transformers >= 5"
        )
    parameters = list(inspect.signature(forward).parameters)
    if parameters[:3] != ["self", "hidden_states", "position_embeddings"]:
        raise TypeError(f"{name}.forward must take (hidden_states, position_embeddings, ...); got {parameters}")
    global_names = {op.argval for op in dis.get_instructions(forward) if op.opname == "LOAD_GLOBAL"}
    rotations = sorted(global_name for global_name in global_names if "rotary" in global_name)
    if rotations != [ROTARY_FUNCTION] or not callable(forward.__globals__.get(ROTARY_FUNCTION)):
        raise TypeError(f"{name}.forward must rotate q and k with {ROTARY_FUNCTION} alone; it calls {rotations}")
    return forward.__globals__[ROTARY_FUNCTION]


def _probe_rotary(
    base: nn.Module,
    model_rotation: Callable[..., tuple[Tensor, Tensor]],
    structure: Mapping[str, Any],
    scaling: Mapping[str, Any] | None,
    *,
    check_frequencies: bool,
) -> str:
    """The layout of the model's own RoPE, after checking that ours reproduces it (and its frequencies, if asked)."""
    with torch.device("cpu"):
        rotary = type(base.rotary_emb)(config=base.config)  # fresh float32 frequencies, whatever the model's dtype
    positions = torch.arange(_PROBE_LENGTH)
    model_cos, model_sin = rotary(torch.zeros(1, _PROBE_LENGTH, structure["head_dim"]), positions.unsqueeze(0))
    cos, sin = _pair_values(model_cos.float(), model_sin.float())
    if cos.shape[-1] != structure["rotary_dim"] // 2:
        raise ValueError(
            f"{type(base.rotary_emb).__name__} rotates {cos.shape[-1]} pairs; the config gives rotary_dim="
            f"{structure['rotary_dim']} (head_dim={structure['head_dim']} times partial_rotary_factor)"
        )
    # q/k as wide as the rotary part: accepted both by functions given whole heads and by those given only that part
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, _PROBE_LENGTH, model_cos.shape[-1], generator=generator)
    k = torch.randn(1, 1, _PROBE_LENGTH, model_cos.shape[-1], generator=generator)
    try:
        expected = model_rotation(q, k, model_cos, model_sin)
    except (RuntimeError, TypeError, ValueError) as error:
        raise TypeError(
            f"the model's {ROTARY_FUNCTION} does not take (q, k, cos, sin) like Llama's: {error}"
        ) from error
    matches = [
        layout
        for layout in LAYOUTS
        if all(
            torch.allclose(apply_rotary(x, cos.unsqueeze(1), sin.unsqueeze(1), layout), y, atol=1e-5)
            for x, y in zip((q, k), expected, strict=True)
        )
    ]
    if not matches:
        raise TypeError(
            f"the model's {ROTARY_FUNCTION} is not a rotation that fope.apply_rotary reproduces in either layout "
            f"{list(LAYOUTS)}; convert does not support this architecture"
        )
    if check_frequencies:
        rope = RoPE(structure["head_dim"], structure["theta"], matches[0], structure["rotary_dim"], scaling)
        ours_cos, ours_sin = (feature.squeeze(1) for feature in rope.features(positions))
        if not (torch.allclose(ours_cos, cos, atol=1e-4) and torch.allclose(ours_sin, sin, atol=1e-4)):
            raise ValueError(
                f"fope.RoPE with theta={structure['theta']:g}, rotary_dim={structure['rotary_dim']}, "
                f"scaling={scaling} does not reproduce {type(base.rotary_emb).__name__}: the config does not describe "
                "this model's RoPE in a way convert understands; pass scaling= to choose FoPE's frequencies yourself"
            )
    return matches[0]


def _pair_values(cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """One value per rotary pair from transformers' cos/sin, laid out ``[c, c]`` (Llama) or ``c0 c0 c1 c1`` (Cohere)."""
    half = cos.shape[-1] // 2
    if torch.equal(cos[..., :half], cos[..., half:]) and torch.equal(sin[..., :half], sin[..., half:]):
        return cos[..., :half], sin[..., :half]
    if torch.equal(cos[..., ::2], cos[..., 1::2]) and torch.equal(sin[..., ::2], sin[..., 1::2]):
        return cos[..., ::2], sin[..., ::2]
    raise TypeError(f"the model's rotary_emb returns cos/sin {tuple(cos.shape)} in a layout convert cannot read")


def _layer_seeds(seed: int | None, num_layers: int) -> list[int | None]:
    """Distinct reproducible seeds for the layers' coefficients (all None, the global RNG, when ``seed`` is None)."""
    if seed is None:
        return [None] * num_layers
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    return [int(value) for value in torch.randint(0, 2**62, (num_layers,), generator=generator)]


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class _FoPEAttention:
    """Mixed into every converted attention class (``FoPE<Name>Attention``): FoPE features in, transformers' code on."""

    fope: FoPE | None
    _transformers_forward: Callable[..., Any]

    def forward(
        self, hidden_states: Tensor, position_embeddings: Any = None, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        """transformers' attention forward, rotating q and k with FoPE features instead of RoPE's cos/sin."""
        if self.fope is not None:
            position_ids = kwargs.get("position_ids")
            if position_ids is None:
                raise ValueError(
                    f"{type(self).__name__} needs the position ids to compute per-layer FoPE features, and its decoder "
                    "layer passed position_ids=None"
                )
            position_embeddings = FoPEFeatures(*self.fope.features(position_ids))
        elif not isinstance(position_embeddings, FoPEFeatures):
            raise TypeError(
                f"{type(self).__name__} with shared coefficients expects FoPEFeatures from the model's SharedFoPE "
                f"rotary_emb; got {type(position_embeddings).__name__}"
            )
        return self._transformers_forward(hidden_states, position_embeddings, *args, **kwargs)


_ATTENTION_CLASSES: dict[tuple[type, str], type] = {}


def _fope_attention_class(attention_class: type, layout: str) -> type:
    """``FoPE<Name>`` subclass of ``attention_class`` whose forward is the original with FoPE's rotation (cached)."""
    key = (attention_class, layout)
    if key not in _ATTENTION_CLASSES:
        forward = attention_class.forward
        _ATTENTION_CLASSES[key] = type(
            f"FoPE{attention_class.__name__}",
            (_FoPEAttention, attention_class),
            {
                "__module__": __name__,
                "__doc__": f"{attention_class.__name__} with FoPE ({layout} layout) in place of RoPE.",
                "_transformers_forward": _with_global(forward, ROTARY_FUNCTION, _fope_rotation(layout)),
            },
        )
    return _ATTENTION_CLASSES[key]


def _with_global(function: types.FunctionType, name: str, value: Any) -> types.FunctionType:
    """A copy of ``function`` (same code, defaults, closure) that sees ``value`` under the global ``name``.

    The copy reads a snapshot of the module's globals taken now, so it never changes what the module itself calls.
    """
    namespace = {**function.__globals__, name: value}
    copied = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    copied.__kwdefaults__ = function.__kwdefaults__
    copied.__qualname__ = function.__qualname__
    return copied


def _fope_rotation(layout: str) -> Callable[..., tuple[Tensor, Tensor]]:
    """Stands in for ``apply_rotary_pos_emb(q, k, cos, sin, ...)``: ``cos``/``sin`` are FoPE's per-pair features."""

    def apply_fope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return apply_rotary(q, cos, sin, layout), apply_rotary(k, cos, sin, layout)

    return apply_fope


@contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Mute transformers' load report while it loads the RoPE model: it would list the FoPE coefficients as unused."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _report_other_keys(directory: Path, info: Mapping[str, Any], fope_keys: set[str]) -> None:
    """Say what the muted load report would have said about keys other than the FoPE coefficients."""
    unexpected = sorted(set(info.get("unexpected_keys", ())) - fope_keys)
    missing = sorted(set(info.get("missing_keys", ())) - fope_keys)
    if unexpected or missing:
        logging.getLogger(__name__).warning(
            "loading %s: checkpoint keys not used: %s; model weights not in the checkpoint (newly initialised): %s",
            directory,
            unexpected or "none",
            missing or "none",
        )
