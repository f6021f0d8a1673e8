"""FoPE: Fourier Position Embedding (Hua et al., ICML 2025), exactly as ``docs/fope-spec.md`` pins it down.

Each output rotary pair ``j < d_out`` of coefficient head ``h`` is a Fourier series over the ``K`` kept frequencies:

    c[h, j](n) = sum_k cos_coef[h, k, j] * cos(w_k * n)
    s[h, j](n) = sum_k sin_coef[h, k, j] * sin(w_k * n)

and the pair ``(a, b)`` becomes ``(a*c - b*s, b*c + a*s)``. Frequencies below the floor ``2*pi/train_length`` are
replaced by the zero frequency: pairs ``j >= d_out`` hold constants (``c = s = 1`` "official", ``c = 1, s = 0``
"identity").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fope.positions._checks import (
    LAYOUTS,
    check_choice,
    check_float,
    check_heads,
    check_int,
    check_rotary_dims,
)
from fope.positions.frequencies import floor_frequency, num_kept_frequencies, rope_frequencies, scaled_frequencies
from fope.positions.rotary import RotaryEncoding

__all__ = ["FoPE", "fourier_coefficients", "resolve_output_dim", "strided_identity"]

OUTPUT_DIMS = ("official", "square")
ZERO_PADS = ("official", "identity")


def strided_identity(num_frequencies: int, output_dim: int) -> Tensor:
    """``E[j * ceil(K / d_out), j] = 1`` where that row is ``< K`` (the identity when ``K == d_out``)."""
    eye = torch.zeros(num_frequencies, output_dim)
    stride = math.ceil(num_frequencies / output_dim)
    for j in range(output_dim):
        if j * stride < num_frequencies:
            eye[j * stride, j] = 1.0
    return eye


def fourier_coefficients(
    num_heads: int, num_frequencies: int, output_dim: int, sigma: float, generator: torch.Generator | None = None
) -> Tensor:
    """The authors' "eye_xavier_norm" init ``E + N``, ``N = xavier_normal_(empty(Hc, K, d_out), gain=sigma)``.

    PyTorch's fan rule on a 3-D tensor gives ``std = sigma * sqrt(2 / (K*d_out + Hc*d_out))``, not ``sigma``.
    """
    noise = torch.zeros(num_heads, num_frequencies, output_dim)
    if sigma > 0:
        nn.init.xavier_normal_(noise, gain=sigma, generator=generator)
    return strided_identity(num_frequencies, output_dim) + noise


def resolve_output_dim(output_dim: object, num_kept: int, rotary_dim: int) -> int:
    """``d_out``: "official" ``min(K, rotary_dim // 4)``, "square" ``K``, or an int in ``[1, rotary_dim / 2]``."""
    if output_dim == "official":
        return min(num_kept, rotary_dim // 4)
    if output_dim == "square":
        return num_kept
    if isinstance(output_dim, str):
        raise ValueError(f"output_dim must be 'official', 'square' or an int; got {output_dim!r}")
    value = check_int("output_dim", output_dim, minimum=1)
    if value > rotary_dim // 2:
        raise ValueError(f"output_dim must be <= rotary_dim / 2 = {rotary_dim // 2} (the number of pairs); got {value}")
    return value


class FoPE(RotaryEncoding):
    """Fourier Position Embedding: RoPE pairs as Fourier series over the well-trained frequencies.

    Defaults reproduce the authors' code. ``clip_floor`` zeroes frequencies below ``2*pi/train_length`` ("CF");
    ``fourier=False`` drops the Fourier series ("FS": identity coefficients, no noise, zeroed pairs are the identity,
    so it is RoPE with the under-trained frequencies set to zero and ``sigma``/``output_dim``/``zero_pad`` are unused);
    ``share_heads`` uses one coefficient set for all heads instead of one per key/value head; ``num_inv_freq`` keeps
    exactly that many leading frequencies (the Intern stack's rule). ``scaling`` (PI / YaRN / ...) rescales the kept
    frequencies; zeroed ones stay zero. Coefficients are frozen buffers unless ``learnable=True``; ``seed`` makes them
    independent of the global RNG (identical on every data-parallel rank).
    """

    _float32_tensors = ("inv_freq", "cos_coef", "sin_coef")

    def __init__(
        self,
        *,
        head_dim: int,
        num_heads: int,
        train_length: int,
        num_kv_heads: int | None = None,
        theta: float = 10000.0,
        sigma: float = 0.3,
        clip_floor: bool = True,
        fourier: bool = True,
        output_dim: str | int = "official",
        zero_pad: str = "official",
        share_heads: bool = False,
        learnable: bool = False,
        layout: str = "half",
        rotary_dim: int | None = None,
        num_inv_freq: int | None = None,
        seed: int | None = None,
        scaling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.head_dim, self.rotary_dim = check_rotary_dims(head_dim, rotary_dim)
        self.num_heads, self.num_kv_heads = check_heads(num_heads, num_kv_heads)
        self.train_length = check_int("train_length", train_length, minimum=1)
        self.theta = check_float("theta", theta, minimum=1.0, strict=True)
        self.sigma = check_float("sigma", sigma, minimum=0.0)
        for name, flag in (("clip_floor", clip_floor), ("fourier", fourier), ("share_heads", share_heads)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False; got {flag!r}")
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable must be True or False; got {learnable!r}")
        self.clip_floor, self.fourier, self.share_heads, self.learnable = clip_floor, fourier, share_heads, learnable
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.zero_pad = check_choice("zero_pad", zero_pad, ZERO_PADS)
        self.scaling = dict(scaling) if scaling is not None else None
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.seed = seed

        num_pairs = self.rotary_dim // 2
        base = rope_frequencies(self.rotary_dim, self.theta)
        if num_inv_freq is not None:
            if not clip_floor:
                raise ValueError(
                    "num_inv_freq keeps only the first frequencies, which is floor clipping: it needs clip_floor=True"
                )
            num_kept = check_int("num_inv_freq", num_inv_freq, minimum=1)
            if num_kept > num_pairs:
                raise ValueError(f"num_inv_freq must be <= rotary_dim / 2 = {num_pairs}; got {num_kept}")
        elif clip_floor:
            num_kept = num_kept_frequencies(base, self.train_length)
            if num_kept == 0:
                raise ValueError(
                    f"train_length={self.train_length} keeps no frequency: every frequency is below the floor "
                    f"2*pi/train_length={floor_frequency(self.train_length):.4f} (the highest is 1.0); "
                    "use train_length >= 7 or clip_floor=False"
                )
        else:
            num_kept = num_pairs
        self.num_kept = num_kept

        if fourier:
            self.output_dim = resolve_output_dim(output_dim, num_kept, self.rotary_dim)
        else:
            if output_dim not in ("official", "square", num_kept):
                raise ValueError(
                    f"fourier=False keeps one pair per kept frequency (output_dim={num_kept}); "
                    f"got output_dim={output_dim!r}"
                )
            self.output_dim = num_kept
            self.zero_pad = "identity"  # zero frequency: cos(0) = 1, sin(0) = 0, as in the authors' RoPE path

        frequencies, self.attention_factor = scaled_frequencies(self.rotary_dim, self.theta, scaling)
        self.register_buffer("inv_freq", frequencies[:num_kept].to(torch.float32), persistent=False)

        coef_heads = 1 if share_heads else self.num_kv_heads
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        init_sigma = self.sigma if fourier else 0.0
        cos_coef = fourier_coefficients(coef_heads, num_kept, self.output_dim, init_sigma, generator)
        sin_coef = fourier_coefficients(coef_heads, num_kept, self.output_dim, init_sigma, generator)
        if learnable:
            self.cos_coef = nn.Parameter(cos_coef)
            self.sin_coef = nn.Parameter(sin_coef)
        else:
            self.register_buffer("cos_coef", cos_coef)
            self.register_buffer("sin_coef", sin_coef)

    @property
    def num_coef_heads(self) -> int:
        """``Hc``: 1 with ``share_heads``, else ``num_kv_heads``."""
        return self.cos_coef.shape[0]

    def features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = self._angles(positions, self.inv_freq)
        cos = torch.einsum("btk,hkj->bhtj", angles.cos(), self.cos_coef.to(torch.float32))
        sin = torch.einsum("btk,hkj->bhtj", angles.sin(), self.sin_coef.to(torch.float32))
        num_zero_pairs = self.rotary_dim // 2 - self.output_dim
        if num_zero_pairs:
            cos = F.pad(cos, (0, num_zero_pairs), value=1.0)
            sin = F.pad(sin, (0, num_zero_pairs), value=1.0 if self.zero_pad == "official" else 0.0)
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos, sin

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, num_heads={self.num_heads}, "
            f"num_kv_heads={self.num_kv_heads}, train_length={self.train_length}, kept={self.num_kept}/"
            f"{self.rotary_dim // 2}, output_dim={self.output_dim}, sigma={self.sigma:g}, "
            f"clip_floor={self.clip_floor}, fourier={self.fourier}, zero_pad={self.zero_pad!r}, "
            f"share_heads={self.share_heads}, learnable={self.learnable}, layout={self.layout!r}, "
            f"scaling={self.scaling}"
        )
