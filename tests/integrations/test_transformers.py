"""convert / from_pretrained on tiny random transformers models: RoPE parity, training, KV cache, save and load, CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fope.cli import main  # noqa: E402
from fope.integrations.transformers import (  # noqa: E402
    CONFIG_KEY,
    convert,
    convert_directory,
    fope_modules,
    from_pretrained,
)
from fope.positions import FoPE  # noqa: E402

SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 128,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
# name -> (config class, model class, config options beyond SMALL); the four the issue names come first.
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"partial_rotary_factor": 0.5}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {"num_local_experts": 4}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {}),  # interleaved pairs
    "glm": ("GlmConfig", "GlmForCausalLM", {"head_dim": 16, "partial_rotary_factor": 0.5}),  # interleaved, partial
}
CORE = ["llama", "mistral", "qwen2", "qwen3"]
TRAIN_LENGTH = 64  # head_dim 16, theta 1e4: K = 3 of 8 frequencies kept, d_out = 3


def tiny_model(name: str = "llama", seed: int = 0, **options):
    config_name, model_name, extra = ARCHITECTURES[name]
    config = getattr(transformers, config_name)(**{**SMALL, **extra, **options})
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(config).eval()


def tokens(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, SMALL["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, **kwargs).logits


# transformers 5.24 renamed the cache argument and output past_key_values -> cache
CACHE = (
    "cache"
    if "cache" in __import__("inspect").signature(transformers.LlamaForCausalLM.forward).parameters
    else ("past_key_values")
)
AS_ROPE = {"sigma": 0.0, "clip_floor": False, "output_dim": "square"}  # FoPE that is exactly RoPE (spec section 4)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fope_that_is_rope_reproduces_the_original_model(name):
    model, ids = tiny_model(name), tokens()
    converted = convert(model, TRAIN_LENGTH, inplace=False, **AS_ROPE)
    assert type(converted).__name__ == "FoPEForCausalLM" and isinstance(converted, type(model))
    assert len(fope_modules(converted)) == SMALL["num_hidden_layers"]
    torch.testing.assert_close(logits(converted, ids), logits(model, ids), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CORE)
def test_the_rope_special_case_has_the_models_own_features_bit_for_bit(name):
    """With the references' float32 frequency arithmetic (the default), a converted model's FoPE-that-is-RoPE gives the
    model's own rotary cos/sin exactly, at long positions too; float64 frequencies do not (1 ulp in some of them)."""
    model = tiny_model(name)
    converted = convert(model, TRAIN_LENGTH, inplace=False, **AS_ROPE)
    fope = fope_modules(converted)[0]
    positions = torch.tensor([[0, 1, 5, 63, 1000, 4095, 32767]])
    rotary = model.model.rotary_emb
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)
    half = cos.shape[-1] // 2
    ours_cos, ours_sin = (feature[0, 0] for feature in fope.features(positions))
    assert torch.equal(fope.inv_freq, rotary.inv_freq)
    assert torch.equal(ours_cos, cos[0, :, :half]) and torch.equal(ours_sin, sin[0, :, :half])
    float64 = FoPE(
        head_dim=fope.head_dim,
        num_heads=fope.num_heads,
        train_length=TRAIN_LENGTH,
        clip_floor=False,
        sigma=0.0,
        output_dim="square",
        frequency_precision="float64",
    )
    assert not torch.equal(float64.inv_freq, rotary.inv_freq)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("share_layers", [False, True])
def test_rope_parity_holds_for_both_attention_implementations_and_coefficient_sharing(
    attn_implementation, share_layers
):
    model = tiny_model("qwen3", attn_implementation=attn_implementation)
    converted = convert(model, TRAIN_LENGTH, inplace=False, share_layers=share_layers, **AS_ROPE)
    ids = tokens()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding, with per-row position ids (B, T) as generate makes them
    inputs = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    torch.testing.assert_close(logits(converted, ids, **inputs), logits(model, ids, **inputs), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "rope_parameters",
    [
        {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "rope_theta": 10000.0},
    ],
    ids=["linear", "yarn"],
)
def test_the_models_rope_scaling_carries_over(rope_parameters):
    model = tiny_model("llama", rope_parameters=rope_parameters, max_position_embeddings=128)
    converted = convert(model, TRAIN_LENGTH, inplace=False, **AS_ROPE)
    assert fope_modules(converted)[0].scaling["type"] == rope_parameters["rope_type"]
    ids = tokens(length=40)
    torch.testing.assert_close(logits(converted, ids), logits(model, ids), atol=2e-5, rtol=1e-5)


