"""FoPE checkpoints of the authors' OLMo fork (``docs/fope-spec.md`` section 7, ``docs/transformers.md``).

``olmo_fope_options`` maps the fork's config keys to ``fope.FoPE`` options; ``load_olmo_fope`` builds one module per
block and loads its coefficients. A shape or a setting that ``FoPE`` does not reproduce is an error, never an
approximation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from os import PathLike
from typing import Any

from torch import Tensor

from fope.integrations.weights import Source, config_section, load_coefficients, read_config, read_tensors
from fope.positions import FoPE
from fope.positions.frequencies import floor_frequency, scaled_frequencies

__all__ = ["OLMO_DEFAULTS", "OLMO_NEUTRAL", "load_olmo_fope", "olmo_fope_options"]

#: Values the OLMo-fork loader assumes for absent keys: the spec's reference setting (docs/fope-spec.md); every other
#: key takes the default of the authors' ``olmo/config.py``.
OLMO_DEFAULTS: dict[str, Any] = {
    "fourier": False,
    "fourier_dim": 0,
    "fourier_init_norm_gain": 0.3,
    "fourier_separate_basis": True,
    "fourier_separate_head": True,
    "fourier_learnable": False,
    "fourier_norm": False,
    "fourier_ignore_zero": True,
    "rope": True,
    "rope_clamp_floor_freq": True,
    "rope_clamp_floor_to_zero": True,
    "rope_theta": 10000.0,
}
#: Keys of the authors' ``olmo/config.py`` that change the position math only away from these values (their defaults);
#: the loader refuses any other value by name. Keys it maps (len_extra*, rope_floor_freq_ratio, rope_clamp_upper_freq,
#: fourier_*) are handled in ``olmo_fope_options``.
OLMO_NEUTRAL: dict[str, tuple[Any, str]] = {
    "pos_emb": (True, "no position encoding at all"),
    "alibi": (False, "ALiBi biases added to FoPE"),
    "rope_init_distribution": ("exponential", "a frequency ladder other than theta ** (-2i / d)"),
    "rope_no_pos": (False, "every position set to 1"),
    "rope_learnable": (False, "trained frequencies"),
    "rope_include_neg_freq": (False, "every other frequency negated"),
    "rope_init_floor_freq": (0.0, "frequencies remapped to [floor, upper]"),
    "rope_init_upper_freq": (1.0, "frequencies remapped to [floor, upper]"),
    "rope_zero_freq_ratio": (-1.0, "a forced number of zero frequencies"),
    "rope_clamp_to_linear": (False, "frequencies snapped to multiples of 2*pi/max_sequence_length"),
    "fourier_norm": (False, "coefficients normalised in the forward pass"),
    "fourier_separate_basis": (True, "one matrix shared by the cos and sin series"),
}
_OLMO_EXTENSIONS = ("PI", "YARN")
_OLMO_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.pos_emb\.(cos|sin)_coef$")


def olmo_fope_options(config: Mapping[str, Any] | str | PathLike[str]) -> dict[str, Any]:
    """``FoPE`` arguments for a model config of the authors' OLMo fork (``OLMO_DEFAULTS`` fill absent keys).

    Every key of their ``olmo/config.py`` that changes the position math is mapped or refused by name (a ValueError
    naming the key, its value and what is accepted); ``OLMO_NEUTRAL`` lists the keys accepted at one value only.
    Mapped: ``d_model // n_heads`` -> head_dim, ``max_sequence_length`` -> train_length, ``rope_theta`` -> theta,
    ``fourier_init_norm_gain`` -> sigma, ``fourier_dim`` (when above head_dim; ignored otherwise) -> frequency_dim,
    ``fourier_ignore_zero=False`` -> keep_zeroed (``d_out = head_dim / 2``), ``fourier_separate_head=False`` ->
    share_heads, ``fourier_learnable`` -> learnable, ``rope_clamp_floor_freq`` -> clip_floor, ``rope_floor_freq_ratio``
    and ``len_extra_before_clamp`` -> num_inv_freq, ``len_extra`` PI -> ``scaling={"type": "linear"}``, YARN ->
    ``scaling={"type": "yarn", ..., "temperature": False}`` (their YaRN has no attention temperature).
    ``fourier_init`` and ``len_extra_fourier_expand`` only chose initialisations, which loaded weights replace;
    ``rope_full_precision`` is accepted at any value (FoPE computes positions in float32, spec section 5).
    """
    config = config_section(read_config(config), "model", "d_model")
    options = {**OLMO_DEFAULTS, **{key: value for key, value in config.items() if value is not None}}
    for key in ("d_model", "n_heads", "max_sequence_length"):
        if key not in options:
            raise KeyError(f"the OLMo config must give {key!r}; got keys {sorted(config)}")
    if not options["fourier"]:
        raise ValueError("the OLMo config has fourier=False: a RoPE model, with no FoPE coefficients to load")
    if not options["rope"]:
        raise ValueError("the OLMo config has rope=False: the authors' code builds no FoPE then; accepted: rope=True")
    for key, (neutral, meaning) in OLMO_NEUTRAL.items():
        if key in options and options[key] != neutral:
            raise _olmo_refusal(key, options[key], meaning, f"{key}={neutral!r}")

    num_heads = options["n_heads"]
    head_dim = options["d_model"] // num_heads
    length = options["max_sequence_length"]
    theta = float(options["rope_theta"])
    fourier_dim = options["fourier_dim"] or 0
    frequency_dim = fourier_dim if fourier_dim > head_dim else head_dim  # the authors' FourierEmbedding rule
    if frequency_dim % 2:
        raise ValueError(f"the OLMo config sets fourier_dim={fourier_dim}; accepted: an even number (or <= head_dim)")
    clip_floor = bool(options["rope_clamp_floor_freq"])
    if clip_floor and not options["rope_clamp_floor_to_zero"]:
        raise _olmo_refusal(
            "rope_clamp_floor_to_zero",
            options["rope_clamp_floor_to_zero"],
            "low frequencies raised to the floor instead of zeroed; the authors' code cannot build it either",
            "True with rope_clamp_floor_freq=True",
        )
    scaling, before_clamp = _olmo_extension(options, length)
    floor_ratio = float(options.get("rope_floor_freq_ratio", 1.0)) if clip_floor else 1.0
    if floor_ratio < 0:
        raise _olmo_refusal("rope_floor_freq_ratio", floor_ratio, "a negative floor", "a ratio >= 0")

    # The frequencies the authors' get_inv_freq clamps: scaled first when len_extra_before_clamp.
    frequencies, _ = scaled_frequencies(frequency_dim, theta, scaling if before_clamp else None)
    if options.get("rope_clamp_upper_freq", False):
        upper = math.pi * float(options.get("rope_upper_freq_ratio", 1.0))
        if not options.get("rope_clamp_upper_to_zero", True) or float(frequencies.max()) > upper:
            raise _olmo_refusal(
                "rope_clamp_upper_freq",
                True,
                f"frequencies above pi * rope_upper_freq_ratio = {upper:.4g} zeroed (the highest is "
                f"{float(frequencies.max()):.4g}); with rope_clamp_upper_to_zero=False the authors' code fails",
                "False, or an upper bound at or above every frequency with rope_clamp_upper_to_zero=True",
            )
    num_inv_freq = None
    if clip_floor and (floor_ratio != 1.0 or before_clamp):
        num_inv_freq = int((frequencies >= floor_frequency(length) * floor_ratio).sum())  # a prefix: decreasing
        if num_inv_freq == 0:
            raise ValueError(
                f"the OLMo config keeps no frequency above the floor {floor_ratio:g} * 2*pi/{length} "
                "(rope_floor_freq_ratio, len_extra_before_clamp); accepted: settings that keep at least one"
            )

    num_kv_heads = options.get("n_kv_heads") or (1 if options.get("multi_query_attention") else num_heads)
    separate_head = bool(options["fourier_separate_head"])
    if separate_head and num_kv_heads != num_heads:
        raise ValueError(
            f"the OLMo config has per-query-head coefficients (fourier_separate_head=True) with n_kv_heads="
            f"{num_kv_heads} < n_heads={num_heads}: each key would need one rotation per query head, while fope.FoPE "
            "keeps one per KV head"
        )
    result = {
        "head_dim": head_dim,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "train_length": length,
        "theta": theta,
        "sigma": float(options["fourier_init_norm_gain"]),
        "clip_floor": clip_floor,
        "output_dim": "official",
        "zero_pad": "official",
        "share_heads": not separate_head,
        "learnable": bool(options["fourier_learnable"]),
        "layout": "half",
    }
    if frequency_dim != head_dim:
        result["frequency_dim"] = frequency_dim
    if not options["fourier_ignore_zero"]:
        result["keep_zeroed"] = True  # input dim frequency_dim / 2 (zeroed ones constant), d_out = head_dim / 2
    if num_inv_freq is not None:
        result["num_inv_freq"] = num_inv_freq
    if scaling is not None:
        result["scaling"] = scaling
    return result


def _olmo_refusal(key: str, value: object, meaning: str, accepted: str) -> ValueError:
    return ValueError(
        f"the OLMo config sets {key}={value!r} ({meaning}), which fope.FoPE does not implement; accepted: {accepted}"
    )


def _olmo_extension(options: Mapping[str, Any], length: int) -> tuple[dict[str, Any] | None, bool]:
    """(FoPE ``scaling``, applied before the floor clamp) for the authors' ``len_extra*`` keys."""
    if not options.get("len_extra", False):
        return None, False
    kind = options.get("len_extra_type", "PI")
    if kind not in _OLMO_EXTENSIONS:
        raise _olmo_refusal(
            "len_extra_type", kind, "an extension the authors' model code does not apply", f"one of {_OLMO_EXTENSIONS}"
        )
    original = options.get("len_extra_orig_length", 0)
    if isinstance(original, bool) or not isinstance(original, int) or original <= 0:
        raise _olmo_refusal("len_extra_orig_length", original, "len_extra needs the original length", "a positive int")
    if kind == "PI":
        scaling: dict[str, Any] = {"type": "linear", "factor": length / original}  # theirs: w * orig / length
    else:
        extrapolation = float(options.get("len_extra_yarn_factor", 1.0))
        if extrapolation != 1.0:
            raise _olmo_refusal("len_extra_yarn_factor", extrapolation, "YaRN's extrapolation mask scaled", "1.0")
        scaling = {
            "type": "yarn",
            "factor": float(options.get("len_extra_yarn_scale", 16.0)),
            "original_max_position": original,
            "beta_fast": float(options.get("len_extra_yarn_beta_fast", 32.0)),
            "beta_slow": float(options.get("len_extra_yarn_beta_slow", 1.0)),
            "truncate": True,
            "temperature": False,
        }
    return scaling, bool(options.get("len_extra_before_clamp", False))


