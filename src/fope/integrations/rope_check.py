"""What a transformers model's RoPE is, read from its config and checked on the model itself (for ``convert``).

``model_structure`` and ``model_scaling`` read heads, head_dim, theta, partial rotary and the RoPE scaling from the
config; ``rope_layout`` checks that ``fope.RoPE`` reproduces the cos/sin of the model's ``rotary_emb`` (which also
gives the layout), and ``probe_attention`` that the first attention layer with FoPE's hooks fed the model's own RoPE
gives the layer's original output.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fope.device import model_device
from fope.integrations.modeling_fope import LAYOUTS, attach
from fope.positions import RoPE

__all__ = ["model_scaling", "model_structure", "probe_attention", "resolve_scaling", "rope_layout", "rope_parameters"]

_PROBE_LENGTH = 48
# Relative error allowed between the first attention layer's original output and its output with FoPE's hooks fed the
# model's own RoPE: float32 rounding, or one rounding of the rotated q/k in a 16-bit model.
_PROBE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
_PROBE_TOLERANCE_16BIT = 3e-2


def rope_parameters(config: Any) -> dict[str, Any]:
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


def model_structure(config: Any, attention: nn.Module) -> dict[str, Any]:
    """FoPE's structural arguments (``FROM_MODEL`` except the layout) read from the config."""
    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(attention, "head_dim", None) or getattr(config, "head_dim", None)
    head_dim = head_dim or config.hidden_size // num_heads
    parameters = rope_parameters(config)
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


def model_scaling(config: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the model's RoPE scaling as a ``fope`` scaling dict, None) or (None, why it has no equivalent here)."""
    parameters = rope_parameters(config)
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


def resolve_scaling(config: Any, fope_options: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """FoPE's frequency scaling (the model's own unless ``scaling`` is passed), and whether it is the model's own."""
    own, unmapped = model_scaling(config)
    if "scaling" in fope_options:
        scaling = fope_options["scaling"]
        return scaling, unmapped is None and scaling == own
    if unmapped is not None:
        raise ValueError(unmapped)
    return own, True


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


def rope_layout(
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


def probe_attention(
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