def test_default_conversion_changes_the_model_and_every_weight_trains():
    model = tiny_model("llama")
    converted = convert(model, TRAIN_LENGTH, inplace=False, seed=0)
    ids = tokens()
    assert (logits(converted, ids) - logits(model, ids)).abs().max() > 1e-3
    converted.train()
    converted(ids, labels=ids).loss.backward()
    for name, parameter in converted.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for fope in fope_modules(converted):  # frozen buffers by default, not parameters
        assert not fope.cos_coef.requires_grad and not fope.sin_coef.requires_grad
    assert not any("coef" in name for name, _ in converted.named_parameters())


@pytest.mark.parametrize("share_layers", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(share_layers):
    converted = convert(tiny_model("llama"), TRAIN_LENGTH, seed=0, learnable=True, share_layers=share_layers).train()
    ids = tokens()

    def gradients():
        converted.zero_grad()
        converted(ids, labels=ids, use_cache=False).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in converted.named_parameters()}

    plain = gradients()
    # newer transformers 5 releases renamed it (the old name warns); 5.0 has only the old one
    getattr(converted, "activation_checkpointing_enable", converted.gradient_checkpointing_enable)()
    for name, gradient in gradients().items():
        torch.testing.assert_close(gradient, plain[name], msg=name)


def test_learnable_coefficients_receive_gradients():
    converted = convert(tiny_model("mistral"), TRAIN_LENGTH, seed=0, learnable=True, share_layers=True)
    ids = tokens()
    converted.train()
    converted(ids, labels=ids).loss.backward()
    parameters = dict(converted.named_parameters())
    for name in ("model.rotary_emb.fope.cos_coef", "model.rotary_emb.fope.sin_coef"):
        assert parameters[name].dtype == torch.float32 and parameters[name].grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_cached_generation_equals_uncached(name):
    converted = convert(tiny_model(name), TRAIN_LENGTH, seed=0)
    ids = tokens(length=10)
    options = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    cached = converted.generate(ids, use_cache=True, **options)
    uncached = converted.generate(ids, use_cache=False, **options)
    assert torch.equal(cached, uncached)


def test_left_padded_batch_generation_equals_uncached():
    converted = convert(tiny_model("llama"), TRAIN_LENGTH, seed=0, share_layers=True)
    ids = tokens(length=10)
    mask = torch.ones_like(ids)
    ids[0, :4], mask[0, :4] = 0, 0
    options = {"attention_mask": mask, "max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(
        converted.generate(ids, use_cache=True, **options), converted.generate(ids, use_cache=False, **options)
    )


@pytest.mark.parametrize("share_layers", [False, True])
def test_logits_decoded_with_the_cache_match_a_full_forward(share_layers):
    converted = convert(tiny_model("qwen2"), TRAIN_LENGTH, seed=0, share_layers=share_layers)
    ids = tokens(length=20)
    full = logits(converted, ids)
    with torch.no_grad():
        out = converted(ids[:, :8], use_cache=True)
        steps = [out.logits]
        for t in range(8, 20):
            out = converted(ids[:, t : t + 1], use_cache=True, **{CACHE: getattr(out, CACHE)})
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(("share_layers", "seed"), [(False, 3), (True, None)])
def test_save_and_load_round_trip(tmp_path, share_layers, seed):
    converted = convert(tiny_model("qwen3"), TRAIN_LENGTH, seed=seed, share_layers=share_layers, output_dim="square")
    converted.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())[CONFIG_KEY]
    assert saved["train_length"] == TRAIN_LENGTH and saved["share_layers"] is share_layers
    assert saved["output_dim"] == "square" and saved["seed"] == seed

    loaded = from_pretrained(tmp_path)
    assert getattr(loaded.config, CONFIG_KEY) == getattr(converted.config, CONFIG_KEY)
    ids = tokens()
    assert torch.equal(logits(loaded, ids), logits(converted, ids))
    originals, restored = fope_modules(converted), fope_modules(loaded)
    assert len(restored) == (1 if share_layers else 2)
    for original, copy in zip(originals, restored, strict=True):
        assert repr(copy) == repr(original)
        assert torch.equal(copy.cos_coef, original.cos_coef) and torch.equal(copy.sin_coef, original.sin_coef)


