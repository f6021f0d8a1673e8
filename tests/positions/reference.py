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


def xavier_std(shape: tuple[int, ...], gain: float) -> float:
    """PyTorch's ``xavier_normal_`` std for a tensor of ``shape``: fan_in = shape[1] * rf, fan_out = shape[0] * rf."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def yarn_frequencies(
    inv_freq: list[float],
    *,
    dim: int,
    theta: float,
    original: int,
    scale: float,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    extrapolation: float = 1.0,
) -> list[float]:
    """The authors' ``RotaryEmbedding.extra_yarn`` (OLMo fork, olmo/model.py) on given frequencies, in float64."""

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    mask = [(1 - min(max((i - low) / (high - low), 0.0), 1.0)) * extrapolation for i in range(dim // 2)]
    return [w / scale * (1 - m) + w * m for w, m in zip(inv_freq, mask, strict=True)]


def olmo_fourier_frequencies(config: dict) -> tuple[list[float], int, int]:
    """(series frequencies, input_dim, output_dim) of the authors' ``FourierEmbedding`` for an OLMo model config.

    A transcription of their ``get_inv_freq`` (exponential ladder over ``dim``, ``len_extra`` PI/YARN before or after
    the floor clamp, floor ``rope_floor_freq_ratio * 2*pi/max_sequence_length`` clamped to zero, ``fourier_ignore_zero``
    dropping the zeros) and of the ``input_dim``/``output_dim`` rule; keys default as in their ``olmo/config.py``
    except the FoPE ones, which default to the paper's setting.
    """
    head_dim = config["d_model"] // config["n_heads"]
    fourier_dim = config.get("fourier_dim", 0)
    dim = fourier_dim if fourier_dim > head_dim else head_dim
    theta = float(config.get("rope_theta", 10000.0))
    length = config["max_sequence_length"]
    inv_freq = [1.0 / theta ** (2 * i / dim) for i in range(dim // 2)]

    def extend(freqs: list[float]) -> list[float]:
        original = config["len_extra_orig_length"]
        if config.get("len_extra_type", "PI") == "PI":
            return [w * original / length for w in freqs]
        return yarn_frequencies(
            freqs,
            dim=dim,
            theta=theta,
            original=original,
            scale=config.get("len_extra_yarn_scale", 16.0),
            beta_fast=config.get("len_extra_yarn_beta_fast", 32.0),
            beta_slow=config.get("len_extra_yarn_beta_slow", 1.0),
            extrapolation=config.get("len_extra_yarn_factor", 1.0),
        )

    extra, before = config.get("len_extra", False), config.get("len_extra_before_clamp", False)
    if extra and before:
        inv_freq = extend(inv_freq)
    if config.get("rope_clamp_floor_freq", True):
        floor = 2 * math.pi / length * config.get("rope_floor_freq_ratio", 1.0)
        inv_freq = [0.0 if w < floor else w for w in inv_freq]
    if extra and not before:
        inv_freq = extend(inv_freq)
    if config.get("fourier_ignore_zero", True):
        inv_freq = [w for w in inv_freq if w != 0.0]
        return inv_freq, len(inv_freq), min(len(inv_freq), head_dim // 4)
    return inv_freq, dim // 2, head_dim // 2


def cope_inv_freq(inv_freq: torch.Tensor, clip_low_n: int, *, hard: bool = False) -> torch.Tensor:
    """The CoPE / HardClip frequencies, transcribed from the released modeling_cope.py (hrlics/CoPE).

    ``clip = min(clip_low_n, freq_dim)``; the last ``clip`` entries of ``inv_freq`` (the lowest frequencies) are
    multiplied by ``0.5 * (1 + cos(linspace(0, pi, clip)))`` computed in float32 (CoPE), or set to 0 (HardClip).
    """
    freq_dim = inv_freq.numel()
    clip = min(clip_low_n, freq_dim)
    inv_freq = inv_freq.clone()
    if clip > 0:
        start_idx = freq_dim - clip
        if hard:
            inv_freq[start_idx:] = 0.0
        else:
            theta = torch.linspace(0.0, torch.pi, steps=clip, dtype=torch.float32)
            smooth_mask = 0.5 * (1.0 + torch.cos(theta))
            inv_freq[start_idx:] = inv_freq[start_idx:] * smooth_mask.to(inv_freq.dtype)
    return inv_freq
