"""Rotary frequency schemes as pure functions: RoPE base frequencies, FoPE's floor, PI / NTK / YaRN / p-RoPE.

Every scheme maps the base frequencies ``w_i = theta ** (-2i / rotary_dim)`` (decreasing in ``i``) to new frequencies
and an attention factor, in the dtype of the base frequencies. ``precision="float32"`` (the default) is the references'
arithmetic: the authors' fork, transformers, vLLM, SGLang, LMDeploy and xtuner all compute
``1 / theta ** (arange(0, d, 2).float() / d)`` in float32 and compare it with the floor ``2*pi/L`` in float32, so a
checkpoint's kept frequencies and count K are theirs bit for bit. ``precision="float64"`` computes in float64 (rounded
once to float32 by the modules): up to 1 ulp closer to the exact values, and at some lengths one frequency more or
fewer above the floor than the references keep. ``SCALING_SCHEMES`` is the one place that lists them all;
``scaled_frequencies`` resolves a config dict such as ``{"type": "yarn", "factor": 16, "original_max_position": 512}``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from fope.checks import check_bool, check_float

__all__ = [
    "PRECISIONS",
    "SCALING_SCHEMES",
    "floor_frequency",
    "floor_scaling",
    "linear_scaling",
    "ntk_scaling",
    "num_kept_frequencies",
    "p_rope_scaling",
    "rope_frequencies",
    "scaled_frequencies",
    "yarn_attention_factor",
    "yarn_scaling",
]


#: Arithmetic of the frequency ladder and the floor comparison: the references' float32 (default), or float64.
PRECISIONS = ("float32", "float64")


def check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"frequency precision must be one of {list(PRECISIONS)}; got {precision!r}")
    return str(precision)


def rope_frequencies(rotary_dim: int, theta: float = 10000.0, precision: str = "float32") -> Tensor:
    """RoPE frequencies ``w_i = theta ** (-2i / rotary_dim)`` for ``i = 0 .. rotary_dim/2 - 1``, on the CPU (even
    under a meta device).

    ``"float32"``: a float32 tensor computed as every reference does, ``1.0 / (theta ** (arange(0, d, 2).float() /
    d))``; ``"float64"``: a float64 tensor of ``theta ** (-2i / d)``.
    """
    if check_precision(precision) == "float32":
        exponent = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device="cpu").float() / rotary_dim
        return 1.0 / (float(theta) ** exponent)
    pair_index = torch.arange(rotary_dim // 2, dtype=torch.float64, device="cpu")
    return float(theta) ** (-2.0 * pair_index / rotary_dim)


def _precision_of(frequencies: Tensor) -> str:
    return "float64" if frequencies.dtype == torch.float64 else "float32"


def floor_frequency(train_length: int) -> float:
    """FoPE's floor ``2*pi / train_length``: a lower frequency never completes a period inside the training window."""
    return 2.0 * math.pi / train_length


def num_kept_frequencies(frequencies: Tensor, train_length: int, *, strict: bool = False) -> int:
    """Number ``K`` of leading frequencies at or above the floor (strictly above it with ``strict=True``).

    The authors' code keeps ``w >= 2*pi/L``; the Intern stack keeps ``w > 2*pi/max_position_embeddings``. The
    comparison runs in the frequencies' dtype, as in the references (a float32 tensor against the Python float
    ``2*pi/L``, which torch rounds to float32). Frequencies are decreasing, so the kept ones are always a prefix.
    """
    floor = floor_frequency(train_length)
    kept = frequencies > floor if strict else frequencies >= floor
    return int(kept.sum())


def linear_scaling(base: Tensor, *, theta: float, rotary_dim: int, factor: float) -> tuple[Tensor, float]:
    """Position interpolation (PI): ``w_i / factor``, i.e. positions squeezed by ``factor``."""
    return base / factor, 1.0


def ntk_scaling(base: Tensor, *, theta: float, rotary_dim: int, factor: float) -> tuple[Tensor, float]:
    """NTK-aware scaling: the base grows to ``theta * factor ** (d / (d - 2))``; the highest frequency is unchanged."""
    new_theta = theta * factor ** (rotary_dim / (rotary_dim - 2))
    return rope_frequencies(rotary_dim, new_theta, _precision_of(base)), 1.0


def yarn_attention_factor(factor: float) -> float:
    """YaRN's attention temperature ``0.1 * ln(factor) + 1`` (applied to q and k alike), 1 when not extending."""
    return 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0


