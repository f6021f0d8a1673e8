"""fope export: lab models as transformers folders that load, without fope, to the same logits and generations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from fope.integrations.export import _check_logits, export_model, export_run, to_transformers
from fope.model import ModelConfig, TransformerLM
from fope.runs import load_run

TRAIN_LENGTH = 64  # head_dim 16, theta 1e4: FoPE keeps 3 of 8 frequencies
PROBE_LENGTH = 96  # past TRAIN_LENGTH: the exported encoding must extrapolate as the lab model's does
NEW_TOKENS = 8
TEXTS = [
    "The grass is green. The sky is blue.",
    "  two leading spaces, digits 12345 and\nnew lines\t\ttabs",
    "a literal <|endoftext|> inside the text stays text",
    "",
]
# name -> ModelConfig fields beyond the shared ones: every kind of encoding the export maps, and both architectures.
CASES = {
    "rope": {"position": "rope"},
    "rope-interleaved-tied": {
        "position": "rope",
        "position_options": {"layout": "interleaved"},
        "tie_embeddings": True,
    },
    "yarn": {"position": "yarn", "position_options": {"factor": 4.0, "original_max_position": TRAIN_LENGTH}},
    "hope": {"position": "hope"},
    "fope-gqa": {"position": "fope", "num_kv_heads": 2},  # one coefficient set per layer and per key/value head
    "fope-shared": {"position": "fope", "share_position": True},
    "fope-qk-norm": {"position": "fope", "qk_norm": True},  # -> Qwen3ForCausalLM
    "fope-keep-zeroed": {"position": "fope", "position_options": {"keep_zeroed": True, "share_heads": True}},
    "fope-no-fs": {"position": "fope-no-fs"},
    "nope": {"position": "nope"},
}

# Runs in a fresh interpreter that must never import fope: loads every exported folder with plain transformers.
LOADER = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoFope(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fope" or name.startswith("fope."):
                raise ImportError(f"the exported folder must load without fope; something imported {name}")
            return None

    sys.meta_path.insert(0, NoFope())
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = json.load(open(sys.argv[1]))
    results = {}
    for name, case in manifest["cases"].items():
        model = AutoModelForCausalLM.from_pretrained(case["dir"], trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(case["dir"])
        ids = torch.tensor(case["ids"])
        prompt = torch.tensor(case["prompt"])
        mask = torch.ones_like(prompt)
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
            options = dict(attention_mask=mask, max_new_tokens=case["new_tokens"], do_sample=False)
            cached = model.generate(prompt, use_cache=True, **options)
            uncached = model.generate(prompt, use_cache=False, **options)
        results[name] = {
            "class": type(model).__name__,
            "bases": [cls.__name__ for cls in type(model).__mro__],
            "logits": logits,
            "cached": cached,
            "uncached": uncached,
            "token_ids": [tokenizer(text)["input_ids"] for text in manifest["texts"]],
            "decoded": [tokenizer.decode(tokenizer(text)["input_ids"]) for text in manifest["texts"]],
            "special": [tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id],
            "generation_eos": model.generation_config.eos_token_id,
            "config": model.config.to_dict(),
        }
    results["_fope_imported"] = any(m == "fope" or m.startswith("fope.") for m in sys.modules)
    torch.save(results, sys.argv[2])
    """
)


def lab_model(tokenizer, seed: int = 0, **fields) -> TransformerLM:
    """A tiny random TransformerLM whose norm weights are not all one (so a misplaced norm changes the logits)."""
    values = {
        "vocab_size": tokenizer.vocab_size,
        "d_model": 64,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "train_length": TRAIN_LENGTH,
        "position_seed": seed,
        **fields,
    }
    torch.manual_seed(seed)
    model = TransformerLM(ModelConfig(**values)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.RMSNorm):
                module.weight.uniform_(0.5, 1.5)
            elif isinstance(module, torch.nn.Linear):
                module.weight.mul_(4.0)  # sharper next-token distributions: greedy decoding has no near-ties
    return model


