"""FoPE checkpoints of the Intern stack (``docs/fope-spec.md`` section 7): load its model-level FoPE, or export one.

``intern_fope_options`` maps the config's ``rope_scaling`` FoPE keys to ``fope.FoPE`` options, ``load_intern_fope``
loads ``rotary_emb.{cos,sin}_coef``, ``export_intern`` writes a shared FoPE in that layout. A shape or a setting that
``FoPE`` does not reproduce is an error, never an approximation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor, nn

from fope.integrations.weights import Source, config_section, fope_modules, load_coefficients, read_config, read_tensors
from fope.positions import FoPE
from fope.positions.frequencies import floor_frequency, num_kept_frequencies, rope_frequencies

__all__ = ["export_intern", "intern_fope_options", "load_intern_fope"]

_INTERN_KEY = re.compile(r"(?:^|\.)rotary_emb\.(cos|sin)_coef$")
_INTERN_OPTIONS = ("fope_init_factor", "fope_sep_head", "fope_num_inv_freq", "num_inv_freq")


def intern_fope_options(config: Mapping[str, Any] | str | PathLike[str]) -> dict[str, Any]:
    """``FoPE`` arguments for an Intern-stack model config (its FoPE keys sit in ``rope_scaling``).

    ``fope_init_factor`` -> sigma, ``fope_sep_head=False`` -> share_heads, K = ``fope_num_inv_freq`` (LMDeploy's key),
    else ``num_inv_freq``, else the number of frequencies strictly above ``2*pi/max_position_embeddings`` in the
    Intern stack's float32 arithmetic, output_dim K ("square"), layout "half".
    """
    config = config_section(read_config(config), "text_config", "num_attention_heads")
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
    num_kept = rope.get("fope_num_inv_freq", rope.get("num_inv_freq"))  # LMDeploy reads both, in this order
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
    load_coefficients(module, coefficients, "rotary_emb")
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