def test_load_in_bfloat16_keeps_float32_coefficients(tmp_path):
    converted = convert(tiny_model("llama"), TRAIN_LENGTH, seed=0)
    converted.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    for original, copy in zip(fope_modules(converted), fope_modules(loaded), strict=True):
        assert copy.cos_coef.dtype == torch.float32 and torch.equal(copy.cos_coef, original.cos_coef)
    ids = tokens()
    torch.testing.assert_close(logits(loaded, ids).float(), logits(converted, ids), atol=0.1, rtol=0.1)


# Run in a fresh interpreter that never imports fope: the folder must carry all the code it needs.
REMOTE_LOAD = """
import sys, torch, transformers
directory, ids_file, out_file = sys.argv[1:4]
model = transformers.AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True)
ids = torch.load(ids_file)
options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
with torch.no_grad():
    result = {"logits": model(ids).logits, "cached": model.generate(ids, use_cache=True, **options),
              "uncached": model.generate(ids, use_cache=False, **options)}
result |= {"fope_imported": "fope" in sys.modules, "class": type(model).__name__}
torch.save(result, out_file)
"""


def remote_load(directory, ids, tmp_path):
    import subprocess
    import sys

    torch.save(ids, tmp_path / "ids.pt")
    script = tmp_path / "remote_load.py"
    script.write_text(REMOTE_LOAD)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(script), str(directory), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)


@pytest.mark.parametrize(("name", "share_layers"), [("llama", False), ("qwen3", True), ("phi3", False), ("glm", True)])
def test_automodel_with_trust_remote_code_loads_the_fope_model_without_fope(tmp_path, name, share_layers):
    converted = convert(tiny_model(name), TRAIN_LENGTH, seed=0, share_layers=share_layers)
    converted.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model_type"] == "fope" and config["auto_map"]["AutoModelForCausalLM"].startswith("modeling_fope.")
    ids = tokens()
    remote = remote_load(tmp_path / "model", ids, tmp_path)
    assert remote["class"] == "FoPEForCausalLM" and not remote["fope_imported"]
    ours = logits(from_pretrained(tmp_path / "model"), ids)
    assert torch.equal(remote["logits"], ours)
    assert (ours - logits(tiny_model(name), ids)).abs().max() > 1e-4  # FoPE, not the RoPE model
    assert torch.equal(remote["cached"], remote["uncached"])


def test_plain_automodel_without_trust_remote_code_refuses_and_says_what_to_do(tmp_path):
    import subprocess
    import sys

    convert(tiny_model("llama"), TRAIN_LENGTH, seed=0).save_pretrained(tmp_path)
    code = "import sys, transformers; transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode != 0 and "trust_remote_code=True" in done.stderr


def test_a_checkpoint_without_its_coefficients_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    convert(tiny_model("llama"), TRAIN_LENGTH, seed=0).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "cos_coef" not in k}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lacks the FoPE tensors"):
        from_pretrained(tmp_path)


def test_seed_makes_coefficients_reproducible_and_layers_distinct():
    first = fope_modules(convert(tiny_model(), TRAIN_LENGTH, seed=7))
    again = fope_modules(convert(tiny_model(), TRAIN_LENGTH, seed=7))
    other = fope_modules(convert(tiny_model(), TRAIN_LENGTH, seed=8))
    assert all(torch.equal(a.cos_coef, b.cos_coef) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].cos_coef, first[1].cos_coef)
    assert not torch.equal(first[0].cos_coef, other[0].cos_coef)


def test_per_kv_head_coefficients_use_the_models_shapes():
    (fope, _) = fope_modules(convert(tiny_model("qwen2"), TRAIN_LENGTH, seed=0))
    assert (fope.head_dim, fope.num_heads, fope.num_kv_heads) == (16, 4, 2)
    assert tuple(fope.cos_coef.shape) == (2, 3, 3)  # (Hkv, K, d_out)
    (phi,) = fope_modules(convert(tiny_model("phi3"), TRAIN_LENGTH, seed=0, share_layers=True))
    assert phi.rotary_dim == 8


