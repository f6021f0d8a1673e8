"""What the diagnostics read from a model: per-layer queries and keys before the position encoding, block inputs.

Queries and keys are ``Attention.qkv`` of each attention layer's input, taken with a forward pre-hook: split into
heads and passed through the optional QK-norm as the attention does, before the position encoding
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

    def keep_qk(attention: torch.nn.Module, args: tuple) -> None:
        q, k, _ = attention.qkv(args[0])
        queries.append(q.float())
        keys.append(k.float())

    def keep_input(module: torch.nn.Module, args: tuple) -> None:
        inputs.append(args[0].float())

    was_training = model.training
    try:
        model.eval()
        for block in model.layers:
            handles.append(block.attention.register_forward_pre_hook(keep_qk))
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
