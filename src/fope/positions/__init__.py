"""Position encodings behind one interface: ``q, k = pe(q, k, positions)`` and ``pe.attention_bias(...)``."""

from fope.positions._checks import resolve_positions
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
from fope.positions.registry import POSITION_ENCODINGS, STRUCTURAL_OPTIONS, build_position_encoding
from fope.positions.rotary import RoPE, RotaryEncoding, apply_rotary, rotate_half

__all__ = [
    "POSITION_ENCODINGS",
    "SCALING_SCHEMES",
    "STRUCTURAL_OPTIONS",
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
    "resolve_positions",
    "rope_frequencies",
    "rotate_half",
    "scaled_frequencies",
    "strided_identity",
]