def test_inplace_false_leaves_the_original_alone():
    model = tiny_model()
    ids = tokens()
    before = logits(model, ids)
    convert(model, TRAIN_LENGTH, inplace=False)
    assert fope_modules(model) == [] and CONFIG_KEY not in model.config.to_dict()
    assert torch.equal(logits(model, ids), before)


def test_errors_name_the_problem():
    model = tiny_model()
    with pytest.raises(TypeError, match="unknown FoPE option 'sigmaa'"):
        convert(model, TRAIN_LENGTH, sigmaa=0.1)
    with pytest.raises(TypeError, match="reads 'theta' from the model"):
        convert(model, TRAIN_LENGTH, theta=500.0)
    with pytest.raises(ValueError, match="keeps no frequency"):
        convert(model, 2)
    assert fope_modules(model) == []  # a failed conversion changes nothing
    convert(model, TRAIN_LENGTH)
    with pytest.raises(ValueError, match="already uses FoPE"):
        convert(model, TRAIN_LENGTH)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64))
    with pytest.raises(TypeError, match="Llama-family"):
        convert(gpt2, TRAIN_LENGTH)
    with pytest.raises(ValueError, match="train_length must be"):
        convert(tiny_model(), 0)


def test_an_unmapped_rope_type_needs_an_explicit_scaling():
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    llama3 |= {"original_max_position_embeddings": 32, "rope_theta": 10000.0}
    model = tiny_model("llama", rope_parameters=llama3)
    with pytest.raises(ValueError, match=r"'llama3' has no fope equivalent.*scaling=None"):
        convert(model, TRAIN_LENGTH)
    convert(model, TRAIN_LENGTH, scaling=None)
    assert fope_modules(model)[0].scaling is None


def test_from_pretrained_rejects_a_directory_without_fope(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no 'fope' entry with a base_architecture"):
        from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="local model directory"):
        from_pretrained(tmp_path / "missing")


def test_cli_convert_writes_a_loadable_fope_model(tmp_path, capsys):
    source, target = tmp_path / "rope", tmp_path / "fope"
    tiny_model("mistral").save_pretrained(source)
    (source / "tokenizer.json").write_text("{}")
    argv = ["convert", str(source), str(target), "--train-length", "64", "--seed", "5"]
    assert main([*argv, "--share-layers", "--output-dim", "square", "--sigma", "0.2"]) == 0
    assert "FoPE" in capsys.readouterr().out
    assert (target / "tokenizer.json").read_text() == "{}"
    options = json.loads((target / "config.json").read_text())[CONFIG_KEY]
    assert options["share_layers"] and options["output_dim"] == "square" and options["sigma"] == 0.2
    (fope,) = fope_modules(from_pretrained(target))
    assert fope.output_dim == fope.num_kept and fope.seed == 5


