"""Position encodings behind one interface: ``q, k = pe(q, k, positions)`` and ``pe.attention_bias(...)``."""

from fope.positions.base import PositionEncoding
from fope.positions.bias import ALiBi, NoPE, alibi_slopes
from fope.positions.fourier import FoPE, fourier_coefficients, strided_identity
from fope.positions.frequencies import (
    SCALING_SCHEMES,
    floor_frequency,
    num_kept_frequencies,
    rope_frequencies,
    scaled_frequencies,
)
from fope.positions.registry import POSITION_ENCODINGS, build_position_encoding
from fope.positions.rotary import RoPE, RotaryEncoding, apply_rotary, rotate_half

__all__ = [
    "POSITION_ENCODINGS",
    "SCALING_SCHEMES",
    "ALiBi",
    "FoPE",
    "NoPE",
    "PositionEncoding",
    "RoPE",
    "RotaryEncoding",
    "alibi_slopes",
    "apply_rotary",
    "build_position_encoding",
    "floor_frequency",
    "fourier_coefficients",
    "num_kept_frequencies",
    "rope_frequencies",
    "rotate_half",
    "scaled_frequencies",
    "strided_identity",
]
