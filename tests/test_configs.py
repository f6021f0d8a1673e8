"""The shipped presets: tiny ones differ only in the position encoding; paper ones load and build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fope.config import load_config, load_yaml
from fope.model import TransformerLM

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = sorted((CONFIGS / "tiny").glob("*.yaml"))
PAPER = sorted((CONFIGS / "paper").glob("*.yaml"))


def test_tiny_presets_exist_for_every_demo_encoding():
    assert {p.stem for p in TINY} >= {"rope", "fope", "alibi", "nope", "fope-no-fs", "fope-no-cf"}


@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_presets_differ_only_in_the_position_encoding(path):
    reference = load_yaml(CONFIGS / "tiny" / "rope.yaml")
    preset = load_yaml(path)
    assert preset["name"] == path.stem and path.stem.startswith(preset["model"]["position"])
    for section in ("data", "optim", "train"):
        assert preset[section] == reference[section], section
    strip = {"position", "position_options"}
    assert {k: v for k, v in preset["model"].items() if k not in strip} == {
        k: v for k, v in reference["model"].items() if k not in strip
    }
    config = load_config(path)
    TransformerLM(config.model_config(vocab_size=1024))


NON_EMBEDDING_MILLIONS = {"60m": 33.6, "180m": 134.2, "1.2b": 1073.8}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_presets_load_and_build(path):
    non_embedding_millions = NON_EMBEDDING_MILLIONS[path.stem]
    config = load_config(path)
    with torch.device("meta"):  # no memory: the 1.2B model builds in no time
        model = TransformerLM(config.model_config())
    non_embedding = model.num_parameters(exclude_embeddings=True) / 1e6
    assert non_embedding == pytest.approx(non_embedding_millions, abs=0.1)
    # the paper's size names count the non-embedding weights plus one vocabulary matrix
    named = {"60m": 60, "180m": 180, "1.2b": 1200}[path.stem]
    assert (non_embedding + model.config.vocab_size * model.config.d_model / 1e6) == pytest.approx(named, rel=0.05)
    assert config.train.seq_len == 512 and config.train.batch_size == 1024
