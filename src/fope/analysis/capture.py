"""What the diagnostics read from a model: per-layer queries and keys before the position encoding, block inputs.

Queries and keys are taken from each attention layer's fused ``qkv_proj`` output with a forward hook, split and
reshaped as the attention does, and passed through the optional QK-norm; the position encoding is not applied
(``position(q, k, positions)`` gives the rotated ones). Rotary pairs are read as complex numbers ``a + ib``: the
pair map ``(a, b) -> (a*c - b*s, b*c + a*s)`` is the product ``(a + ib)(c + is)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fope.device import model_device
from fope.model import TransformerLM

__all__ = ["Activations", "capture_activations", "complex_pairs", "model_device"]


class Activations(NamedTuple):
    """Per layer: queries ``(B, Hq, T, D)`` and keys ``(B, Hkv, T, D)`` before the position encoding (float32), and
    the residual stream entering each block ``(B, T, d_model)`` (empty unless requested)."""

    queries: list[Tensor]
    keys: list[Tensor]
    block_inputs: list[Tensor]


@torch.no_grad()
def capture_activations(
    model: TransformerLM, input_ids: Tensor, positions: Tensor | None = None, *, block_inputs: bool = False
) -> Activations:
    """Run ``model.hidden_states`` on ``input_ids`` ``(B, T)`` and keep every layer's un-rotated queries and keys."""
    if not isinstance(model, TransformerLM):
        raise TypeError(f"model must be a fope TransformerLM; got {type(model).__name__}")
    queries: list[Tensor] = []
    keys: list[Tensor] = []
    inputs: list[Tensor] = []
    handles = []

    def keep_qk(attention: torch.nn.Module):
        def hook(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
            batch, length, _ = output.shape
            heads, kv_heads, dim = attention.num_heads, attention.num_kv_heads, attention.head_dim
            q, k, _ = output.split((heads * dim, kv_heads * dim, kv_heads * dim), dim=-1)
            q = q.view(batch, length, heads, dim).transpose(1, 2)
            k = k.view(batch, length, kv_heads, dim).transpose(1, 2)
            if attention.q_norm is not None:
                q, k = attention.q_norm(q), attention.k_norm(k)
            queries.append(q.float())
            keys.append(k.float())

        return hook

    def keep_input(module: torch.nn.Module, args: tuple) -> None:
        inputs.append(args[0].float())

    was_training = model.training
    try:
        model.eval()
        for block in model.layers:
            handles.append(block.attention.qkv_proj.register_forward_hook(keep_qk(block.attention)))
            if block_inputs:
                handles.append(block.register_forward_pre_hook(keep_input))
        model.hidden_states(input_ids.to(model_device(model)), positions)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Activations(queries, keys, inputs)


def complex_pairs(x: Tensor, rotary_dim: int, layout: str) -> Tensor:
    """The rotary pairs of ``x`` ``(..., D)`` as complex ``a + ib`` ``(..., rotary_dim / 2)`` (complex128).

    "half": pair ``j`` is dims ``(j, j + P)``; "interleaved": dims ``(2j, 2j + 1)``; dims past ``rotary_dim`` are
    left out.
    """
    pairs = rotary_dim // 2
    x = x[..., :rotary_dim].double()
    if layout == "half":
        real, imag = x[..., :pairs], x[..., pairs:]
    elif layout == "interleaved":
        real, imag = x[..., 0::2], x[..., 1::2]
    else:
        raise ValueError(f"layout must be 'half' or 'interleaved'; got {layout!r}")
    return torch.complex(real, imag)
