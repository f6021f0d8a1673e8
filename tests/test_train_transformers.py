"""fope train on a local transformers model: FoPE / YaRN at 2x context, checkpoints, exact resume, load_run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

transformers = pytest.importorskip("transformers")

from fope.checkpoint import find_checkpoint  # noqa: E402
from fope.config import ConfigError, load_config  # noqa: E402
from fope.data.corpus import text_dir_documents  # noqa: E402
from fope.data.tokenizer import EOS_TOKEN, train_bpe  # noqa: E402
from fope.integrations.hf_lm import HFCausalLM, load_for_training  # noqa: E402
from fope.integrations.transformers import fope_modules, from_pretrained  # noqa: E402
from fope.runs import load_run  # noqa: E402
from fope.train import iterate_losses, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_LENGTH = 32  # the tiny model's max_position_embeddings; the runs train at 2x


@pytest.fixture(scope="module")
def llama_dir(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM saved with a fast tokenizer trained on the tiny corpus."""
    directory = tmp_path_factory.mktemp("llama")
    tokenizer = train_bpe([document.text for document in text_dir_documents(tiny_corpus)], 300)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token=EOS_TOKEN)
    hf_tokenizer.save_pretrained(directory)
    config = transformers.LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=ORIGINAL_LENGTH,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def run_config(corpus, model_dir, position="fope", position_options=None, overrides=(), **train_options):
    data = {
        "name": f"hf-{position}",
        "transformers": {"path": str(model_dir), "position": position, "position_options": position_options or {}},
        "data": {"source": str(corpus), "passkey_fraction": 0.0},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "train": {
            "seq_len": 2 * ORIGINAL_LENGTH,
            "batch_size": 4,
            "max_steps": 8,
            "log_every": 1,
            "eval_every": 4,
            "eval_batches": 1,
            "checkpoint_every": 4,
            "threads": 1,
            **train_options,
        },
    }
    return load_config(base=data, overrides=list(overrides))


def losses(run_dir):
    return dict(iterate_losses(run_dir))


def probe_ids(vocab_size, length=2 * ORIGINAL_LENGTH):
    return torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(3))


@pytest.fixture
def final_model(monkeypatch):
    """Captures, at every checkpoint, the in-memory model's eval-mode logits on ``probe_ids`` and the model itself."""
    import fope.train

    captured = {}
    original = fope.train.save_checkpoint

    def capture(run_dir, step, model, *args, **kwargs):
        model.eval()
        with torch.no_grad():
            captured["logits"] = model(probe_ids(model.config.vocab_size)).logits.clone()
        model.train()
        captured["model"], captured["step"] = model, step
        return original(run_dir, step, model, *args, **kwargs)

    monkeypatch.setattr(fope.train, "save_checkpoint", capture)
    return captured


def test_fope_run_learns_and_its_checkpoint_is_a_transformers_folder(tiny_corpus, llama_dir, tmp_path, final_model):
    run_dir = tmp_path / "run"
    config = run_config(tiny_corpus, llama_dir, "fope", {"sigma": 0.3}, max_steps=20, checkpoint_every=20)
    assert config.data.tokenizer == str(llama_dir)  # the model's own tokenizer by default
    train(config, run_dir, progress=False)
    history = losses(run_dir)
    assert sorted(history) == list(range(1, 21)) and all(torch.isfinite(torch.tensor(list(history.values()))))
    assert history[20] < history[1] - 0.5

    checkpoint = find_checkpoint(run_dir)
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_state.pt"} <= set(meta["files"])
    assert meta["model_config"]["position"] == "fope" and meta["model_config"]["train_length"] == 64
    assert meta["init_from"] == str(llama_dir)
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["fope"]["train_length"] == 64 and saved["fope"]["seed"] == 0  # seed defaults to train.seed
    assert saved["max_position_embeddings"] == 64

    loaded = from_pretrained(checkpoint).eval()
    assert len(fope_modules(loaded)) == 2
    ids = probe_ids(loaded.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, final_model["logits"], rtol=0, atol=0)
    source = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    assert not torch.equal(source.model.embed_tokens.weight, loaded.model.embed_tokens.weight)  # it trained

    run = load_run(run_dir)
    assert isinstance(run.model, HFCausalLM) and not run.model.training
    assert run.train_length == 64 and run.model.config.num_layers == 2 and run.model.config.position == "fope"
    assert [type(pe).__name__ for pe in run.model.position_encodings()] == ["FoPE", "FoPE"]
    with torch.no_grad():
        torch.testing.assert_close(run.model(ids).logits, final_model["logits"], rtol=0, atol=0)