def yarn_scaling(
    base: Tensor,
    *,
    theta: float,
    rotary_dim: int,
    factor: float,
    original_max_position: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    attention_factor: float | None = None,
    truncate: bool = True,
    temperature: bool = True,
) -> tuple[Tensor, float]:
    """YaRN (Peng et al. 2023), as in Hugging Face ``transformers``.

    A pair that turns more than ``beta_fast`` times inside ``original_max_position`` keeps its frequency, one that turns
    fewer than ``beta_slow`` times is interpolated (``w / factor``), and a linear ramp over the pair index joins them.
    The pair index at which a frequency turns ``r`` times is ``d * ln(L / (2*pi*r)) / (2 * ln(theta))``.
    ``attention_factor`` defaults to ``0.1 * ln(factor) + 1`` (YaRN's temperature on q and k); ``temperature=False``
    switches it off (factor 1), as the authors' FoPE+YaRN does (``FoPE`` makes that its default); an explicit
    ``attention_factor`` is used as given.
    """
    if not isinstance(temperature, bool):
        raise TypeError(f"yarn temperature must be True or False; got {temperature!r}")
    if attention_factor is not None and not temperature:
        raise ValueError(
            f"yarn temperature=False means attention factor 1; got attention_factor={attention_factor!r} as well "
            "(give one of them)"
        )

    def pair_index_turning(rotations: float) -> float:
        return rotary_dim * math.log(original_max_position / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_index_turning(beta_fast), pair_index_turning(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if low == high:
        high += 0.001  # avoid a division by zero, as transformers does
    ramp = ((torch.arange(rotary_dim // 2, dtype=torch.float64, device="cpu") - low) / (high - low)).clamp(0, 1)
    ramp = ramp.to(base.dtype)
    keep_weight = 1.0 - ramp  # 1: extrapolate (keep w), 0: interpolate (w / factor)
    frequencies = base / factor * (1 - keep_weight) + base * keep_weight
    if attention_factor is None:
        attention_factor = yarn_attention_factor(factor) if temperature else 1.0
    return frequencies, float(attention_factor)


def p_rope_scaling(base: Tensor, *, theta: float, rotary_dim: int, drop_fraction: float) -> tuple[Tensor, float]:
    """p-RoPE (Barbero et al. 2024): the lowest ``round(drop_fraction * d/2)`` frequencies become the zero frequency."""
    if not 0.0 <= drop_fraction <= 1.0:
        raise ValueError(f"p-rope drop_fraction must be in [0, 1]; got {drop_fraction!r}")
    num_pairs = base.shape[0]
    num_dropped = round(drop_fraction * num_pairs)
    frequencies = base.clone()
    if num_dropped:
        frequencies[num_pairs - num_dropped :] = 0.0
    return frequencies, 1.0


def floor_scaling(base: Tensor, *, theta: float, rotary_dim: int, train_length: int) -> tuple[Tensor, float]:
    """HoPE-style: frequencies below the floor ``2*pi / train_length`` become the zero frequency (position-free pairs).

    The same map as FoPE without the Fourier series (``FoPE(fourier=False)``), expressed as a RoPE frequency scheme.
    """
    if isinstance(train_length, bool) or not isinstance(train_length, int) or train_length < 1:
        raise ValueError(f"train_length must be an int >= 1; got {train_length!r}")
    frequencies = base.clone()
    frequencies[base < floor_frequency(train_length)] = 0.0
    return frequencies, 1.0


def _num_clipped(base: Tensor, train_length: int, num_clipped: int | None) -> int:
    """``num_clipped`` if given, else the number of frequencies below the floor ``2*pi / train_length``."""
    if isinstance(train_length, bool) or not isinstance(train_length, int) or train_length < 1:
        raise ValueError(f"train_length must be an int >= 1; got {train_length!r}")
    if num_clipped is None:
        return int((base < floor_frequency(train_length)).sum())
    if isinstance(num_clipped, bool) or not isinstance(num_clipped, int) or num_clipped < 0:
        raise ValueError(f"num_clipped must be an int >= 0 (None: those below the floor); got {num_clipped!r}")
    return min(num_clipped, base.shape[0])


def cope_scaling(
    base: Tensor, *, theta: float, rotary_dim: int, train_length: int, num_clipped: int | None = None
) -> tuple[Tensor, float]:
    """CoPE, "clipped RoPE" (Li et al. 2026, arXiv 2602.05258): the lowest ``n`` frequencies softly clipped.

    As the authors' released code: ``w[D/2 - n:] *= 0.5 * (1 + cos(linspace(0, pi, n)))``, a raised-cosine taper from
    1 (the first clipped frequency is kept) to 0 (the lowest becomes the zero frequency); ``n = 1`` changes nothing.
    They clip ``n = 20`` of Llama-3's 64; the default here is the number of frequencies below FoPE's floor
    ``2*pi / train_length`` (29 of 64 for Llama-3-8B at 8k), so that CoPE, HardClip and FoPE act on the same
    under-trained band at any scale. The taper is computed in float64 and applied in the frequencies' dtype.
    """
    n = _num_clipped(base, train_length, num_clipped)
    frequencies = base.clone()
    if n:
        taper = 0.5 * (1.0 + torch.cos(torch.linspace(0.0, math.pi, n, dtype=torch.float64)))
        frequencies[base.shape[0] - n :] *= taper.to(frequencies.dtype)
    return frequencies, 1.0


def hardclip_scaling(
    base: Tensor, *, theta: float, rotary_dim: int, train_length: int, num_clipped: int | None = None
) -> tuple[Tensor, float]:
    """HardClip (CoPE's baseline): the lowest ``n`` frequencies set to zero (default ``n``: those below the floor).

    With the default ``n`` it is the floor scheme ("hope", FoPE without the Fourier series); CoPE's argument is that
    this hard cut causes spectral leakage, ringing in the attention scores over distance.
    """
    n = _num_clipped(base, train_length, num_clipped)
    frequencies = base.clone()
    if n:
        frequencies[base.shape[0] - n :] = 0.0
    return frequencies, 1.0


SCALING_SCHEMES: dict[str, Callable[..., tuple[Tensor, float]]] = {
    "linear": linear_scaling,
    "pi": linear_scaling,
    "ntk": ntk_scaling,
    "yarn": yarn_scaling,
    "p-rope": p_rope_scaling,
    "floor": floor_scaling,
    "cope": cope_scaling,
    "hardclip": hardclip_scaling,
}


def _scheme_options(scheme: Callable[..., Any]) -> tuple[set[str], set[str]]:
    """(all option names, required option names) of a scheme, excluding the common arguments."""
    params = [
        p
        for p in inspect.signature(scheme).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in ("theta", "rotary_dim")
    ]
    return {p.name for p in params}, {p.name for p in params if p.default is inspect.Parameter.empty}


#: Scaling options that must be finite numbers above 0 (``attention_factor`` may also be None: the scheme's default).
POSITIVE_OPTIONS = ("factor", "original_max_position", "beta_fast", "beta_slow", "attention_factor")


def scaled_frequencies(
    rotary_dim: int, theta: float = 10000.0, scaling: Mapping[str, Any] | None = None, precision: str = "float32"
) -> tuple[Tensor, float]:
    """Frequencies (shape ``(rotary_dim/2,)``, in ``precision``) and attention factor for a scaling config (or plain
    RoPE)."""
    base = rope_frequencies(rotary_dim, theta, precision)
    if scaling is None:
        return base, 1.0
    if not isinstance(scaling, Mapping):
        raise TypeError(
            f"scaling must be None or a mapping like {{'type': 'yarn', 'factor': 4, ...}}; got {type(scaling).__name__}"
        )
    options = dict(scaling)
    kind = options.pop("type", None)
    if kind not in SCALING_SCHEMES:
        raise ValueError(f"scaling['type'] must be one of {sorted(SCALING_SCHEMES)}; got {kind!r}")
    scheme = SCALING_SCHEMES[kind]
    accepted, required = _scheme_options(scheme)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"scaling type {kind!r} does not accept {unknown}; accepted options: {sorted(accepted)}")
    missing = sorted(required - set(options))
    if missing:
        raise TypeError(f"scaling type {kind!r} needs {missing}; accepted options: {sorted(accepted)}")
    for name, value in options.items():
        if name in POSITIVE_OPTIONS and not (name == "attention_factor" and value is None):
            check_float(f"scaling[{name!r}]", value, minimum=0.0, strict=True)
        elif name == "drop_fraction":
            check_float(f"scaling[{name!r}]", value, minimum=0.0)
        elif name in ("truncate", "temperature"):
            check_bool(f"scaling[{name!r}]", value)
    if kind == "ntk" and rotary_dim < 4:
        raise ValueError(
            f"ntk scaling grows the base by factor ** (d / (d - 2)): it needs rotary_dim >= 4; got {rotary_dim}"
        )
    if kind == "yarn":
        defaults = inspect.signature(yarn_scaling).parameters
        fast = options.get("beta_fast", defaults["beta_fast"].default)
        slow = options.get("beta_slow", defaults["beta_slow"].default)
        if fast <= slow:
            raise ValueError(
                f"yarn beta_fast must be above beta_slow (rotations of the kept and of the interpolated pairs); got "
                f"{fast} and {slow}"
            )
    return scheme(base, theta=theta, rotary_dim=rotary_dim, **options)
