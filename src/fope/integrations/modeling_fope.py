"""FoPE (Fourier Position Embedding) for Hugging Face ``transformers`` causal LMs, as remote code.

fope writes this file, unchanged but for two lines bound at its end, next to the weights of every model it converts
(``fope convert``) or exports (``fope export``), and points ``config.json``'s ``auto_map`` at it. So a converted model
loads with plain ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` in a process that has never
heard of fope: this file (and ``triton_rotary.py``, the fused kernel fope writes next to it) needs only ``torch`` and
``transformers``, and triton only to run the kernel. fope itself uses the same code.

How it works, on public extension points only. The model is the architecture's own class (``LlamaForCausalLM``,
``Qwen3ForCausalLM``, ...) with, per attention layer, three PyTorch hooks and one submodule:
- the model-level ``rotary_emb`` returns ``cos = 1, sin = 0``, so the architecture's own rotation is the identity;
- a forward pre-hook on each attention layer turns the ``position_ids`` the decoder layer passes it into FoPE's
  per-pair features (``FourierFeatures``, float32);
- forward hooks on the modules that produce q and k (``q_norm``/``k_norm`` when the layer has them, else
  ``q_proj``/``k_proj``, or the fused ``qkv_proj``) rotate their outputs with those features, before the KV cache.

Projections, norms, the cache, masks, sliding windows, soft-capping and the attention implementation (eager, sdpa,
flash) stay the architecture's code. The coefficients are persistent buffers (or parameters when learnable) named
``...self_attn.fope.{inv_freq,cos_coef,sin_coef}`` per layer, or ``model.rotary_emb.fope.*`` when layers share one set.

On CUDA with triton installed the rotation is instead fope's fused Triton kernel (``triton_rotary.py``): the
pre-hook keeps the position ids and each hook rotates its output in one launch that computes the features in the
kernel (q and k together from a fused ``qkv_proj``; else q in one launch and k in another, as the layer produces
them). The switch is fope's: ``FOPE_KERNEL=auto|triton|eager`` (``auto`` by default),
or ``kernel`` on a ``FourierFeatures`` module, which wins. ``triton`` forces the kernel (CPU tensors need Triton's
interpreter, ``TRITON_INTERPRET=1``); ``eager`` never uses it; under ``torch.compile`` the eager code is traced.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import transformers
from torch import Tensor, nn

try:  # remote code: fope export / convert write the kernel file next to this one (it imports without triton)
    from .triton_rotary import RotarySeries, fused_rotary, use_fused_kernel
except ModuleNotFoundError:  # fope's own package, where the file is fope.kernels.triton_rotary
    from fope.kernels.triton_rotary import RotarySeries, fused_rotary, use_fused_kernel

#: The entry of config.json that describes the FoPE of a converted model.
CONFIG_KEY = "fope"
#: The model_type of converted models: not one transformers knows, so loading without trust_remote_code fails.
MODEL_TYPE = "fope"
MODULE_NAME = "modeling_fope"
#: The kernel's file, written next to this one under this name.
KERNEL_MODULE_NAME = "triton_rotary"
LAYOUTS = ("half", "interleaved")
ZERO_PADS = ("official", "identity")
#: Keys of ``config.fope["features"]``: everything this file needs to rebuild the modules (tensors come from weights).
FEATURE_KEYS = (
    "share_layers",
    "num_coef_heads",
    "num_kept",
    "output_dim",
    "rotary_dim",
    "zero_pad",
    "attention_factor",
    "layout",
    "learnable",
)
_BINDING_MARKER = "# ---- bound by fope " + "for this checkpoint ----"  # split so this line is not the marker


class FourierFeatures(nn.Module):
    """FoPE's per-pair ``(cos, sin)`` for one coefficient set (docs/fope-spec.md sections 2 and 5).

    ``c[h, j](n) = sum_k cos_coef[h, k, j] cos(w_k n)``, ``s[h, j](n) = sum_k sin_coef[h, k, j] sin(w_k n)`` for
    pairs ``j < output_dim``; the pairs after that up to ``rotary_dim / 2`` are zero-frequency pairs (``c = s = 1``
    "official", ``c = 1, s = 0`` "identity"); both are scaled by ``attention_factor`` (YaRN's temperature, 1 if none).
    Frequencies and coefficients are float32 and stay so when the model is cast. ``layout`` is the pairs' (see
    ``rotate``): the fused kernel reads it here, the eager rotation gets it from ``attach``. ``kernel`` (``"auto"``,
    ``"triton"``, ``"eager"``; ``None``: ``FOPE_KERNEL``) picks the fused kernel or the eager rotation for its layers.
    """

    kernel: str | None = None

    def __init__(
        self,
        *,
        num_coef_heads: int,
        num_kept: int,
        output_dim: int,
        rotary_dim: int,
        zero_pad: str = "official",
        attention_factor: float = 1.0,
        learnable: bool = False,
        layout: str = "half",
    ) -> None:
        super().__init__()
        if zero_pad not in ZERO_PADS:
            raise ValueError(f"zero_pad must be one of {list(ZERO_PADS)}; got {zero_pad!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}")
        if not 0 <= output_dim <= rotary_dim // 2:
            raise ValueError(f"output_dim must be in [0, rotary_dim / 2 = {rotary_dim // 2}]; got {output_dim}")
        self.num_pairs, self.output_dim, self.zero_pad, self.layout = rotary_dim // 2, output_dim, zero_pad, layout
        self.attention_factor = float(attention_factor)
        self.register_buffer("inv_freq", torch.zeros(num_kept, dtype=torch.float32))
        shape = (num_coef_heads, num_kept, output_dim)
        for name in ("cos_coef", "sin_coef"):
            tensor = torch.zeros(shape, dtype=torch.float32)
            if learnable:
                setattr(self, name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def features(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """float32 ``(cos, sin)`` of shape ``(B, Hc, T, rotary_dim / 2)`` for ``position_ids`` ``(B, T)``."""
        device_type = position_ids.device.type
        if torch.is_autocast_enabled(device_type):
            # autocast (Trainer's bf16=True) would run the coefficient einsum in bf16: keep position math float32
            with torch.autocast(device_type, enabled=False):
                return self.features(position_ids)
        angles = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq.to(torch.float32)
        cos = torch.einsum("btk,hkj->bhtj", angles.cos(), self.cos_coef.to(torch.float32))
        sin = torch.einsum("btk,hkj->bhtj", angles.sin(), self.sin_coef.to(torch.float32))
        padding = self.num_pairs - self.output_dim
        if padding:
            cos = nn.functional.pad(cos, (0, padding), value=1.0)
            sin = nn.functional.pad(sin, (0, padding), value=1.0 if self.zero_pad == "official" else 0.0)
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos, sin

    def series(self) -> RotarySeries:
        """The same features as the fused kernel's inputs (it computes them per tile from these)."""
        return RotarySeries(
            self.inv_freq.to(torch.float32),
            self.cos_coef.to(torch.float32),
            self.sin_coef.to(torch.float32),
            self.num_pairs,
            self.output_dim,
            1.0 if self.zero_pad == "official" else 0.0,
            self.attention_factor,
            self.layout,
        )

    def _apply(self, fn: Any, recurse: bool = True) -> FourierFeatures:
        # model.to(torch.bfloat16) must not round frequencies or coefficients: keep float32, only move them.
        saved = {name: tensor for name, tensor in self.named_parameters(recurse=False)}
        saved.update(self.named_buffers(recurse=False))
        originals = {name: tensor.data for name, tensor in saved.items()}
        super()._apply(fn, recurse)
        for name, original in originals.items():
            moved = getattr(self, name)
            if moved.dtype != torch.float32:
                value = original.to(device=moved.device, dtype=torch.float32)
                if isinstance(moved, nn.Parameter):
                    moved.data = value
                else:
                    setattr(self, name, value)
        return self

    def extra_repr(self) -> str:
        heads, kept, _ = self.cos_coef.shape
        return (
            f"coef_heads={heads}, kept={kept}, output_dim={self.output_dim}, pairs={self.num_pairs}, "
            f"zero_pad={self.zero_pad!r}, attention_factor={self.attention_factor:g}, layout={self.layout!r}"
        )


