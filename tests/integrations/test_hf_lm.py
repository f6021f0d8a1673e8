"""HFCausalLM: a transformers model behind TransformerLM's interface; load_for_training switches its encoding."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fope.integrations.hf_lm import HFCausalLM, check_model_directory, load_for_training  # noqa: E402
from fope.integrations.transformers import fope_modules  # noqa: E402
from tests.integrations.test_transformers import SMALL, tiny_model, tokens  # noqa: E402


@pytest.fixture
def saved_llama(tmp_path):
    directory = tmp_path / "llama"
    tiny_model("llama", max_position_embeddings=32).save_pretrained(directory)
    return directory


def test_forward_takes_shifted_targets_and_positions_like_transformer_lm():
    model = tiny_model("llama")
    adapter = HFCausalLM(model, train_length=32)
    ids = tokens(length=16)
    with torch.no_grad():
        out = adapter(ids[:, :-1], targets=ids[:, 1:])
        reference = model(ids, labels=ids)  # transformers shifts its labels itself
        torch.testing.assert_close(out.logits, reference.logits[:, :-1])
        torch.testing.assert_close(out.loss, reference.loss)
        ignored = ids[:, 1:].clone()
        ignored[:, :5] = -100
        expected = torch.nn.functional.cross_entropy(out.logits[:, 5:].flatten(0, 1), ids[:, 6:].flatten())
        torch.testing.assert_close(adapter(ids[:, :-1], targets=ignored).loss, expected)

        spread = 3 * torch.arange(ids.shape[1])  # not a uniform shift, which RoPE would not see
        moved = adapter(ids, positions=spread).logits
        torch.testing.assert_close(moved, model(ids, position_ids=spread.unsqueeze(0)).logits)
        assert (moved - adapter(ids).logits).abs().max() > 1e-4
        torch.testing.assert_close(adapter.lm_head(adapter.hidden_states(ids)), adapter(ids).logits)
    with pytest.raises(TypeError, match="takes no cache"):
        adapter(ids, cache=object())
    with pytest.raises(ValueError, match="targets must have the shape"):
        adapter(ids, targets=ids[:, 1:])


def test_config_and_parameter_counts_mirror_transformer_lm():
    model = tiny_model("llama")
    adapter = HFCausalLM(model, train_length=48)
    config = adapter.config
    assert (config.position, config.train_length, config.vocab_size) == ("rope", 48, SMALL["vocab_size"])
    assert (config.d_model, config.num_layers, config.num_heads, config.kv_heads, config.head_size) == (64, 2, 4, 2, 16)
    assert adapter.num_parameters() == model.num_parameters()
    embeddings = 2 * SMALL["vocab_size"] * SMALL["hidden_size"]  # untied input and output embeddings
    assert adapter.num_parameters(exclude_embeddings=True) == model.num_parameters() - embeddings
    assert config.to_dict()["position_options"]["rope_type"] == "default"


def test_logit_transforms_make_hidden_states_refuse():
    adapter = HFCausalLM(tiny_model("granite", logits_scaling=4.0), train_length=32)
    with pytest.raises(NotImplementedError, match="logits_scaling"):
        adapter.lm_head  # noqa: B018
    assert adapter(tokens()).logits.shape == (2, 12, SMALL["vocab_size"])  # forward still works


def test_fope_ablations_and_yarn_options(saved_llama):
    no_fourier = load_for_training(saved_llama, train_length=64, position="fope-no-fs")
    assert no_fourier.config.position == "fope-no-fs"
    assert all(not module.fourier for module in fope_modules(no_fourier))
    with pytest.raises(ValueError, match="'fope-no-cf' fixes clip_floor=False"):
        load_for_training(saved_llama, train_length=64, position="fope-no-cf", position_options={"clip_floor": True})

    yarn = load_for_training(
        saved_llama, train_length=64, position="yarn", position_options={"factor": 4, "beta_fast": 16}
    )
    parameters = yarn.model.config.rope_parameters
    assert (parameters["factor"], parameters["original_max_position_embeddings"]) == (4, 32)
    assert yarn.model.config.max_position_embeddings == 128  # factor x original
    assert yarn.position_encodings()[0].scaling["beta_fast"] == 16
    with pytest.raises(ValueError, match="original_max_position must be an int"):
        load_for_training(saved_llama, train_length=64, position="yarn", position_options={"original_max_position": 0})


def test_yarn_refuses_an_already_scaled_rope(tmp_path):
    directory = tmp_path / "scaled"
    linear = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    tiny_model("llama", rope_parameters=linear).save_pretrained(directory)
    with pytest.raises(ValueError, match="already 'linear'"):
        load_for_training(directory, train_length=64, position="yarn")
    kept = load_for_training(directory, train_length=64, position="keep")
    assert kept.config.position == "rope" and kept.config.position_options["rope_type"] == "linear"


def test_check_model_directory_needs_weights(tmp_path, saved_llama):
    assert check_model_directory(saved_llama) == saved_llama
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no weights"):
        check_model_directory(tmp_path / "config_only")
