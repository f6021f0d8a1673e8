"""fope: Fourier Position Embedding, its baselines, a small-LM lab and length-generalization evaluation."""

from fope.model import ModelConfig, TransformerLM
from fope.positions import (
    POSITION_ENCODINGS,
    ALiBi,
    FoPE,
    NoPE,
    PositionEncoding,
    RoPE,
    apply_rotary,
    build_position_encoding,
)

__version__ = "0.1.0"

__all__ = [
    "POSITION_ENCODINGS",
    "ALiBi",
    "FoPE",
    "ModelConfig",
    "NoPE",
    "PositionEncoding",
    "RoPE",
    "TransformerLM",
    "__version__",
    "apply_rotary",
    "build_position_encoding",
]