class PositionlessRotary(nn.Module):
    """Stands in for the model's ``rotary_emb``: ``cos = 1, sin = 0`` of the shape and dtype the model expects.

    The architecture's own rotation becomes the identity; FoPE rotates q and k in the projection hooks instead. When
    the layers share one coefficient set it lives here (``rotary_emb.fope``).
    """

    def __init__(self, rope: nn.Module, shared: FourierFeatures | None = None) -> None:
        super().__init__()
        self.rope = rope
        if shared is not None:
            self.fope = shared

    def forward(self, x: Tensor, position_ids: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        cos, sin = self.rope(x, position_ids, *args, **kwargs)
        return torch.ones_like(cos), torch.zeros_like(sin)


def rotate(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """Rotate the pairs of ``x`` ``(B, T, H, D)`` with ``cos``/``sin`` ``(B|1, Hc, T, P)``, in float32.

    Pair ``j`` is ``(j, j + P)`` ("half", Llama) or ``(2j, 2j + 1)`` ("interleaved", GPT-J); head ``h`` uses
    coefficient head ``h // (H / Hc)``; dimensions past ``2P`` pass through. ``(a, b) -> (a c - b s, b c + a s)``.
    """
    heads, pairs = x.shape[-2], cos.shape[-1]
    if cos.shape[1] not in (1, heads):
        cos, sin = (t.repeat_interleave(heads // cos.shape[1], dim=1) for t in (cos, sin))
    cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)  # (B|1, T, H|1, P)
    rotary = x[..., : 2 * pairs].to(torch.float32)
    if layout == "half":
        a, b = rotary[..., :pairs], rotary[..., pairs:]
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        a, b = rotary[..., 0::2], rotary[..., 1::2]
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    out = out.to(x.dtype)
    return torch.cat((out, x[..., 2 * pairs :]), dim=-1) if 2 * pairs < x.shape[-1] else out


def attention_layers(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(the decoder stack, its attention layers) of a Llama-family model; errors name what is missing."""
    base = getattr(model, "base_model", model)
    layers = getattr(base, "layers", None)
    if (
        not isinstance(layers, nn.ModuleList)
        or not layers
        or not isinstance(getattr(base, "rotary_emb", None), nn.Module)
    ):
        raise TypeError(
            f"FoPE supports Llama-family causal LMs (a base model with .layers[i].self_attn and one .rotary_emb); "
            f"got {type(model).__name__}"
        )
    attentions = [getattr(layer, "self_attn", None) for layer in layers]
    if any(attention is None for attention in attentions):
        raise TypeError(f"every decoder layer must have .self_attn; {type(layers[0]).__name__} has none")
    if len({type(attention) for attention in attentions}) != 1:
        names = sorted({type(attention).__name__ for attention in attentions})
        raise TypeError(f"all attention layers must share one class; got {names}")
    return base, attentions


def attach(model: nn.Module, modules: list[FourierFeatures], *, layout: str, shared: bool) -> Callable[[], None]:
    """Make ``model`` rotate q and k with ``modules`` (one per layer, or one shared) instead of its RoPE.

    Returns a function that undoes it (used by fope's conversion check). ``modules`` need only a ``features``
    method ``(B, T) position ids -> float32 (cos, sin)`` of shape ``(B|1, Hc, T, P)``; those with a ``series``
    method (``FourierFeatures``) use the fused kernel where the switch says so.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}")
    base, attentions = attention_layers(model)
    if isinstance(base.rotary_emb, PositionlessRotary):
        raise ValueError(f"this {type(model).__name__} already uses FoPE")
    if len(modules) != (1 if shared else len(attentions)):
        raise ValueError(f"need {1 if shared else len(attentions)} FourierFeatures modules; got {len(modules)}")
    config = base.config
    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    sources = [_qk_sources(attention) for attention in attentions]  # every layer checked before anything changes
    rope = base.rotary_emb
    base.rotary_emb = PositionlessRotary(rope, modules[0] if shared else None)
    handles = []
    for index, (attention, (q, k, fused)) in enumerate(zip(attentions, sources, strict=True)):
        fope = modules[0 if shared else index]
        if not shared:
            attention.fope = fope
        head_dim = getattr(attention, "head_dim", None) or getattr(config, "head_dim", None)
        head_dim = head_dim or config.hidden_size // num_heads
        features_hook = functools.partial(_features_hook, fope, layout)
        handles.append(attention.register_forward_pre_hook(features_hook, with_kwargs=True))
        handles.append(attention.register_forward_hook(_clear_hook))
        if fused is not None:
            sizes = (num_heads * head_dim, num_kv_heads * head_dim)
            hook = functools.partial(_fused_hook, attention, head_dim, sizes)
            handles.append(fused.register_forward_hook(hook))
            continue
        for module, heads in ((q, num_heads), (k, num_kv_heads)):
            hook = functools.partial(_rotation_hook, attention, head_dim, heads)
            handles.append(module.register_forward_hook(hook))

    def detach() -> None:
        for handle in handles:
            handle.remove()
        base.rotary_emb = rope
        for attention in attentions:
            if isinstance(getattr(attention, "fope", None), nn.Module):
                del attention.fope
            attention._fope_rotation = None

    return detach


def _qk_sources(attention: nn.Module) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None]:
    """(module whose output is q, the one for k, None), or (None, None, the fused qkv_proj)."""
    fused = getattr(attention, "qkv_proj", None)
    if isinstance(fused, nn.Module) and not hasattr(attention, "q_proj"):
        return None, None, fused
    found = []
    for source in ("q", "k"):
        norm, projection = getattr(attention, f"{source}_norm", None), getattr(attention, f"{source}_proj", None)
        module = norm if isinstance(norm, nn.Module) else projection
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{type(attention).__name__} has no {source}_proj (nor a fused qkv_proj): FoPE cannot find {source}"
            )
        found.append(module)
    return found[0], found[1], None


def _features_hook(fope: nn.Module, layout: str, attention: nn.Module, args: tuple, kwargs: dict) -> None:
    position_ids = kwargs.get("position_ids")
    if position_ids is None:
        raise ValueError(
            f"{type(attention).__name__} with FoPE needs the position ids, and its decoder layer passed none "
            "(position_ids=None): this architecture does not give FoPE its positions"
        )
    if hasattr(fope, "series") and use_fused_kernel(getattr(fope, "kernel", None), position_ids):
        attention._fope_rotation = _KernelRotation(fope.series(), position_ids)
    else:
        attention._fope_rotation = _EagerRotation(*fope.features(position_ids), layout)


class _EagerRotation:
    """Rotates ``(B, T, H, D)`` heads with features computed once per attention call."""

    def __init__(self, cos: Tensor, sin: Tensor, layout: str) -> None:
        self.cos, self.sin, self.layout = cos, sin, layout

    def __call__(self, x: Tensor) -> Tensor:
        return rotate(x, self.cos, self.sin, self.layout)

    def pair(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return self(q), self(k)


class _KernelRotation:
    """Rotates ``(B, T, H, D)`` heads in the fused kernel, which computes the features from the positions itself."""

    def __init__(self, series: RotarySeries, position_ids: Tensor) -> None:
        self.series, self.position_ids = series, position_ids

    def __call__(self, x: Tensor) -> Tensor:
        return fused_rotary(None, x.transpose(1, 2), self.position_ids, self.series)[1].transpose(1, 2)

    def pair(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        q, k = fused_rotary(q.transpose(1, 2), k.transpose(1, 2), self.position_ids, self.series)
        return q.transpose(1, 2), k.transpose(1, 2)


def _clear_hook(attention: nn.Module, args: tuple, output: Any) -> None:
    attention._fope_rotation = None


def _rotation(attention: nn.Module) -> _EagerRotation | _KernelRotation:
    rotation = getattr(attention, "_fope_rotation", None)
    if rotation is None:
        raise RuntimeError(f"{type(attention).__name__}'s q/k projection ran outside its attention forward")
    return rotation


def _heads(attention: nn.Module, head_dim: int, heads: int, x: Tensor) -> Tensor:
    """``x`` ``(B, T, H*D)`` or ``(B, T, H, D)`` as ``(B, T, H, D)``."""
    if x.shape[-2:] == (heads, head_dim):
        return x
    if x.shape[-1] != heads * head_dim:
        raise TypeError(
            f"{type(attention).__name__}: a q/k of shape {tuple(x.shape)} is neither (..., {heads}, {head_dim}) nor "
            f"(..., {heads * head_dim}); FoPE does not support this architecture"
        )
    return x.unflatten(-1, (heads, head_dim))


def _rotation_hook(
    attention: nn.Module, head_dim: int, heads: int, module: nn.Module, args: tuple, output: Tensor
) -> Tensor:
    rotated = _rotation(attention)(_heads(attention, head_dim, heads, output))
    return rotated if rotated.dim() == output.dim() else rotated.flatten(-2)


def _fused_hook(
    attention: nn.Module,
    head_dim: int,
    sizes: tuple[int, int],
    module: nn.Module,
    args: tuple,
    output: Tensor,
) -> Tensor:
    q, k, rest = output.split((*sizes, output.shape[-1] - sum(sizes)), dim=-1)
    q, k = (_heads(attention, head_dim, size // head_dim, x) for x, size in zip((q, k), sizes, strict=True))
    q, k = _rotation(attention).pair(q, k)
    return torch.cat((q.flatten(-2), k.flatten(-2), rest), dim=-1)


def feature_modules(config: Any) -> list[FourierFeatures]:
    """Empty ``FourierFeatures`` (tensors to be loaded) as ``config.fope["features"]`` describes them."""
    record = getattr(config, CONFIG_KEY, None)
    spec = record.get("features") if isinstance(record, dict) else None
    if not isinstance(spec, dict) or sorted(spec) != sorted(FEATURE_KEYS):
        raise ValueError(
            f"config.{CONFIG_KEY}['features'] must hold exactly {list(FEATURE_KEYS)}; got "
            f"{sorted(spec) if isinstance(spec, dict) else spec!r}"
        )
    options = {key: spec[key] for key in FEATURE_KEYS if key != "share_layers"}
    count = 1 if spec["share_layers"] else config.num_hidden_layers
    return [FourierFeatures(**options) for _ in range(count)]


def classes_for(base_architecture: str) -> tuple[type, type]:
    """``(FoPEConfig, FoPEForCausalLM)``: subclasses of a transformers architecture (e.g. ``"LlamaForCausalLM"``)."""
    base = getattr(transformers, base_architecture, None)
    if not (isinstance(base, type) and issubclass(base, transformers.PreTrainedModel)):
        raise ValueError(f"{base_architecture!r} is not a transformers model class")
    key = (base_architecture, base)
    if key not in _CLASSES:
        _CLASSES[key] = _make_classes(base)
    return _CLASSES[key]


_CLASSES: dict[tuple[str, type], tuple[type, type]] = {}


def _make_classes(base: type) -> tuple[type, type]:
    base_config = base.config_class

    class FoPEConfig(base_config):
        model_type = MODEL_TYPE

    class FoPEForCausalLM(base):
        config_class = FoPEConfig
        _keep_in_fp32_modules: ClassVar[list[str]] = [*(getattr(base, "_keep_in_fp32_modules", None) or []), CONFIG_KEY]

        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            modules = feature_modules(config)
            spec = config.fope["features"]
            attach(self, modules, layout=spec["layout"], shared=spec["share_layers"])

        @classmethod
        def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
            """transformers' ``from_pretrained``; FoPE tensors missing from the checkpoint are an error."""
            wants_info = kwargs.pop("output_loading_info", False)
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
            missing = sorted(key for key in info.get("missing_keys", ()) if f".{CONFIG_KEY}." in f".{key}")
            if missing:
                raise ValueError(f"the checkpoint lacks the FoPE tensors {missing}: it cannot be this FoPE model")
            return (model, info) if wants_info else model

        @classmethod
        def is_remote_code(cls) -> bool:
            """False: ``save_pretrained`` writes this file and ``auto_map`` itself.

            transformers' own copy (for remote code) follows the model's class, which FSDP2 (``fully_shard``, as under
            accelerate) swaps for torch's ``FSDPFoPEForCausalLM``: it would copy torch's FSDP source files into the
            folder and point ``auto_map`` at them.
            """
            return False

        def save_pretrained(self, save_directory: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
            """transformers' ``save_pretrained``, plus this file and ``auto_map`` so the folder loads anywhere."""
            self.config.auto_map = {
                "AutoConfig": f"{MODULE_NAME}.FoPEConfig",
                "AutoModelForCausalLM": f"{MODULE_NAME}.FoPEForCausalLM",
            }
            super().save_pretrained(save_directory, *args, **kwargs)
            if kwargs.get("is_main_process", True):
                write_code(save_directory, base.__name__)

    for cls in (FoPEConfig, FoPEForCausalLM):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    # transformers decides whether a class may switch its attention / experts implementation by reading the source
    # file of the class's module for markers; the architecture's file has them, this one does not. Ask the base.
    for name in ("_can_set_attn_implementation", "_can_set_experts_implementation"):
        if callable(getattr(base, name, None)):
            setattr(FoPEForCausalLM, name, classmethod(functools.partial(_ask_base, base, name)))
    FoPEForCausalLM.__doc__ = f"{base.__name__} with FoPE in place of RoPE (see {MODULE_NAME}.py)."
    return FoPEConfig, FoPEForCausalLM


def _ask_base(base: type, name: str, cls: type) -> Any:
    return getattr(base, name)()


def write_code(directory: str | os.PathLike[str], base_architecture: str) -> None:
    """Write this file into ``directory`` with the classes bound to ``base_architecture``, and the kernel's file."""
    source = inspect.getsource(inspect.getmodule(write_code)).split(_BINDING_MARKER)[0].rstrip("\n")
    binding = f"\n\n\n{_BINDING_MARKER}\nFoPEConfig, FoPEForCausalLM = classes_for({json.dumps(base_architecture)})\n"
    files = {MODULE_NAME: source + binding, KERNEL_MODULE_NAME: inspect.getsource(inspect.getmodule(fused_rotary))}
    for name, text in files.items():
        with open(os.path.join(os.fspath(directory), f"{name}.py"), "w", encoding="utf-8") as handle:
            handle.write(text)
