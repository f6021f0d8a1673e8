"""analyze(), token windows and the side-by-side comparison, end to end on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fope.analysis import analyze, compare_behaviour, context_behaviour, token_windows
from fope.data.store import TokenStore
from tests.analysis.helpers import TRAIN_LENGTH, random_tokens, tiny_model

SMALL = {"context_multiples": (1, 2), "spectrum_multiple": 1, "num_sequences": 2, "probe_tones": 8}


def test_analyze_writes_json_and_every_figure_for_fope(tmp_path) -> None:
    model = tiny_model("fope", num_layers=1, share_position=True)  # one layer keeps the drawing quick
    result = analyze(model, random_tokens(600), train_length=TRAIN_LENGTH, out_dir=tmp_path, **SMALL)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved == result
    assert set(result["figures"]) == {
        "frequency_map.png",
        "fope_coefficients.png",
        "attention_spectrum.png",
        "position_spectrum.png",
        "activation_magnitudes.png",
        "spectral_damage.png",
        "score_by_distance.png",
        "context_behaviour.png",
    }
    for name in result["figures"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_analyze_fope_sections_have_one_entry_per_layer_head_and_pair(tmp_path) -> None:
    model = tiny_model("fope")
    result = analyze(model, random_tokens(600), train_length=TRAIN_LENGTH, out_dir=tmp_path, plots=False, **SMALL)
    assert result["frequency_map"]["num_kept"] == 3
    assert np.asarray(result["frequency_map"]["coefficient_mixing"]).shape == (2, 4, 3)  # layers, Hc, d_out
    assert np.asarray(result["attention_spectrum"]["amplitude"]).shape == (2, 4, 3)  # layers, heads, kept
    assert np.asarray(result["attention_spectrum"]["below_floor_share"]).max() == 0.0  # FoPE keeps none below
    assert np.asarray(result["spectral_damage"]["queries"]["away_from_zero"]).shape == (2, 4, 8)
    assert set(result["spectral_damage"]["probe"][0]) == {"qk", "mlp_activation", "mlp"}
    assert np.asarray(result["score_by_distance"]["measured"]).shape == (2, TRAIN_LENGTH)
    assert [context["length"] for context in result["context_behaviour"]["contexts"]] == [64, 128]


def test_analyze_rope_measures_the_under_trained_pairs(tmp_path) -> None:
    result = analyze(
        tiny_model("rope"), random_tokens(600), train_length=TRAIN_LENGTH, out_dir=tmp_path, plots=False, **SMALL
    )
    assert "figures" not in result and (tmp_path / "analysis.json").exists()
    assert result["frequency_map"]["pair_under_trained"] == [False] * 3 + [True] * 5
    shares = np.asarray(result["attention_spectrum"]["below_floor_share"])
    assert shares.shape == (2, 4) and shares.min() > 0.2 and shares.max() < 1
    means = result["activation_magnitudes"]["group_means"]
    assert means["queries"]["zero_frequency"] is None
    assert means["keys"]["trained"] > 0 and means["keys"]["under_trained"] > 0


def test_analyze_bias_models_skip_the_rotary_sections(tmp_path) -> None:
    result = analyze(
        tiny_model("alibi"), random_tokens(600), train_length=TRAIN_LENGTH, out_dir=tmp_path, plots=False, **SMALL
    )
    for section in ("frequency_map", "attention_spectrum", "activation_magnitudes"):
        assert result[section] == {"skipped": "position encoding kind 'bias' has no rotary pairs"}
    assert result["spectral_damage"]["queries"] is None
    assert result["score_by_distance"]["predicted"] is None
    assert len(result["spectral_damage"]["probe"]) == 2


def test_reused_spectrum_pass_equals_a_separate_context_pass(tmp_path) -> None:
    model, tokens = tiny_model("rope"), random_tokens(2 * TRAIN_LENGTH, batch=1)
    result = analyze(
        model,
        tokens,
        train_length=TRAIN_LENGTH,
        out_dir=tmp_path,
        context_multiples=(2,),
        spectrum_multiple=2,
        num_sequences=1,
        probe_tones=4,
        plots=False,
    )
    separate = context_behaviour(model, tokens, train_length=TRAIN_LENGTH, multiples=(2,))["contexts"][0]
    reused = np.asarray(result["context_behaviour"]["contexts"][0]["entropy"])
    assert reused == pytest.approx(np.asarray(separate["entropy"]), rel=1e-5)


def test_analyze_checks_its_arguments(tmp_path) -> None:
    with pytest.raises(TypeError, match="TransformerLM"):
        analyze(torch.nn.Linear(2, 2), random_tokens(10), train_length=8, out_dir=tmp_path)
    with pytest.raises(ValueError, match="train_length must be an int >= 2; got 1"):
        analyze(tiny_model(), random_tokens(10), train_length=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="tokens hold 100 positions per row; the analysis needs 1024"):
        analyze(tiny_model(), random_tokens(100), train_length=TRAIN_LENGTH, out_dir=tmp_path)


def test_token_windows_from_streams_rows_and_stores(tmp_path) -> None:
    stream = torch.arange(100)
    windows = token_windows(stream, 30, 5)
    assert windows.shape == (3, 30) and windows.dtype == torch.int64
    assert all(int(row[-1] - row[0]) == 29 for row in windows)  # contiguous slices of the stream
    assert token_windows(np.arange(40).reshape(2, 20), 15, 5).tolist() == [list(range(15)), list(range(20, 35))]
    store = TokenStore.write(
        tmp_path / "store", [("short", [1] * 10, 10), ("long", list(range(2, 52)), 50)], vocab_size=64, eos_id=0
    )
    from_store = token_windows(store, 20, 4)
    assert from_store.shape == (2, 20)  # only the 50-token document holds 20-token spans, two of them
    assert all(int(token) >= 2 for token in from_store.flatten())
    with pytest.raises(TypeError, match="integer token ids"):
        token_windows(torch.zeros(30), 10, 1)


def test_compare_behaviour_draws_and_returns_numbers(tmp_path) -> None:
    tokens = random_tokens(2 * 16, batch=1)
    results = {
        name: context_behaviour(tiny_model(name), tokens, train_length=16, multiples=(1, 2))
        for name in ("rope", "nope")
    }
    summary = compare_behaviour(results, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["rope"]["multiples"] == [1, 2]
    assert summary["nope"]["mass_beyond_train_length"][0] == 0.0
    assert len(summary["rope"]["entropy"]) == 2
    json.dumps(summary)
    with pytest.raises(ValueError, match="neither an analyze"):
        compare_behaviour({"x": {"entropy": []}})


def test_a_context_multiple_beyond_the_evaluation_limit_is_refused_before_any_work(tmp_path):
    model = tiny_model("fope", num_layers=1, share_position=True)
    with pytest.raises(ValueError, match=r"context_multiples must be at most 256 \(times train_length"):
        analyze(
            model, random_tokens(600), train_length=TRAIN_LENGTH, out_dir=tmp_path / "out", context_multiples=(1, 257)
        )
    assert not (tmp_path / "out").exists()
