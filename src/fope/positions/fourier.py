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

from fope.checks import check_seed
from fope.kernels import RotarySeries
from fope.positions._checks import (
    LAYOUTS,
    check_choice,
    check_float,
    check_heads,
    check_int,
    check_rotary_dims,
)
from fope.positions.frequencies import (
    check_precision,
    floor_frequency,
    num_kept_frequencies,
    rope_frequencies,
    scaled_frequencies,
)
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
    num_heads: int,
    num_frequencies: int,
    output_dim: int,
    sigma: float,
    generator: torch.Generator | None = None,
    *,
    shared: bool = False,
) -> Tensor:
    """The authors' "eye_xavier_norm" init ``E + N`` of shape ``(Hc, K, d_out)``.

    Per-head coefficients: ``N = xavier_normal_(empty(Hc, K, d_out), gain=sigma)``; PyTorch's fan rule on a 3-D tensor
    gives ``std = sigma * sqrt(2 / (K*d_out + Hc*d_out))``, not ``sigma``. ``shared=True`` (one set for all heads, the
    authors' ``fourier_separate_head=False`` and xtuner's shared buffer) draws ``N`` on the 2-D ``(K, d_out)`` tensor
    those references hold, ``std = sigma * sqrt(2 / (K + d_out))``, and returns it as ``(1, K, d_out)``.
    """
    if shared and num_heads != 1:
        raise ValueError(f"shared coefficients have one head; got num_heads={num_heads} with shared=True")
    noise = torch.zeros(num_frequencies, output_dim) if shared else torch.zeros(num_heads, num_frequencies, output_dim)
    if sigma > 0:
        nn.init.xavier_normal_(noise, gain=sigma, generator=generator)
    if shared:
        noise = noise.unsqueeze(0)
    return strided_identity(num_frequencies, output_dim) + noise