def test_convert_directory_refuses_to_overwrite_its_source(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is SRC_DIR"):
        convert_directory(tmp_path, tmp_path, TRAIN_LENGTH)


def test_cli_convert_never_writes_over_or_inside_its_source(tmp_path, capsys):
    bucket = tmp_path / "s3"
    source = bucket / "models" / "llama"
    tiny_model().save_pretrained(source)
    (bucket / "other.txt").write_text("not fope's")
    files = {path: path.read_bytes() for path in bucket.rglob("*") if path.is_file()}
    capsys.readouterr()
    for out, relation in ((bucket, "contains SRC_DIR"), (source / "fope", "is inside SRC_DIR")):
        argv = ["convert", str(source), str(out), "--train-length", "64", "--overwrite"]
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and relation in error, error
    assert {path: path.read_bytes() for path in bucket.rglob("*") if path.is_file()} == files


def test_cli_convert_errors_are_one_line(tmp_path, capsys):
    source, target = tmp_path / "rope", tmp_path / "fope"
    tiny_model("llama").save_pretrained(source)
    with pytest.raises(SystemExit):
        main(["convert", str(source), str(target), "--train-length", "0"])
    assert "--train-length: must be an int >= 1; got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", str(source), str(target), "--train-length", "64", "--sigmaa", "1"])
    assert "unrecognized arguments: --sigmaa" in capsys.readouterr().err

    gpt2 = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)
    ).save_pretrained(gpt2)
    capsys.readouterr()
    assert main(["convert", str(gpt2), str(target), "--train-length", "64"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("fope convert: error: ") and "Traceback" not in errors[0]
    assert "Llama-family" in errors[0] and "GPT2LMHeadModel" in errors[0]

    broken = shutil.copytree(source, tmp_path / "broken")  # a config transformers' own checks refuse
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "hidden_size": config["hidden_size"] + 1}))
    assert main(["convert", str(broken), str(tmp_path / "none"), "--train-length", "64"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"fope convert: error: {broken}: transformers refuses its config.json: ")

    assert main(["convert", str(source), str(target), "--train-length", "64", "--seed", "1"]) == 0
    before = (target / "model.safetensors").read_bytes()
    assert main(["convert", str(source), str(target), "--train-length", "64", "--seed", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (target / "model.safetensors").read_bytes() == before
    assert main(["convert", str(source), str(target), "--train-length", "64", "--seed", "2", "--overwrite"]) == 0
    assert (target / "model.safetensors").read_bytes() != before

    again = tmp_path / "again"
    assert main(["convert", str(target), str(again), "--train-length", "128"]) == 2
    assert "already a FoPE model" in capsys.readouterr().err and not again.exists()


@pytest.mark.parametrize("keep", [0, 100])
def test_cli_convert_names_a_truncated_weights_file(tmp_path, capsys, keep):
    source, target = tmp_path / "rope", tmp_path / "fope"
    tiny_model("llama").save_pretrained(source)
    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: keep or weights.stat().st_size // 2])  # cut in the header or the data
    capsys.readouterr()
    assert main(["convert", str(source), str(target), "--train-length", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fope convert: error: {weights} is not a readable safetensors file (")
    assert "it may be truncated" in err and err.count("\n") == 1 and not target.exists()


def test_from_pretrained_names_a_truncated_weights_file(tmp_path):
    source, target = tmp_path / "rope", tmp_path / "fope"
    tiny_model("llama").save_pretrained(source)
    assert main(["convert", str(source), str(target), "--train-length", "64"]) == 0
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{weights} is not a readable safetensors file"):  # safetensors named none
        from_pretrained(target)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"share_heads": True, "sigma": 0.5},
        {"keep_zeroed": True},
        {"frequency_dim": 64},
        {"zero_pad": "identity", "output_dim": "square"},
        {"fourier": False},
        {"clip_floor": False},
        {"scaling": {"type": "yarn", "factor": 4.0, "original_max_position": 16}},
        {"scaling": {"type": "yarn", "factor": 4.0, "original_max_position": 16, "temperature": True}},
        {"scaling": {"type": "linear", "factor": 2.0}, "layout": "interleaved"},
    ],
    ids=repr,
)
def test_the_modeling_files_features_equal_fope_positions(options):
    """The HF-side FourierFeatures (what a converted folder runs) against fope.FoPE, the spec's implementation."""
    from fope.integrations.transformers import _features_of
    from fope.positions import FoPE

    fope = FoPE(head_dim=32, num_heads=4, num_kv_heads=2, train_length=TRAIN_LENGTH, seed=3, **options)
    positions = torch.tensor([[0, 1, 5, 63, 64, 200, 1000], [3, 4, 5, 6, 7, 8, 9]])
    expected, actual = fope.features(positions), _features_of(fope).features(positions)
    for ours, theirs in zip(actual, expected, strict=True):
        torch.testing.assert_close(ours, theirs.expand_as(ours), atol=1e-6, rtol=1e-6)


def test_keep_zeroed_converts_and_round_trips(tmp_path):
    converted = convert(tiny_model("llama"), TRAIN_LENGTH, seed=0, keep_zeroed=True)
    (fope, _) = fope_modules(converted)
    assert fope.num_terms == 8 and fope.num_kept == 3
    converted.save_pretrained(tmp_path)
    ids = tokens()
    assert torch.equal(logits(from_pretrained(tmp_path), ids), logits(converted, ids))