def load_olmo_fope(config: Mapping[str, Any] | str | PathLike[str], weights: Source) -> list[FoPE]:
    """One ``FoPE`` per block with ``blocks.{i}.pos_emb.{cos,sin}_coef`` (``(n_heads, K, d_out)``) loaded."""
    config = config_section(read_config(config), "model", "d_model")
    options = olmo_fope_options(config)
    tensors = read_tensors(weights, keep=lambda name: _OLMO_KEY.search(name) is not None)
    blocks: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        match = _OLMO_KEY.search(name)
        block = blocks.setdefault(int(match.group(1)), {})
        if f"{match.group(2)}_coef" in block:
            raise ValueError(f"block {match.group(1)} has two {match.group(2)}_coef tensors (one is {name!r})")
        block[f"{match.group(2)}_coef"] = tensor
    if not blocks:
        raise KeyError(
            "no 'blocks.{i}.pos_emb.{cos,sin}_coef' tensors in the weights: not an OLMo-fork FoPE checkpoint"
        )
    num_layers = config.get("n_layers", len(blocks))
    if sorted(blocks) != list(range(num_layers)):
        raise ValueError(
            f"the weights hold pos_emb coefficients for blocks {sorted(blocks)}; expected 0..{num_layers - 1}"
        )
    modules = []
    for index in range(num_layers):
        module = FoPE(**options, seed=0)  # placeholder coefficients, overwritten: leave the global RNG alone
        load_coefficients(module, blocks[index], f"blocks.{index}.pos_emb")
        modules.append(module)
    return modules