def resolve_output_dim(output_dim: object, num_kept: int, rotary_dim: int, *, keep_zeroed: bool = False) -> int:
    """``d_out``: "official" ``min(K, rotary_dim // 4)`` (rotary_dim >= 4), "square" ``K``, or an int in
    ``[1, rotary_dim / 2]``.

    With ``keep_zeroed`` (the authors' ``fourier_ignore_zero=False``) "official" is ``rotary_dim // 2``, their rule
    there, and ``num_kept`` is the number of series terms.
    """
    if output_dim == "official":
        if keep_zeroed:
            return rotary_dim // 2
        if rotary_dim < 4:  # rotary_dim // 4 == 0: no output pair
            raise ValueError(
                f"output_dim='official' is min(K, rotary_dim // 4) = 0 pairs at rotary_dim={rotary_dim}: it needs "
                f"head_dim (rotary_dim) >= 4; use a larger head_dim, or output_dim='square' or 1"
            )
        return min(num_kept, rotary_dim // 4)
    if isinstance(output_dim, str) and output_dim != "square":
        raise ValueError(f"output_dim must be 'official', 'square' or an int; got {output_dim!r}")
    value = num_kept if output_dim == "square" else check_int("output_dim", output_dim, minimum=1)
    if output_dim == "square" and value > rotary_dim // 2:
        raise ValueError(
            f"output_dim='square' gives {value} output pairs (one per series term) but rotary_dim / 2 = "
            f"{rotary_dim // 2}; use 'official' or an int <= {rotary_dim // 2}"
        )
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
    frequencies; zeroed ones stay zero; FoPE+YaRN applies no attention temperature unless the scaling dict sets
    ``"temperature": True`` (or an ``attention_factor``). Coefficients are frozen buffers unless ``learnable=True``;
    ``seed`` makes them independent of the global RNG (identical on every data-parallel rank).

    Two switches reproduce the authors' other settings: ``frequency_dim`` (their ``fourier_dim`` when above head_dim)
    generates the frequency ladder ``theta ** (-2i / frequency_dim)``, ``i < frequency_dim / 2``, so the series runs
    over more, finer frequencies than there are pairs; ``keep_zeroed=True`` (their ``fourier_ignore_zero=False``) keeps
    the zeroed frequencies in the series as constant terms (``cos 0 = 1``, ``sin 0 = 0``): coefficients
    ``(Hc, frequency_dim / 2, d_out)`` with "official" ``d_out = rotary_dim / 2``. ``frequency_precision``: the
    frequencies and the floor comparison in the references' float32 arithmetic (default: their K and frequencies bit for
    bit) or ``"float64"`` (``fope.positions.frequencies``).
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
        frequency_dim: int | None = None,
        keep_zeroed: bool = False,
        frequency_precision: str = "float32",
    ) -> None:
        super().__init__()
        self.head_dim, self.rotary_dim = check_rotary_dims(head_dim, rotary_dim)
        self.num_heads, self.num_kv_heads = check_heads(num_heads, num_kv_heads)
        self.train_length = check_int("train_length", train_length, minimum=1)
        self.theta = check_float("theta", theta, minimum=1.0, strict=True)
        self.sigma = check_float("sigma", sigma, minimum=0.0)
        flags = {
            "clip_floor": clip_floor,
            "fourier": fourier,
            "share_heads": share_heads,
            "learnable": learnable,
            "keep_zeroed": keep_zeroed,
        }
        for name, flag in flags.items():
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False; got {flag!r}")
        self.clip_floor, self.fourier, self.share_heads, self.learnable = clip_floor, fourier, share_heads, learnable
        if keep_zeroed and not fourier:
            raise ValueError(
                "keep_zeroed=True keeps zeroed frequencies as constant terms of the Fourier series; "
                "it needs fourier=True"
            )
        self.keep_zeroed = keep_zeroed
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.zero_pad = check_choice("zero_pad", zero_pad, ZERO_PADS)
        if frequency_dim is None:
            frequency_dim = self.rotary_dim
        else:
            frequency_dim = check_int("frequency_dim", frequency_dim, minimum=2)
            if frequency_dim % 2 or frequency_dim < self.rotary_dim:
                raise ValueError(
                    f"frequency_dim must be an even int >= rotary_dim={self.rotary_dim} (None: rotary_dim); "
                    f"got {frequency_dim}"
                )
            if frequency_dim > self.rotary_dim and not fourier:
                raise ValueError(
                    f"frequency_dim={frequency_dim} > rotary_dim={self.rotary_dim} gives more frequencies than pairs, "
                    "which only a Fourier series can mix: it needs fourier=True"
                )
        self.frequency_dim = frequency_dim
        self.scaling = _fope_scaling(scaling)
        if seed is not None:
            seed = check_seed("seed", seed)
        self.seed = seed

        self.frequency_precision = check_precision(frequency_precision)
        num_frequencies = frequency_dim // 2
        base = rope_frequencies(frequency_dim, self.theta, frequency_precision)
        if num_inv_freq is not None:
            if not clip_floor:
                raise ValueError(
                    "num_inv_freq keeps only the first frequencies, which is floor clipping: it needs clip_floor=True"
                )
            num_kept = check_int("num_inv_freq", num_inv_freq, minimum=1)
            if num_kept > num_frequencies:
                limit = "rotary_dim" if frequency_dim == self.rotary_dim else "frequency_dim"
                raise ValueError(f"num_inv_freq must be <= {limit} / 2 = {num_frequencies}; got {num_kept}")
        elif clip_floor:
            num_kept = num_kept_frequencies(base, self.train_length)
            if num_kept == 0:
                raise ValueError(
                    f"train_length={self.train_length} keeps no frequency: every frequency is below the floor "
                    f"2*pi/train_length={floor_frequency(self.train_length):.4f} (the highest is 1.0); "
                    "use train_length >= 7 or clip_floor=False"
                )
        else:
            num_kept = num_frequencies
        self.num_kept = num_kept
        num_terms = num_frequencies if keep_zeroed else num_kept

        if fourier:
            self.output_dim = resolve_output_dim(output_dim, num_terms, self.rotary_dim, keep_zeroed=keep_zeroed)
        else:
            if output_dim not in ("official", "square", num_kept):
                raise ValueError(
                    f"fourier=False keeps one pair per kept frequency (output_dim={num_kept}); "
                    f"got output_dim={output_dim!r}"
                )
            self.output_dim = num_kept
            self.zero_pad = "identity"  # zero frequency: cos(0) = 1, sin(0) = 0, as in the authors' RoPE path

        frequencies, self.attention_factor = scaled_frequencies(
            frequency_dim, self.theta, self.scaling, frequency_precision
        )
        self.register_buffer("inv_freq", frequencies[:num_kept].to(torch.float32), persistent=False)

        coef_heads = 1 if share_heads else self.num_kv_heads
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        init_sigma = self.sigma if fourier else 0.0
        draw = {"shared": share_heads}
        cos_coef = fourier_coefficients(coef_heads, num_terms, self.output_dim, init_sigma, generator, **draw)
        sin_coef = fourier_coefficients(coef_heads, num_terms, self.output_dim, init_sigma, generator, **draw)
        if learnable:
            self.cos_coef = nn.Parameter(cos_coef)
            self.sin_coef = nn.Parameter(sin_coef)
        else:
            self.register_buffer("cos_coef", cos_coef)
            self.register_buffer("sin_coef", sin_coef)

    @property
    def num_terms(self) -> int:
        """Terms of each Fourier series: ``num_kept``, plus the zeroed frequencies with ``keep_zeroed``."""
        return self.cos_coef.shape[1]

    @property
    def num_coef_heads(self) -> int:
        """``Hc``: 1 with ``share_heads``, else ``num_kv_heads``."""
        return self.cos_coef.shape[0]

    def features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = self._angles(positions, self.inv_freq)
        cos_basis, sin_basis = angles.cos(), angles.sin()
        num_constant_terms = self.num_terms - self.num_kept
        if num_constant_terms:  # keep_zeroed: the zeroed frequencies are the constant terms cos 0 = 1, sin 0 = 0
            cos_basis = F.pad(cos_basis, (0, num_constant_terms), value=1.0)
            sin_basis = F.pad(sin_basis, (0, num_constant_terms), value=0.0)
        cos = torch.einsum("btk,hkj->bhtj", cos_basis, self.cos_coef.to(torch.float32))
        sin = torch.einsum("btk,hkj->bhtj", sin_basis, self.sin_coef.to(torch.float32))
        num_zero_pairs = self.rotary_dim // 2 - self.output_dim
        if num_zero_pairs:
            cos = F.pad(cos, (0, num_zero_pairs), value=1.0)
            sin = F.pad(sin, (0, num_zero_pairs), value=1.0 if self.zero_pad == "official" else 0.0)
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos, sin

    def series(self) -> RotarySeries:
        frequencies = F.pad(self.inv_freq, (0, self.num_terms - self.num_kept))  # keep_zeroed: zero frequencies
        return RotarySeries(
            frequencies,
            self.cos_coef.to(torch.float32),
            self.sin_coef.to(torch.float32),
            self.rotary_dim // 2,
            self.output_dim,
            1.0 if self.zero_pad == "official" else 0.0,
            self.attention_factor,
            self.layout,
        )

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, num_heads={self.num_heads}, "
            f"num_kv_heads={self.num_kv_heads}, train_length={self.train_length}, kept={self.num_kept}/"
            f"{self.frequency_dim // 2}, output_dim={self.output_dim}, sigma={self.sigma:g}, "
            f"clip_floor={self.clip_floor}, fourier={self.fourier}, zero_pad={self.zero_pad!r}, "
            f"share_heads={self.share_heads}, learnable={self.learnable}, layout={self.layout!r}, "
            f"scaling={self.scaling}"
            + (f", frequency_dim={self.frequency_dim}" if self.frequency_dim != self.rotary_dim else "")
            + (", frequency_precision='float64'" if self.frequency_precision == "float64" else "")
            + (", keep_zeroed=True" if self.keep_zeroed else "")
        )


def _fope_scaling(scaling: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The scaling dict FoPE uses: YaRN without its attention temperature unless asked (the authors' FoPE+YaRN).

    RoPE keeps YaRN's default ``0.1 * ln(factor) + 1``; FoPE adds ``"temperature": False`` when the dict gives neither
    ``temperature`` nor ``attention_factor``. Other types are returned as given (validated by ``scaled_frequencies``).
    """
    if scaling is None or not isinstance(scaling, Mapping):
        return scaling  # type: ignore[return-value]  (a non-mapping is refused by scaled_frequencies)
    options = dict(scaling)
    if options.get("type") == "yarn" and "temperature" not in options and "attention_factor" not in options:
        options["temperature"] = False
    return options
