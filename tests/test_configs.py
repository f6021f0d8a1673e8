"""The shipped presets (package data): tiny ones differ only in the position encoding; paper ones load and build."""

from __future__ import annotations

import pytest
import torch

from fope.config import ConfigError, to_dict
from fope.model import TransformerLM
from fope.presets import load_preset, merge, preset_data, preset_names

TINY = preset_names("tiny")
PAPER = preset_names("paper")


def test_tiny_presets_exist_for_every_demo_encoding():
    assert {name.removeprefix("tiny/") for name in TINY} >= {
        "rope",
        "fope",
        "alibi",
        "nope",
        "fope-no-fs",
        "fope-no-cf",
    }
    assert PAPER == ["paper/1.2b", "paper/180m", "paper/60m"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_differ_only_in_the_position_encoding(name):
    reference = preset_data("tiny/rope")
    preset = preset_data(name)
    stem = name.removeprefix("tiny/")
    assert preset["name"] == stem and stem.startswith(preset["model"]["position"])
    for section in ("data", "optim", "train"):
        assert preset[section] == reference[section], section
    strip = {"position", "position_options"}
    assert {k: v for k, v in preset["model"].items() if k not in strip} == {
        k: v for k, v in reference["model"].items() if k not in strip
    }
    config = load_preset(name)
    TransformerLM(config.model_config(vocab_size=1024))


NON_EMBEDDING_MILLIONS = {"60m": 33.6, "180m": 134.2, "1.2b": 1073.8}


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_load_and_build(name):
    size = name.removeprefix("paper/")
    config = load_preset(name)
    assert config.name == f"fope-{size}"
    with torch.device("meta"):  # no memory: the 1.2B model builds in no time
        model = TransformerLM(config.model_config())
    non_embedding = model.num_parameters(exclude_embeddings=True) / 1e6
    assert non_embedding == pytest.approx(NON_EMBEDDING_MILLIONS[size], abs=0.1)
    # the paper's size names count the non-embedding weights plus one vocabulary matrix
    named = {"60m": 60, "180m": 180, "1.2b": 1200}[size]
    assert (non_embedding + model.config.vocab_size * model.config.d_model / 1e6) == pytest.approx(named, rel=0.05)
    assert config.train.seq_len == 512 and config.train.batch_size == 1024
    assert config.train.grad_accum == (4 if size == "1.2b" else 1)


def test_merge_replaces_options_whole_and_presets_take_overrides():
    merged = merge({"model": {"d_model": 8, "position_options": {"sigma": 0.3}}}, {"model": {"position_options": {}}})
    assert merged == {"model": {"d_model": 8, "position_options": {}}}
    config = load_preset("tiny/fope", ["train.max_steps=5", "model.position_options={sigma: 0.1}"])
    assert config.train.max_steps == 5 and config.model.position_options == {"sigma": 0.1}
    assert to_dict(load_preset("tiny/fope"))["model"]["position_options"] == {"sigma": 0.3}
    with pytest.raises(ConfigError, match=r"no preset 'tiny/sine'; available: \['tiny/alibi'"):
        preset_data("tiny/sine")
    with pytest.raises(ConfigError, match="no preset 'tiny/base'"):
        preset_data("tiny/base")
