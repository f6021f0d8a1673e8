"""``analyze``: every diagnostic on one model and real text, written as ``analysis.json`` and PNG figures.

``compare_behaviour`` puts several models' behaviour past the training length side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fope.analysis.attention import (
    DEFAULT_BLOCK_BYTES,
    LayerAttention,
    context_behaviour,
    context_length,
    layer_attention,
    summarize_attention,
)
from fope.analysis.capture import Activations, capture_activations, complex_pairs
from fope.analysis.damage import block_stages, position_leakage, position_power_spectrum, probe_bins, tone_probe
from fope.analysis.frequencies import coefficient_mixing, frequency_map, rotary_basis
from fope.analysis.magnitudes import pair_magnitudes
from fope.analysis.spectrum import pair_products, stationary_scores, stationary_spectrum
from fope.checks import check_folder
from fope.evaluate.chunks import LENGTH_MULTIPLES, MAX_LENGTH_RATIO, select_spans
from fope.model import TransformerLM
from fope.positions import FoPE

__all__ = ["RESULT_FILE", "analyze", "compare_behaviour", "token_windows"]

RESULT_FILE = "analysis.json"
BEHAVIOUR_KEYS = ("entropy", "normalized_entropy", "mass_beyond_train_length")


def token_windows(tokens: object, length: int, count: int, seed: int = 0) -> Tensor:
    """Up to ``count`` windows of ``length`` token ids ``(n, length)`` (int64) from ids or a token store.

    ``tokens``: a 1-D array/tensor (a stream: windows are drawn at random non-overlapping offsets), a 2-D one (its
    first rows, cut to ``length``), or a ``fope.data.store.TokenStore`` (spans inside single documents, spread over
    the store by ``fope.evaluate.chunks.select_spans``; across documents only when none is long enough).
    """
    if hasattr(tokens, "document_lengths") and hasattr(tokens, "document"):
        selection = select_spans(np.asarray(tokens.document_lengths), length, count, seed)
        rows = [
            np.asarray(tokens.tokens[span.start : span.start + length])
            if span.document < 0
            else np.asarray(tokens.document(span.document)[span.start : span.start + length])
            for span in selection.spans
        ]
        return torch.as_tensor(np.stack(rows).astype(np.int64))
    if isinstance(tokens, np.ndarray) and np.issubdtype(tokens.dtype, np.integer):
        tokens = torch.as_tensor(tokens.astype(np.int64))
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() not in (1, 2):
        shape = tuple(tokens.shape) if hasattr(tokens, "shape") else ""
        raise TypeError(
            "tokens must be integer token ids of shape (T,) or (B, T) (tensor or numpy array) or a TokenStore; "
            f"got {type(tokens).__name__}{shape}"
        )
    if tokens.shape[-1] < length:
        raise ValueError(f"tokens hold {tokens.shape[-1]} positions per row; the analysis needs {length}")
    if tokens.dim() == 2:
        return tokens[:count, :length].long()
    selection = select_spans(np.asarray([tokens.shape[0]]), length, count, seed)
    return torch.stack([tokens[span.start : span.start + length] for span in selection.spans]).long()


@torch.no_grad()
def analyze(
    model: TransformerLM,
    tokens: object,
    *,
    train_length: int,
    out_dir: str | Path,
    context_multiples: Sequence[float] = LENGTH_MULTIPLES,
    spectrum_multiple: float = 4,
    num_sequences: int = 2,
    probe_tones: int = 64,
    probe_amplitude: float = 0.25,
    seed: int = 0,
    plots: bool = True,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, Any]:
    """Run every diagnostic (``docs/analysis.md``) on ``model`` and write ``out_dir/analysis.json`` and figures.

    ``tokens``: token ids or a token store (see ``token_windows``); ``num_sequences`` windows of
    ``max(context_multiples + spectrum_multiple) * train_length`` tokens are read, and every context uses their
    prefixes. The spectrum, spectral damage and activation sizes are measured at ``spectrum_multiple *
    train_length`` positions; the tone probe uses ``probe_tones`` residual channels at ``probe_amplitude`` of the
    operating point's rms. Rotary sections are skipped (with a note) for ALiBi / NoPE models. Returns the JSON dict.
    """
    if not isinstance(model, TransformerLM):
        raise TypeError(f"model must be a fope TransformerLM; got {type(model).__name__}")
    if isinstance(train_length, bool) or not isinstance(train_length, int) or train_length < 2:
        raise ValueError(f"train_length must be an int >= 2; got {train_length!r}")
    if isinstance(num_sequences, bool) or not isinstance(num_sequences, int) or num_sequences < 1:
        raise ValueError(f"num_sequences must be a positive int; got {num_sequences!r}")
    if not context_multiples:
        raise ValueError("context_multiples must name at least one multiple of train_length, e.g. (1, 2, 4)")
    if isinstance(probe_amplitude, bool) or not isinstance(probe_amplitude, (int, float)) or probe_amplitude <= 0:
        raise ValueError(f"probe_amplitude must be a positive number; got {probe_amplitude!r}")
    lengths = [context_length(multiple, train_length) for multiple in context_multiples]  # each checked
    if max(context_multiples) > MAX_LENGTH_RATIO:
        raise ValueError(
            f"context_multiples must be at most {MAX_LENGTH_RATIO} (times train_length, as evaluation lengths); got "
            f"{max(context_multiples)!r}"
        )
    spectrum_length = max(2, context_length(spectrum_multiple, train_length))
    out_dir = check_folder("out_dir", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = token_windows(tokens, max([spectrum_length, *lengths]), num_sequences, seed)
    pes = model.position_encodings()
    result: dict[str, Any] = {
        "model": model.config.to_dict(),
        "train_length": train_length,
        "num_sequences": int(ids.shape[0]),
        "spectrum_length": spectrum_length,
    }

    activations = capture_activations(model, ids[:, :spectrum_length], block_inputs=True)
    attention = layer_attention(model, activations, max_block_bytes)
    scores: dict[str, Any] = {
        "train_length": train_length,
        "measured": torch.stack([layer.logit_by_distance.mean(0) for layer in attention]),
        "predicted": None,
    }
    position_spectrum = None
    if pes[0].kind == "rotary":
        sections, scores["predicted"], position_spectrum = _rotary_sections(model, activations, train_length)
        result.update(sections)
    else:
        note = {"skipped": f"position encoding kind {pes[0].kind!r} has no rotary pairs"}
        result.update(frequency_map=note, attention_spectrum=note, activation_magnitudes=note)
        result["spectral_damage"] = {"queries": None, "keys": None}
    result["spectral_damage"]["probe_amplitude"] = probe_amplitude
    result["spectral_damage"]["probe"] = _probe_blocks(model, activations.block_inputs, probe_tones, probe_amplitude)
    result["score_by_distance"] = scores
    del activations

    result["context_behaviour"] = {
        "train_length": train_length,
        "multiples": list(context_multiples),
        "contexts": [
            _context(
                model, ids, length, train_length, attention if length == spectrum_length else None, max_block_bytes
            )
            for length in lengths
        ],
    }
    result = _rounded(result)
    result = {"summary": _summary(result), **result}
    if plots:
        result["figures"] = _draw(result, model, position_spectrum, out_dir)
    (out_dir / RESULT_FILE).write_text(_json_text(result) + "\n", encoding="utf-8")
    return result


def _context(
    model: TransformerLM,
    ids: Tensor,
    length: int,
    train_length: int,
    reuse: list[LayerAttention] | None,
    max_block_bytes: int,
) -> dict[str, Any]:
    """Attention summary at one context length (reusing an attention pass of that length when there is one)."""
    if reuse is not None:
        return summarize_attention(reuse, train_length)
    behaviour = context_behaviour(
        model, ids, train_length=train_length, multiples=[length / train_length], max_block_bytes=max_block_bytes
    )
    return behaviour["contexts"][0]


def _rotary_sections(
    model: TransformerLM, activations: Activations, train_length: int
) -> tuple[dict[str, Any], Tensor, tuple[Tensor, Tensor]]:
    """Frequency map, attention spectrum, per-pair damage and activation sizes; the predicted score by distance;
    the position power spectrum per layer (for the figure)."""
    pes = model.position_encodings()
    layers = list(zip(activations.queries, activations.keys, pes, strict=True))
    fmap = frequency_map(pes[0], train_length)
    if isinstance(pes[0], FoPE):
        fmap["coefficient_mixing"] = [coefficient_mixing(pe) for pe in pes]
    floor = fmap["floor"]

    spectra = [stationary_spectrum(pair_products(q, k, pe), rotary_basis(pe)) for q, k, pe in layers]
    frequencies = spectra[0].frequencies
    amplitude = torch.stack([s.amplitude for s in spectra])
    constant_amplitude = torch.stack([s.constant_amplitude for s in spectra])
    below = (frequencies > 0) & (frequencies < floor)
    spectrum = {
        "train_length": train_length,
        "floor": floor,
        "frequencies": frequencies,
        "amplitude": amplitude,
        "coherent": torch.stack([s.coherent.abs() for s in spectra]),
        "constant_amplitude": constant_amplitude,
        "constant_coherent": torch.stack([s.constant_coherent for s in spectra]),
        "below_floor_share": amplitude[..., below].sum(-1) / (amplitude.sum(-1) + constant_amplitude).clamp_min(1e-300),
    }
    distances = torch.arange(activations.queries[0].shape[2])
    predicted = torch.stack([stationary_scores(s, distances, model.config.head_size).mean(0) for s in spectra])

    damage: dict[str, Any] = {}
    power = []
    for name, index in (("queries", 0), ("keys", 1)):
        pairs = [complex_pairs(layer[index], pe.rotary_dim, pe.layout) for layer, pe in zip(layers, pes, strict=True)]
        leakage = [position_leakage(x) for x in pairs]
        damage[name] = {
            "away_from_zero": torch.stack([away for away, _ in leakage]).cpu(),
            "position_locked": torch.stack([locked for _, locked in leakage]).cpu(),
        }
        power.append([position_power_spectrum(x) for x in pairs])
    spectrum_frequencies = power[0][0][0]
    position_power = torch.stack([q[1] + k[1] for q, k in zip(*power, strict=True)]).cpu()

    sizes = [pair_magnitudes(q, k, pe) for q, k, pe in layers]
    query_size, key_size = torch.stack([q for q, _ in sizes]).cpu(), torch.stack([k for _, k in sizes]).cpu()
    magnitudes = {
        "queries": query_size,
        "keys": key_size,
        "group_means": _group_means(query_size, key_size, fmap["pair_frequencies"], floor),
    }
    sections = {
        "frequency_map": fmap,
        "attention_spectrum": spectrum,
        "spectral_damage": damage,
        "activation_magnitudes": magnitudes,
    }
    return sections, predicted, (spectrum_frequencies.cpu(), position_power)


def _group_means(
    query_size: Tensor, key_size: Tensor, pair_frequencies: list[float | None], floor: float
) -> dict[str, dict[str, float | None]]:
    """Mean pair size over layers and heads for pairs at or above the floor, under-trained (``0 < w < floor``) and
    zero-frequency pairs (None for a group without pairs)."""
    groups = {
        "trained": [w is not None and w >= floor for w in pair_frequencies],
        "under_trained": [w is not None and 0 < w < floor for w in pair_frequencies],
        "zero_frequency": [w == 0.0 for w in pair_frequencies],
    }
    return {
        name: {group: float(size[..., mask].mean()) if any(mask) else None for group, mask in groups.items()}
        for name, size in (("queries", query_size), ("keys", key_size))
    }


def _probe_blocks(model: TransformerLM, block_inputs: list[Tensor], tones: int, amplitude: float) -> list[dict]:
    """Tone probe of every block's stages around a typical operating point (the median-norm token's residual)."""
    d_model = model.config.d_model
    channels = torch.linspace(0, d_model - 1, min(tones, d_model)).round().long().unique().tolist()
    length = 2 ** math.ceil(math.log2(32 * len(channels)))
    bins = probe_bins(len(channels), length)
    weight = model.embed.weight
    results = []
    for block, inputs in zip(model.layers, block_inputs, strict=True):
        tokens = inputs.reshape(-1, d_model).double().cpu()
        norms = tokens.norm(dim=-1)
        operating_point = tokens[norms.argsort()[norms.shape[0] // 2]]
        rms = float(operating_point.pow(2).mean().sqrt())
        # each tone's amplitude such that the tones together have rms ``amplitude * rms`` over all channels
        tone_amplitude = amplitude * rms * math.sqrt(2 * d_model / len(channels))
        results.append(
            {
                name: tone_probe(
                    stage,
                    input_dim=d_model,
                    bins=bins,
                    channels=channels,
                    length=length,
                    amplitude=tone_amplitude,
                    offset=operating_point,
                    dtype=weight.dtype,
                    device=weight.device,
                ).to_dict()
                for name, stage in block_stages(block).items()
            }
        )
    return results


def _rounded(value: Any) -> Any:
    """JSON-friendly copy: tensors and arrays to lists, floats to 6 significant digits, NaN/inf to None."""
    if isinstance(value, (Tensor, np.ndarray)):
        return _rounded(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _json_text(value: Any, indent: int = 0) -> str:
    """JSON with one key per line and every list on one line (arrays stay readable at a glance)."""
    if isinstance(value, Mapping) and value:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(key)}: {_json_text(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(value)


def _mean(values: Any) -> float | None:
    array = np.asarray(values, dtype=float)
    return float(f"{np.nanmean(array):.6g}") if array.size and not np.isnan(array).all() else None


def _summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of every section: means over layers and heads (per layer where layers differ)."""
    summary: dict[str, Any] = {"context": _behaviour_means(result["context_behaviour"])}
    damage = result["spectral_damage"]
    summary["probe"] = {
        stage: {
            key: [entry[stage][key] for entry in damage["probe"]] for key in ("distortion", "leakage", "fundamental")
        }
        for stage in damage["probe"][0]
    }
    if "skipped" in result["attention_spectrum"]:
        return summary
    summary["below_floor_share"] = _mean(result["attention_spectrum"]["below_floor_share"])
    summary["activation_group_means"] = result["activation_magnitudes"]["group_means"]
    for name in ("queries", "keys"):
        summary[f"{name}_away_from_zero_per_layer"] = [_mean(layer) for layer in damage[name]["away_from_zero"]]
        summary[f"{name}_position_locked_per_layer"] = [_mean(layer) for layer in damage[name]["position_locked"]]
    return summary


