"""The one interface every position encoding implements."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class PositionEncoding(nn.Module):
    """``q, k = pe(q, k, positions=None)`` and ``pe.attention_bias(q_positions, k_positions)``.

    ``q`` has shape ``(B, Hq, T, D)``, ``k`` ``(B, Hkv, T, D)``; ``positions`` is an integer tensor ``(T,)`` or
    ``(B, T)`` (default ``arange(T)``). Rotary schemes transform q and k and return no bias; bias schemes leave q and k
    alone and return an additive ``(Hq, Tq, Tk)`` (or ``(B, Hq, Tq, Tk)``) bias.
    """

    #: "rotary", "bias" or "none": how the scheme reaches the attention scores.
    kind: str = "none"
    #: Buffers (and learnable coefficients) holding position math; they stay float32 when the module is cast
    #: (``model.to(torch.bfloat16)``).
    _float32_tensors: tuple[str, ...] = ()

    def attention_bias(
        self, q_positions: Tensor, k_positions: Tensor, *, dtype: torch.dtype = torch.float32
    ) -> Tensor | None:
        """Additive attention bias for these query/key positions, or None when the scheme has none."""
        return None

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> PositionEncoding:
        # Casting a model to bf16 must not round frequencies or coefficients: bf16 cannot even hold
        # consecutive integers above 256. Keep the float32 originals and only move them.
        saved = {}
        for name in self._float32_tensors:
            tensor = self._buffers.get(name)
            if tensor is None and self._parameters.get(name) is not None:
                tensor = self._parameters[name].data
            if tensor is not None:
                saved[name] = tensor
        super()._apply(fn, recurse)
        for name, original in saved.items():
            if name in self._buffers:
                moved = self._buffers[name]
                if moved.dtype != original.dtype:
                    self._buffers[name] = original.to(device=moved.device)
            else:
                parameter = self._parameters[name]
                if parameter.dtype != original.dtype:
                    parameter.data = original.to(device=parameter.device)
        return self