def test_yarn_run_makes_the_models_rope_yarn_for_the_longer_context(tiny_corpus, llama_dir, tmp_path, final_model):
    run_dir = tmp_path / "run"
    config = run_config(
        tiny_corpus, llama_dir, "yarn", overrides=["transformers.gradient_checkpointing=true"], max_steps=4
    )
    train(config, run_dir, progress=False)
    assert all(torch.isfinite(torch.tensor(list(losses(run_dir).values()))))
    trained = final_model["model"].model
    assert getattr(trained, "is_activation_checkpointing", None) or trained.is_gradient_checkpointing
    assert trained.model.rotary_emb.rope_type == "yarn"
    expected = {"factor": 2.0, "original_max_position_embeddings": ORIGINAL_LENGTH, "rope_type": "yarn"}
    saved = json.loads((find_checkpoint(run_dir) / "config.json").read_text())
    assert expected.items() <= saved["rope_parameters"].items() and saved["max_position_embeddings"] == 64

    # plain transformers loads the YaRN model as trained; fope.RoPE with the same YaRN reproduces its rotary
    plain = transformers.AutoModelForCausalLM.from_pretrained(find_checkpoint(run_dir)).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(probe_ids(plain.config.vocab_size)).logits, final_model["logits"])
    run = load_run(run_dir)
    assert run.model.config.position == "yarn"
    (scaling,) = {pe.scaling["type"]: pe.scaling for pe in run.model.position_encodings()}.values()
    # the model's YaRN, with transformers' temperature (explicit: fope's FoPE+YaRN default has none)
    assert scaling == {"type": "yarn", "factor": 2.0, "original_max_position": ORIGINAL_LENGTH, "temperature": True}


@pytest.mark.parametrize("position", ["fope", "yarn"])
def test_resume_continues_exactly(tiny_corpus, llama_dir, tmp_path, position):
    config = run_config(tiny_corpus, llama_dir, position)
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "split", until_step=3, progress=False)
    assert max(losses(tmp_path / "split")) == 3
    train(config, tmp_path / "split", resume=True, progress=False)
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert sorted(split) == sorted(full) == list(range(1, 9))
    assert split == full  # bit-identical on CPU: weights, AdamW, schedule, RNG and data restored
    a, b = load_run(tmp_path / "full").model, load_run(tmp_path / "split").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_learnable_coefficients_train_without_weight_decay(tiny_corpus, llama_dir, tmp_path, final_model):
    options = {"learnable": True, "share_layers": True}
    train(run_config(tiny_corpus, llama_dir, "fope", options, max_steps=2), tmp_path / "run", progress=False)
    trained = final_model["model"]
    start = load_for_training(llama_dir, train_length=64, position_options={**options, "seed": 0})
    (before,), (after,) = fope_modules(start), fope_modules(trained)
    assert not torch.equal(before.cos_coef, after.cos_coef) and not torch.equal(before.sin_coef, after.sin_coef)
    state = torch.load(find_checkpoint(tmp_path / "run") / "training_state.pt", weights_only=True)
    decayed, not_decayed = (group["params"] for group in state["optimizer"]["param_groups"])
    names = list(dict(trained.named_parameters()))
    coefficients = {"model.model.rotary_emb.fope.cos_coef", "model.model.rotary_emb.fope.sin_coef"}
    assert coefficients <= {names[index] for index in not_decayed}
    assert not coefficients & {names[index] for index in decayed}


