"""Slow, independent float64 references written from the spec's formulas (docs/fope-spec.md), not from the package.

They share no code with ``fope.positions``: frequencies come from ``math``, the floor and the kept count from a loop,
the Fourier series from explicit sums, and each pair is rotated by an explicit 2x2 matrix (FoPE) or a complex
multiplication (RoPE).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def frequencies(rotary_dim: int, theta: float) -> list[float]:
    return [math.pow(theta, -2.0 * i / rotary_dim) for i in range(rotary_dim // 2)]


def kept_count(rotary_dim: int, theta: float, train_length: int) -> int:
    count = 0
    for w in frequencies(rotary_dim, theta):
        if w < 2 * math.pi / train_length:
            break
        count += 1
    return count


def pair_indices(pair: int, num_pairs: int, layout: str) -> tuple[int, int]:
    return (pair, pair + num_pairs) if layout == "half" else (2 * pair, 2 * pair + 1)


def fope_reference(
    x: Tensor,
    positions: Tensor,
    *,
    cos_coef: Tensor,
    sin_coef: Tensor,
    kept_frequencies: list[float],
    rotary_dim: int,
    zero_pad: str,
    layout: str,
    scale: float = 1.0,
) -> Tensor:
    """FoPE on ``x`` ``(B, H, T, D)``, positions ``(B, T)``; head ``h`` uses coefficient head ``h // (H // Hc)``."""
    batch, heads, length, _dim = x.shape
    coef_heads, num_kept, output_dim = cos_coef.shape
    num_pairs = rotary_dim // 2
    a_cos, a_sin = cos_coef.double(), sin_coef.double()
    out = x.double().clone()
    for b in range(batch):
        for t in range(length):
            n = float(positions[b, t])
            cos_basis = torch.tensor([math.cos(w * n) for w in kept_frequencies], dtype=torch.float64)
            sin_basis = torch.tensor([math.sin(w * n) for w in kept_frequencies], dtype=torch.float64)
            for h in range(heads):
                g = h // (heads // coef_heads)
                for j in range(num_pairs):
                    if j < output_dim:
                        c = sum(a_cos[g, k, j] * cos_basis[k] for k in range(num_kept))
                        s = sum(a_sin[g, k, j] * sin_basis[k] for k in range(num_kept))
                    else:
                        c = torch.tensor(1.0, dtype=torch.float64)
                        s = torch.tensor(1.0 if zero_pad == "official" else 0.0, dtype=torch.float64)
                    c, s = c * scale, s * scale
                    i1, i2 = pair_indices(j, num_pairs, layout)
                    rotation = torch.stack((torch.stack((c, -s)), torch.stack((s, c))))  # differentiable in c, s
                    pair = torch.stack((x[b, h, t, i1].double(), x[b, h, t, i2].double()))
                    out[b, h, t, i1], out[b, h, t, i2] = rotation @ pair
    return out


def rope_reference(
    x: Tensor, positions: Tensor, freqs: list[float], *, layout: str = "half", scale: float = 1.0
) -> Tensor:
    """RoPE as complex multiplication: pair ``a + ib`` times ``scale * exp(i * w * n)``; ``positions`` ``(B, T)``."""
    num_pairs = len(freqs)
    idx = [pair_indices(j, num_pairs, layout) for j in range(num_pairs)]
    first, second = [i for i, _ in idx], [i for _, i in idx]
    xd = x.double()
    z = torch.complex(xd[..., first], xd[..., second])  # (B, H, T, P)
    angle = positions.double()[:, None, :, None] * torch.tensor(freqs, dtype=torch.float64)
    z = z * scale * torch.exp(1j * angle)
    out = xd.clone()
    out[..., first], out[..., second] = z.real, z.imag
    return out