@pytest.fixture(scope="module")
def exported(tiny_runs, tmp_path_factory):
    """Every case exported (plus the trained tiny FoPE run through export_run), loaded once in a fope-free process."""
    root = tmp_path_factory.mktemp("export")
    run = load_run(tiny_runs["fope"])
    tokenizer = run.tokenizer
    generator = torch.Generator().manual_seed(0)
    prompt = torch.tensor([tokenizer.encode("The grass is green. The sky")])
    models = {name: lab_model(tokenizer, seed=index, **fields) for index, (name, fields) in enumerate(CASES.items())}
    for name, model in models.items():
        export_model(model, tokenizer, root / name)
    models["run"] = run.model
    export_run(tiny_runs["fope"], root / "run")
    manifest = {"texts": TEXTS, "cases": {}}
    expected = {}
    for name, model in models.items():
        ids = torch.randint(0, model.config.vocab_size, (2, PROBE_LENGTH), generator=generator)
        with torch.no_grad():
            logits = model(ids).logits
        generated = model.generate(prompt, NEW_TOKENS, eos_id=tokenizer.eos_id)
        expected[name] = {"logits": logits, "generated": generated}
        manifest["cases"][name] = {
            "dir": str(root / name),
            "ids": ids.tolist(),
            "prompt": prompt.tolist(),
            "new_tokens": NEW_TOKENS,
        }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "loader.py").write_text(LOADER)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(root / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="0")
    completed = subprocess.run(
        [sys.executable, str(root / "loader.py"), str(root / "manifest.json"), str(root / "results.pt")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = torch.load(root / "results.pt", weights_only=True)
    return {"root": root, "run": run, "expected": expected, "results": results}


def test_the_loading_process_never_imported_fope(exported):
    assert exported["results"]["_fope_imported"] is False


@pytest.mark.parametrize("name", [*CASES, "run"])
def test_logits_match_the_lab_model(exported, name):
    actual, expected = exported["results"][name]["logits"], exported["expected"][name]["logits"]
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", [*CASES, "run"])
def test_cached_greedy_generation_equals_uncached_and_the_lab_models(exported, name):
    result = exported["results"][name]
    assert torch.equal(result["cached"], result["uncached"])
    assert result["cached"].tolist() == exported["expected"][name]["generated"].tolist()


@pytest.mark.parametrize(
    ("name", "architecture"),
    [("rope", "LlamaForCausalLM"), ("fope-qk-norm", "Qwen3ForCausalLM"), ("nope", "LlamaForCausalLM")],
)
def test_the_architecture_follows_qk_norm(exported, name, architecture):
    result = exported["results"][name]
    assert result["class"] == "FoPEForCausalLM"
    assert architecture in result["bases"]
    config = result["config"]
    assert config["fope"]["base_architecture"] == architecture
    assert config["attention_bias"] is False
    assert config["head_dim"] == 16 and config["rms_norm_eps"] == 1e-6
    if architecture == "Qwen3ForCausalLM":
        assert config["use_sliding_window"] is False and set(config["layer_types"]) == {"full_attention"}


def test_encodings_map_to_fourier_features(exported):
    features = {name: exported["results"][name]["config"]["fope"]["features"] for name in CASES}
    assert features["rope"]["num_kept"] == features["rope"]["output_dim"] == 8  # identity over every pair
    assert features["rope-interleaved-tied"]["layout"] == "interleaved"
    assert features["yarn"]["attention_factor"] == pytest.approx(0.1 * torch.log(torch.tensor(4.0)).item() + 1)
    assert features["fope-gqa"]["num_coef_heads"] == 2 and features["fope-gqa"]["share_layers"] is False
    assert features["fope-shared"]["share_layers"] is True
    assert features["fope-keep-zeroed"]["num_kept"] == 8 and features["fope-keep-zeroed"]["num_coef_heads"] == 1
    assert features["nope"]["num_kept"] == 0 and features["nope"]["zero_pad"] == "identity"
    assert exported["results"]["rope-interleaved-tied"]["config"]["tie_word_embeddings"] is True


def test_the_context_covers_training_and_the_scaled_range(exported):
    configs = {name: exported["results"][name]["config"] for name in CASES}
    assert configs["rope"]["max_position_embeddings"] == TRAIN_LENGTH
    assert configs["yarn"]["max_position_embeddings"] == 4 * TRAIN_LENGTH


def test_the_tokenizer_round_trips_fopes_ids(exported):
    tokenizer = exported["run"].tokenizer
    result = exported["results"]["run"]
    assert result["token_ids"] == [tokenizer.encode(text) for text in TEXTS]
    assert result["decoded"] == TEXTS
    assert result["special"] == [tokenizer.eos_id] * 3
    assert result["generation_eos"] == tokenizer.eos_id


def test_export_run_records_provenance(exported, tiny_runs):
    record = exported["results"]["run"]["config"]["fope"]
    run = exported["run"]
    exported_from = record["exported_from"]
    assert exported_from["tool"] == "fope export"
    assert exported_from["run"] == run.label and exported_from["step"] == run.step == 8
    assert exported_from["position"] == "fope" and exported_from["train_length"] == run.train_length
    assert record["base_architecture"] == "LlamaForCausalLM"
    files = {path.name for path in (exported["root"] / "run").iterdir()}
    assert {"config.json", "model.safetensors", "modeling_fope.py", "tokenizer.json", "tokenizer_config.json"} <= files


def test_alibi_is_refused_in_one_line(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match="no transformers equivalent") as error:
        export_run(tiny_runs["alibi"], tmp_path / "out")
    assert "\n" not in str(error.value) and "ALiBi" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_out_dir_needs_overwrite(tiny_runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="--overwrite") as error:
        export_run(tiny_runs["nope"], out)
    assert "\n" not in str(error.value)
    assert (out / "stale.txt").read_text() == "old"
    export_run(tiny_runs["nope"], out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt' is a file, not a folder; pass --overwrite"):
        export_run(tiny_runs["nope"], a_file)
    assert a_file.read_text() == "mine"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what must be left exactly as it was."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_out_is_never_the_run_inside_it_or_above_it(tiny_runs, tmp_path, monkeypatch, capsys):
    from fope.cli import main

    project = tmp_path / "proj"
    run_dir = shutil.copytree(tiny_runs["fope"], project / "runs" / "r")
    (project / "notes.txt").write_text("not fope's")
    (tmp_path / "link").symlink_to(project)
    before = tree(project)
    cases = [
        (str(project), "contains RUN_DIR"),  # an ancestor: --overwrite used to delete the run and the notes
        (str(tmp_path / "link"), "contains RUN_DIR"),  # the same folder through a symlink
        (str(run_dir), "is RUN_DIR"),  # the run replaced by its export
        (str(run_dir / "hf"), "is inside RUN_DIR"),
    ]
    for out, relation in cases:
        assert main(["export", str(run_dir), out, "--overwrite"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("fope export: error: ") and relation in error, error
    monkeypatch.chdir(project)
    assert main(["export", "runs/r", ".", "--overwrite"]) == 2
    assert "contains RUN_DIR 'runs/r'" in capsys.readouterr().err
    assert tree(project) == before
    assert load_run(run_dir).step == 8


def test_a_failed_export_leaves_out_as_it_was(tiny_runs, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")

    def full_disk(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", full_disk)
    with pytest.raises(OSError, match="disk full"):
        export_run(tiny_runs["rope"], out, overwrite=True)
    assert tree(out) == {"stale.txt": b"old"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_the_probe_catches_a_wrong_export(tiny_runs):
    run = load_run(tiny_runs["rope"])
    hf_model = to_transformers(run.model, run.tokenizer)
    with torch.no_grad():
        gate = hf_model.model.layers[0].mlp.gate_proj.weight
        up = hf_model.model.layers[0].mlp.up_proj.weight
        swapped = gate.clone()
        gate.copy_(up)
        up.copy_(swapped)
    with pytest.raises(RuntimeError, match="does not reproduce"):
        _check_logits(hf_model, run.model)


def test_a_missing_run_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        export_run(tmp_path / "missing", tmp_path / "out")
    assert not Path(tmp_path / "out").exists()


def test_cli_export(tiny_runs, tmp_path, capsys):
    from fope.cli import main

    out = tmp_path / "out"
    assert main(["export", str(tiny_runs["fope"]), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["fope"]["exported_from"]["step"] == 8
    assert main(["export", str(tiny_runs["fope"]), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["export", str(tiny_runs["fope"]), str(out), "--overwrite", "--step", "4", "--max-positions", "512"]) == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["fope"]["exported_from"]["step"] == 4 and config["max_position_embeddings"] == 512
    assert main(["export", str(tiny_runs["alibi"]), str(tmp_path / "alibi")]) == 2
    assert "no transformers equivalent" in capsys.readouterr().err


def test_max_position_embeddings_is_at_least_the_training_length(tiny_runs, tmp_path):
    run = load_run(tiny_runs["rope"])
    with pytest.raises(ValueError, match="training length"):
        export_model(run.model, run.tokenizer, tmp_path / "short", max_position_embeddings=run.train_length - 1)
    out = export_model(run.model, run.tokenizer, tmp_path / "long", max_position_embeddings=4 * run.train_length)
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 4 * run.train_length
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 4 * run.train_length


def test_an_exported_folder_keeps_its_position_name_in_the_lab(exported):
    from fope.integrations.hf_lm import load_checkpoint

    for name, position in (("rope", "rope"), ("nope", "nope"), ("hope", "hope"), ("run", "fope")):
        model = load_checkpoint(exported["root"] / name, train_length=64)
        assert model.config.position == position, name


def test_fope_reads_an_exported_tokenizer_without_asking_to_run_its_code(exported, monkeypatch, capfd):
    """transformers' AutoTokenizer, left to decide, asks on a terminal whether to run the code a FoPE folder's
    config.json names (and waits 15 s), then warns about the unknown model type; fope's loaders never ask."""
    import builtins

    from fope.data.tokenizer import Tokenizer
    from fope.integrations.hf_lm import load_checkpoint

    asked = []
    monkeypatch.setattr(builtins, "input", lambda *args: asked.append(args) or "n")
    capfd.readouterr()
    folder = exported["root"] / "run"
    tokenizer = Tokenizer.load(folder)
    assert tokenizer.encode_batch(TEXTS) == exported["run"].tokenizer.encode_batch(TEXTS)
    assert load_checkpoint(folder, train_length=64).tokenizer is not None
    printed = capfd.readouterr()
    assert asked == []
    assert "custom code" not in printed.out + printed.err and "model of type" not in printed.out + printed.err
