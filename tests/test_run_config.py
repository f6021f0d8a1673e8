"""Run configs fail at load, in one line naming the key, the value and what is accepted; devices likewise."""

from __future__ import annotations

import pytest
import torch

from fope.config import ConfigError, load_config
from fope.device import model_device, resolve_device
from fope.model import TransformerLM
from tests.conftest import tiny_run_config


def load(corpus, *overrides, position="fope"):
    return load_config(base=tiny_run_config(corpus, position), overrides=list(overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.position_options.sigmaa=1", r"model.position_options.sigmaa=1: position 'fope' takes no option"),
        ("model.position_options.sigma=-1", r"model.position_options.sigma: sigma must be >= 0.0; got -1"),
        ("model.position_options.sigma=.nan", r"model.position_options.sigma must be a finite number; got nan"),
        ("model.head_dim=7", r"model \(position 'fope'\): head_dim must be even"),
        ("model.d_model=abc", r"model.d_model must be an integer; got 'abc'"),
        ("model.mlp_ratio=.inf", r"model.mlp_ratio must be a finite number; got inf"),
        ("optim.lr=.nan", r"optim.lr must be a finite number; got nan"),
        ("optim.betas=[0.9, .inf]", r"optim.betas\[1\] must be a finite number; got inf"),
        ("model.position_options.scaling={type: yarn, factor: .nan}", r"scaling.factor must be a finite number"),
        ("model.head_dim=2", r"model \(position 'fope'\): output_dim='official' .* needs head_dim \(rotary_dim\) >= 4"),
        (f"name={'x' * 101}", r"name must be at most 100 characters \(it labels .*\); got 101 characters: 'xxx"),
    ],
)
def test_bad_model_and_numbers_fail_at_load(tiny_corpus, override, message):
    with pytest.raises(ConfigError, match=message) as error:
        load(tiny_corpus, override)
    assert "\n" not in str(error.value)


def test_seeds_are_those_torch_takes(tiny_corpus):
    """torch seeds are unsigned 64-bit, and layer i's position coefficients are seeded position_seed + i."""
    largest = 2**64 - 1
    with pytest.raises(
        ConfigError, match=rf"train: seed must be an int from 0 to {largest} \(2\*\*64 - 1, .*got {largest + 1}$"
    ):
        load(tiny_corpus, f"train.seed={largest + 1}", position="rope")
    with pytest.raises(ConfigError, match=r"train: seed must be an int from 0 to .*; got -1$"):
        load(tiny_corpus, "train.seed=-1", position="rope")
    # two layers: the largest position seed is 2**64 - 2, which train.seed gives when model.position_seed is not set
    config = load(tiny_corpus, f"train.seed={largest - 1}")
    torch.manual_seed(config.train.seed)
    assert config.model_config(300).position_seed == largest - 1
    TransformerLM(config.model_config(300))  # layer 1 is seeded 2**64 - 1: torch takes it
    assert load(tiny_corpus, f"train.seed={largest}", "model.position_seed=0").train.seed == largest
    with pytest.raises(
        ConfigError, match=rf"position_seed must be an int from 0 to {largest - 1} .*less 1: layer i of 2"
    ):
        load(tiny_corpus, f"train.seed={largest}")
    with pytest.raises(ConfigError, match=r"got 99999999999999999999$"):
        load(tiny_corpus, "model.position_seed=99999999999999999999")


def test_unknown_option_names_what_is_accepted(tiny_corpus):
    with pytest.raises(ConfigError, match=r"accepted: \[.*'sigma'.*\]"):
        load(tiny_corpus, "model.position_options.sigmaa=1")
    with pytest.raises(ConfigError, match=r"accepted: \[.*'factor'.*'original_max_position'.*\]"):
        load(tiny_corpus, "model.position=yarn", "model.position_options.sigma=1")
    with pytest.raises(ConfigError, match="'fope-no-fs' fixes fourier=False"):
        load(tiny_corpus, "model.position=fope-no-fs", "model.position_options.fourier=true")


def test_valid_options_load_and_leave_the_global_rng_alone(tiny_corpus):
    state = torch.get_rng_state()
    config = load(tiny_corpus, "model.position_options.sigma=0.5", "model.position_seed=null")
    assert torch.equal(state, torch.get_rng_state())
    assert config.model_config(300).position_options == {"sigma": 0.5}
    yarn = load(tiny_corpus, "model.position=yarn", "model.position_options={factor: 2, original_max_position: 32}")
    assert yarn.model.position == "yarn"


