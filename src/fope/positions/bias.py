"""Additive-bias position schemes (ALiBi) and the absence of one (NoPE)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fope.positions._checks import check_int, check_qk, resolve_positions
from fope.positions.base import PositionEncoding

__all__ = ["ALiBi", "NoPE", "alibi_slopes"]


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's geometric head slopes (Press et al. 2022), float64.

    For ``n`` a power of two: ``2 ** (-8 (h + 1) / n)``. Otherwise the slopes of the largest power of two ``m < n``
    followed by every other slope of ``2m`` heads, as in the authors' reference code.
    """

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    num_heads = check_int("num_heads", num_heads, minimum=1)
    if math.log2(num_heads).is_integer():
        slopes = power_of_two_slopes(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two_slopes(closest) + power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


class ALiBi(PositionEncoding):
    """Attention with linear biases: head ``h`` adds ``-slope_h * |i - j|`` to the score of query ``i`` and key ``j``.

    q and k pass through unchanged; the model adds ``attention_bias`` to the scores (under a causal mask only
    ``j <= i`` matters). Build the bias per query chunk at long context: it has ``Hq * Tq * Tk`` elements.
    """

    kind = "bias"
    _float32_tensors = ("slopes",)

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.register_buffer("slopes", alibi_slopes(self.num_heads).to(torch.float32), persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_qk(q, k, num_heads=self.num_heads)
        resolve_positions(positions, batch=q.shape[0], length=q.shape[2], device=q.device)
        return q, k

    def attention_bias(self, q_positions: Tensor, k_positions: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """``-slope_h * |q - k|`` of shape ``(Hq, Tq, Tk)``, or ``(B, Hq, Tq, Tk)`` if either positions are ``(B, T)``.

        Distances are computed in float32 and the result is cast to ``dtype`` (pass the attention compute dtype).
        """
        q_positions = resolve_positions(
            q_positions, batch=_batch_of(q_positions), length=q_positions.shape[-1], device=self.slopes.device
        )
        k_positions = resolve_positions(
            k_positions, batch=_batch_of(k_positions), length=k_positions.shape[-1], device=self.slopes.device
        )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype (the attention's); got {dtype!r}")
        batches = {
            q_positions.shape[0] if q_positions.dim() == 2 else 1,
            k_positions.shape[0] if k_positions.dim() == 2 else 1,
        }
        if len(batches - {1}) > 1:
            raise ValueError(
                f"query and key positions of shape (B, T) must have one batch size (or 1); got "
                f"{tuple(q_positions.shape)} and {tuple(k_positions.shape)}"
            )
        distance = (q_positions.to(torch.float32).unsqueeze(-1) - k_positions.to(torch.float32).unsqueeze(-2)).abs()
        if distance.dim() == 2:
            return (-self.slopes.view(-1, 1, 1) * distance).to(dtype)
        return (-self.slopes.view(1, -1, 1, 1) * distance.unsqueeze(1)).to(dtype)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


def _batch_of(positions: object) -> int:
    if not isinstance(positions, Tensor):
        raise TypeError(f"positions must be an integer torch.Tensor of shape (T,) or (B, T); got {type(positions)}")
    if positions.dim() not in (1, 2):
        raise ValueError(f"positions must have shape (T,) or (B, T); got {tuple(positions.shape)}")
    return positions.shape[0] if positions.dim() == 2 else 1


class NoPE(PositionEncoding):
    """No position encoding: causal attention alone tells positions apart (Kazemnejad et al. 2023)."""

    kind = "none"

    def forward(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_qk(q, k)
        resolve_positions(positions, batch=q.shape[0], length=q.shape[2], device=q.device)
        return q, k