def _behaviour_means(behaviour: Mapping[str, Any]) -> dict[str, Any]:
    """Per context: the means over layers and heads of entropy, normalised entropy and mass beyond L."""
    means = {key: [_mean(context[key]) for context in behaviour["contexts"]] for key in BEHAVIOUR_KEYS}
    return {"train_length": behaviour["train_length"], "multiples": list(behaviour["multiples"]), **means}


def _draw(
    result: dict[str, Any], model: TransformerLM, position_spectrum: tuple[Tensor, Tensor] | None, out_dir: Path
) -> list[str]:
    """Write every figure of ``result`` into ``out_dir``; returns the file names."""
    from fope.analysis import plots

    written = []
    fmap = result["frequency_map"]
    rotary = "skipped" not in fmap
    if rotary:
        written.append(plots.plot_frequency_map(fmap, out_dir / "frequency_map.png"))
        distinct = list(dict.fromkeys(model.position_encodings()))
        if isinstance(distinct[0], FoPE):
            for layer, pe in enumerate(distinct):
                suffix = "" if len(distinct) == 1 else f"_layer{layer}"
                title = "FoPE coefficients" + ("" if len(distinct) == 1 else f", layer {layer}")
                coefficients = (pe.cos_coef.detach().cpu().numpy(), pe.sin_coef.detach().cpu().numpy())
                path = out_dir / f"fope_coefficients{suffix}.png"
                written.append(plots.plot_coefficients(*coefficients, pe.inv_freq.tolist(), path, title))
        written.append(plots.plot_attention_spectrum(result["attention_spectrum"], out_dir / "attention_spectrum.png"))
        frequencies, power = position_spectrum
        written.append(
            plots.plot_position_spectrum(
                frequencies.numpy(),
                power.numpy(),
                fmap["floor"],
                out_dir / "position_spectrum.png",
                fmap["pair_frequencies"],
            )
        )
        written.append(
            plots.plot_magnitudes(result["activation_magnitudes"], fmap, out_dir / "activation_magnitudes.png")
        )
    below = fmap["below_floor"] if rotary else None
    written.append(plots.plot_damage(result["spectral_damage"], below, out_dir / "spectral_damage.png"))
    written.append(plots.plot_score_by_distance(result["score_by_distance"], out_dir / "score_by_distance.png"))
    title = f"{model.config.position}: attention by context"
    written.append(plots.plot_context_behaviour(result["context_behaviour"], out_dir / "context_behaviour.png", title))
    return [path.name for path in written]


def compare_behaviour(results: Mapping[str, Mapping[str, Any]], path: str | Path | None = None) -> dict[str, Any]:
    """Several models' attention past the training length side by side; draws ``path`` (PNG) when given.

    ``results`` maps a name to an ``analyze`` result or a ``context_behaviour`` result. Returns, per name, the
    multiples and, per multiple, the means over layers and heads of entropy, entropy / ln(keys) and mass beyond L.
    """
    if not results:
        raise ValueError("results must map at least one name to an analyze() or context_behaviour() result")
    behaviours = {}
    for name, result in results.items():
        behaviour = result.get("context_behaviour", result)
        if "contexts" not in behaviour:
            raise ValueError(f"results[{name!r}] is neither an analyze() nor a context_behaviour() result")
        behaviours[name] = behaviour
    if path is not None:
        from fope.analysis.plots import plot_behaviour_comparison

        plot_behaviour_comparison(behaviours, path)
    return {name: _behaviour_means(behaviour) for name, behaviour in behaviours.items()}