def converted_folder(llama_dir, directory):
    """The tiny model converted to FoPE (train_length 64) and saved."""
    load_for_training(llama_dir, train_length=64, position_options={"seed": 0}).save_pretrained(directory)
    return directory


def test_a_loaded_run_generates_with_the_kv_cache(tiny_corpus, llama_dir, tmp_path):
    train(run_config(tiny_corpus, llama_dir, "fope", max_steps=4), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(llama_dir)
    assert run.tokenizer.eos_id == hf_tokenizer.eos_token_id
    prompt = torch.tensor([run.tokenizer.encode("the king and the lord of the night")])
    output = run.model.generate(prompt, 12)
    assert output.shape == (1, prompt.shape[1] + 12) and torch.equal(output[:, : prompt.shape[1]], prompt)
    tokens = prompt  # greedy decoding without a cache: a full forward per token
    with torch.no_grad():
        for _ in range(12):
            tokens = torch.cat((tokens, run.model(tokens).logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(output, tokens)
    reference = run.model.model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert torch.equal(output, reference)  # transformers' own greedy generate agrees
    first = int(output[0, prompt.shape[1]])
    stopped = run.model.generate(prompt.repeat(2, 1), 5, eos_id=first)
    assert stopped.shape == (2, prompt.shape[1] + 1)  # every row produced eos_id at once


def test_config_errors_are_clear(tiny_corpus, llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="model and transformers are exclusive"):
        run_config(tiny_corpus, llama_dir, overrides=["model.d_model=32"])
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        run_config(tiny_corpus, tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        run_config(tiny_corpus, tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"position_options for 'yarn' do not take \['sigma'\]"):
        run_config(tiny_corpus, llama_dir, "yarn", {"sigma": 0.1})
    with pytest.raises(ConfigError, match=r"remove train\.init_from"):
        run_config(tiny_corpus, llama_dir, init_from=str(tmp_path))
    with pytest.raises(ConfigError, match="set either model"):
        load_config(base={"data": {"source": str(tiny_corpus)}})
    with pytest.raises(ConfigError, match=r"transformers\.position must be one of"):
        run_config(tiny_corpus, llama_dir, "rope")
    from fope.build import non_embedding_parameters, planned_model

    hf_run = run_config(tiny_corpus, llama_dir)
    assert non_embedding_parameters(hf_run) is None  # a transformers model: no lab model to count
    with pytest.raises(ConfigError, match="it has no model section"):
        planned_model(hf_run)
    same_length = run_config(tiny_corpus, llama_dir, "yarn", seq_len=ORIGINAL_LENGTH)
    with pytest.raises(ValueError, match="YaRN's factor must be a number > 1"):
        train(same_length, tmp_path / "yarn", progress=False)


def test_a_converted_folder_is_kept_or_refused(tiny_corpus, llama_dir, tmp_path):
    converted = converted_folder(llama_dir, tmp_path / "converted")
    with pytest.raises(ValueError, match="already converted to FoPE"):
        load_for_training(converted, train_length=64, position="fope")
    kept = load_for_training(converted, train_length=128, position="keep")
    assert kept.config.position == "fope" and kept.config.train_length == 128
    assert kept.config.position_options["train_length"] == 64  # the coefficients are the saved ones


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tiny_corpus, llama_dir, tmp_path):
    config = run_config(tiny_corpus, llama_dir, "fope", max_steps=4)
    config_path = tmp_path / "config.yaml"
    from fope.config import to_dict

    config_path.write_text(yaml.safe_dump(to_dict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ["-m", "fope", "train", "--config", str(config_path), "--no-progress", "--out"]
    subprocess.run([sys.executable, *command, str(tmp_path / "one")], check=True, env=env, cwd=ROOT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*torchrun, *command, str(tmp_path / "two")], check=True, env=env, cwd=ROOT)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 5))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    a, b = load_run(tmp_path / "one").model, load_run(tmp_path / "two").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-3, msg=name)