def test_devices(tiny_corpus):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps; got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="asks for CUDA, which is not available here"):
            resolve_device("cuda")
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu") and model_device(torch.nn.ReLU()).type == "cpu"


def test_a_name_of_100_characters_loads(tiny_corpus):
    assert load(tiny_corpus, f"name={'n' * 100}").name == "n" * 100


@pytest.mark.parametrize("device", ["meta", torch.device("meta"), "xpu", "cpu:0:1"])
def test_a_device_fope_does_not_run_on_is_refused(device):
    with pytest.raises(ConfigError, match=r"device must be auto, cpu, cuda, cuda:N or mps; got '(meta|xpu|cpu:0:1)'"):
        resolve_device(device)


def test_the_evaluations_refuse_the_meta_device_before_any_work(tiny_runs):
    from fope.evaluate.passkey import evaluate_passkey
    from fope.evaluate.perplexity import evaluate_perplexity, evaluate_run_perplexity
    from fope.runs import load_run

    run = load_run(tiny_runs["rope"])
    with pytest.raises(ConfigError, match="got 'meta'"):
        evaluate_perplexity(run.model, run.val_store(), run.tokenizer, train_length=32, device="meta", progress=False)
    with pytest.raises(ConfigError, match="got 'meta'"):
        evaluate_passkey(run.model, run.tokenizer, lengths=[128], trials=1, device="meta", progress=False)
    with pytest.raises(ConfigError, match="got 'meta'"):
        evaluate_run_perplexity(tiny_runs["rope"], device="meta", progress=False)
    with pytest.raises(ConfigError, match="got 'meta'"):
        load_run(tiny_runs["rope"], device="meta")
    assert model_device(run.model).type == "cpu"


def test_cli_meta_device_is_one_line(tiny_runs, tiny_corpus, tmp_path, capsys):
    import yaml

    from fope.cli import main

    accepted = "device must be auto, cpu, cuda, cuda:N or mps; got 'meta'"
    for command in (["eval"], ["passkey"], ["analyze"]):
        assert main([*command, str(tiny_runs["rope"]), "--device", "meta"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fope {command[0]}: error: {accepted}") and err.count("\n") == 1
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus, "rope", device="meta")))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert (
        capsys.readouterr().err == f"fope train: error: train.device: {accepted}, a device type fope does not run on\n"
    )
    assert not (tmp_path / "run").exists()


def test_cli_cuda_without_cuda_is_one_line_for_analyze_and_bench(tiny_runs, monkeypatch, capsys):
    from fope.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only build, also on a GPU machine
    monkeypatch.setattr("fope.benchmark.copy_bandwidth", lambda *args, **kwargs: pytest.fail("the benchmark ran"))
    for argv in (["analyze", str(tiny_runs["rope"]), "--device", "cuda"], ["bench", "--quick", "--device", "cuda"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        expected = f"fope {argv[0]}: error: device 'cuda' asks for CUDA, which is not available here; use cpu or auto\n"
        assert err == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_device_cuda_without_cuda_is_one_line(tiny_runs, capsys):
    from fope.cli import main

    assert main(["eval", str(tiny_runs["rope"]), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "asks for CUDA, which is not available here" in err and err.count("\n") == 1


def test_the_model_section_is_typed_and_configs_written_before_still_load(tiny_corpus, tmp_path):
    from fope.config import save_config, to_dict
    from fope.model import ModelConfig, ModelSection

    config = load(tiny_corpus)
    assert type(config.model) is ModelSection and config.model.vocab_size is None and config.model.train_length is None
    resolved = config.model_config(vocab_size=300)
    assert type(resolved) is ModelConfig and resolved.vocab_size == 300
    assert resolved.train_length == config.train.seq_len and resolved.position_seed == config.train.seed
    with pytest.raises(ConfigError, match=r"unknown config key model\.d_modle"):
        load(tiny_corpus, "model.d_modle=64")
    # A config saved before the section was typed holds only the keys that were set: it loads to the same config.
    sparse = {**tiny_run_config(tiny_corpus, "fope"), "model": {"d_model": 32, "num_layers": 2, "num_heads": 2}}
    sparse["model"]["position"] = "fope"
    full = load_config(base=sparse)
    assert to_dict(load_config(base=to_dict(full))) == to_dict(full) and full.model.mlp_ratio == 4.0
    save_config(full, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == full
    with pytest.raises(ConfigError, match="set either model"):  # model: {} (a transformers run's, before) is unset
        load_config(base={**sparse, "model": {}})
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'vocab_size'"):
        ModelConfig(d_model=32, num_layers=2, num_heads=2)
