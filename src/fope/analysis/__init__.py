"""Spectrum diagnostics: why RoPE fails past the training length and what FoPE changes (``docs/analysis.md``)."""

from fope.analysis.attention import (
    LayerAttention,
    attention_blocks,
    attention_statistics,
    context_behaviour,
    context_length,
    distance_buckets,
    layer_attention,
    summarize_attention,
)
from fope.analysis.capture import Activations, capture_activations, complex_pairs
from fope.analysis.damage import (
    ToneProbe,
    block_stages,
    position_leakage,
    position_power_spectrum,
    probe_bins,
    tone_probe,
)
from fope.analysis.frequencies import RotaryBasis, coefficient_mixing, frequency_map, rotary_basis
from fope.analysis.magnitudes import pair_magnitudes
from fope.analysis.pipeline import analyze, compare_behaviour, token_windows
from fope.analysis.spectrum import (
    PairProducts,
    StationarySpectrum,
    pair_products,
    stationary_scores,
    stationary_spectrum,
)

__all__ = [
    "Activations",
    "LayerAttention",
    "PairProducts",
    "RotaryBasis",
    "StationarySpectrum",
    "ToneProbe",
    "analyze",
    "attention_blocks",
    "attention_statistics",
    "block_stages",
    "capture_activations",
    "coefficient_mixing",
    "compare_behaviour",
    "complex_pairs",
    "context_behaviour",
    "context_length",
    "distance_buckets",
    "frequency_map",
    "layer_attention",
    "pair_magnitudes",
    "pair_products",
    "position_leakage",
    "position_power_spectrum",
    "probe_bins",
    "rotary_basis",
    "stationary_scores",
    "stationary_spectrum",
    "summarize_attention",
    "token_windows",
    "tone_probe",
]
