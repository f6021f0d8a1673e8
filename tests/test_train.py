"""The training loop: exact resume, atomic checkpoints, divergence, DDP equivalence, continued pre-training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fope.checkpoint import CheckpointError, latest_checkpoint, save_checkpoint
from fope.config import ConfigError, load_config
from fope.runs import load_run
from fope.train import TrainingDiverged, iterate_losses, lr_factor, train
from tests.conftest import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


def config_for(corpus, position="rope", overrides=(), **train_options):
    return load_config(base=tiny_run_config(corpus, position, **train_options), overrides=list(overrides))


def losses(run_dir):
    return dict(iterate_losses(run_dir))


def test_lr_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_training_lowers_the_loss_and_writes_a_run(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    summary = train(config_for(tiny_corpus, max_steps=30, eval_every=30, checkpoint_every=30), run_dir, progress=False)
    history = losses(run_dir)
    assert summary["step"] == 30 and len(history) == 30
    assert history[30] < history[1] - 0.5
    for name in ("config.yaml", "tokenizer.json", "data.json", "metrics.jsonl", "checkpoints/latest"):
        assert (run_dir / name).is_file(), name
    run = load_run(run_dir)
    assert run.step == 30 and run.model.config.train_length == 32 and run.label == "rope"
    assert run.val_store().num_tokens > 0
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(config_for(tiny_corpus), run_dir, progress=False)


@pytest.mark.parametrize("position", ["rope", "fope"])
def test_resume_continues_exactly(tiny_corpus, tmp_path, position):
    config = config_for(tiny_corpus, position, overrides=["data.passkey_fraction=0.0"])
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "split", until_step=3, progress=False)
    assert max(losses(tmp_path / "split")) == 3
    train(config, tmp_path / "split", resume=True, progress=False)
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert sorted(split) == sorted(full) == list(range(1, 9))
    assert split == full  # bit-identical on CPU: same weights, optimizer, schedule and data after the resume
    a, b = load_run(tmp_path / "full").model, load_run(tmp_path / "split").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_resume_can_extend_a_run(tiny_corpus, tmp_path):
    config = config_for(tiny_corpus)
    train(config, tmp_path / "run", progress=False)
    config.train.max_steps = 12
    summary = train(config, tmp_path / "run", resume=True, progress=False)
    assert summary["start_step"] == 8 and summary["step"] == 12
    assert load_run(tmp_path / "run").step == 12


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    from fope.model import LMOutput, TransformerLM

    original = TransformerLM.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                return LMOutput(out.logits, out.loss * float("nan"))
        return out

    monkeypatch.setattr(TransformerLM, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 6.*step_0000004"):
        train(config_for(tiny_corpus, checkpoint_every=2), tmp_path / "run", progress=False)
    assert load_run(tmp_path / "run").step == 4


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(config_for(tiny_corpus, max_steps=4), run_dir, progress=False)
    model = load_run(run_dir).model

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(run_dir, 5, model, {"tokens": 0})
    assert load_run(run_dir).step == 4  # `latest` still names the complete checkpoint
    assert not (run_dir / "checkpoints" / "step_0000005").exists()


def test_corrupt_checkpoint_is_a_clear_error(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    train(config_for(tiny_corpus, max_steps=4), run_dir, progress=False)
    weights = run_dir / "checkpoints" / "step_0000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt"):
        load_run(run_dir)
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run(run_dir)


def test_continued_pretraining_switches_the_position_encoding(tiny_corpus, tmp_path):
    train(config_for(tiny_corpus, max_steps=4), tmp_path / "rope", progress=False)
    config = config_for(tiny_corpus, "fope", seq_len=64, max_steps=2, init_from=str(tmp_path / "rope"))
    train(config, tmp_path / "fope", progress=False)
    source, extended = load_run(tmp_path / "rope").model, load_run(tmp_path / "fope").model
    assert extended.config.position == "fope" and extended.config.train_length == 64
    assert not torch.equal(source.embed.weight, extended.embed.weight)  # trained further
    records = [json.loads(line) for line in (tmp_path / "fope" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["init_from"].endswith("step_0000004") and records[0]["init_from_step"] == 4


def authors_expansion(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """The authors' OLMo fork (olmo/checkpoint.py, ``len_extra_fourier_expand``): the new coefficient tensor is a
    fresh eye + Xavier draw at the new shape with the old block copied into its top-left corner."""
    new = fresh.clone()
    new[..., : old.shape[-2], : old.shape[-1]] = old
    return new


def test_continued_pretraining_expands_fope_coefficients_as_the_authors_do(tiny_corpus, tmp_path):
    import dataclasses

    from fope.build import initialize_from
    from fope.model import TransformerLM

    train(config_for(tiny_corpus, "fope", max_steps=2), tmp_path / "short", progress=False)
    source = load_run(tmp_path / "short").model
    longer = dataclasses.replace(source.config, train_length=64)
    torch.manual_seed(5)
    fresh = TransformerLM(longer).state_dict()
    models = {}
    for mode in ("fresh", "expand"):
        torch.manual_seed(5)
        models[mode] = TransformerLM(longer)
        info = initialize_from(models[mode], tmp_path / "short", lambda _: None, mode)
    assert info["expanded_position_tensors"] == 2 * len(source.position_modules)  # cos and sin, every layer
    old, expanded, kept = source.state_dict(), models["expand"].state_dict(), models["fresh"].state_dict()
    names = [name for name in fresh if name.endswith(("cos_coef", "sin_coef"))]
    assert names
    for name in names:
        assert old[name].shape[-2] < fresh[name].shape[-2]  # 64 tokens keep more frequencies than 32
        assert torch.equal(expanded[name], authors_expansion(old[name], fresh[name])), name
        assert torch.equal(kept[name], fresh[name]), name
    with pytest.raises(ValueError, match="positions must be 'fresh' or 'expand'"):
        initialize_from(models["fresh"], tmp_path / "short", lambda _: None, "grow")
    with pytest.raises(ConfigError, match="init_positions"):
        config_for(tiny_corpus, "fope", overrides=["train.init_positions=grow"])


def test_init_from_a_different_architecture_is_refused(tiny_corpus, tmp_path):
    train(config_for(tiny_corpus, max_steps=2), tmp_path / "small", progress=False)
    config = config_for(tiny_corpus, overrides=["model.d_model=64"], init_from=str(tmp_path / "small"))
    with pytest.raises(CheckpointError, match="only the position encoding may change"):
        train(config, tmp_path / "big", progress=False)


def test_cli_train_and_config_errors(tiny_corpus, tmp_path, capsys):
    from fope.cli import main

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus)))
    assert (
        main(
            ["train", "--config", str(config_path), "--out", str(tmp_path / "run"), "--max-steps", "2", "--no-progress"]
        )
        == 0
    )
    assert load_run(tmp_path / "run").step == 2
    bad = tiny_run_config(tiny_corpus)
    bad["train"]["learning_rate"] = 1.0
    config_path.write_text(yaml.safe_dump(bad))
    assert main(["train", "--config", str(config_path), "--out", str(tmp_path / "bad")]) == 2
    assert "unknown config key train.learning_rate" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="model: d_model=32 must be divisible by num_heads=3"):
        load_config(base=tiny_run_config(tiny_corpus), overrides=["model.num_heads=3"])


def test_data_sources_train_on_a_subset_of_the_corpus(tiny_corpus, tmp_path):
    config = load_config(base=tiny_run_config(tiny_corpus, max_steps=1), overrides=["data.sources=[plays]"])
    train(config, tmp_path / "plays", progress=False)
    manifest = json.loads((load_run(tmp_path / "plays").data_root() / "manifest.json").read_text())
    assert {record["source"] for record in manifest["documents"]} == {"plays"}
    with pytest.raises(ConfigError, match=r"data.sources must be list\[str\] \| null; got 'plays'"):
        load_config(base=tiny_run_config(tiny_corpus), overrides=["data.sources=plays"])
    with pytest.raises(ConfigError, match=r"data: sources must be a non-empty list of source names; got \[\]"):
        load_config(base=tiny_run_config(tiny_corpus), overrides=["data.sources=[]"])


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tiny_corpus, tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus, max_steps=6)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = [sys.executable, "-m", "fope", "train", "--config", str(config_path), "--no-progress"]
    subprocess.run([*single, "--out", str(tmp_path / "one")], check=True, env=env, cwd=ROOT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run(
        [
            *torchrun,
            "-m",
            "fope",
            "train",
            "--config",
            str(config_path),
            "--no-progress",
            "--out",
            str(tmp_path / "two"),
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    a, b = load_run(tmp_path / "one").model, load_run(tmp_path / "two").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-3, msg=name)


def test_a_run_shorter_than_its_warmup_says_so(tiny_corpus, tmp_path):
    messages = []
    config = config_for(tiny_corpus, max_steps=2, eval_every=2, checkpoint_every=2)
    config.optim.warmup_steps = 100
    train(config, tmp_path / "short", progress=False, log=messages.append)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert warnings == [
        "warning: optim.warmup_steps=100 is more than train.max_steps=2: the learning rate never reaches its peak "
        "optim.lr=0.003 (it stops at 6e-05)"
    ]
    messages.clear()
    train(config_for(tiny_corpus, max_steps=2), tmp_path / "long", progress=False, log=messages.append)
    assert not [m for m in messages if m.startswith("warning:")]


def test_resume_of_a_directory_without_a_run_is_one_clear_error(tiny_corpus, tmp_path, capsys):
    from fope.cli import main

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus)))
    for extra in ([], ["--config", str(config_path)]):
        assert main(["train", "--out", str(tmp_path / "new"), "--resume", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds no run to resume" in err and "leave out --resume" in err
        assert "--config is required" not in err
    with pytest.raises(ConfigError, match="holds no run to resume"):
        train(config_for(tiny_corpus), tmp_path / "new", resume=True, progress=False)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ what a run folder may be, and who trains it


def write_config(tmp_path, corpus, **train_options):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_run_config(corpus, **train_options)))
    return str(path)


def one_error_line(capsys, command="train"):
    """The error line (after any progress bars of data preparation on stderr): one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"fope {command}: error: " in err, err
    line = err[err.index(f"fope {command}: error: ") :]
    assert line.count("\n") == 1 and line.endswith("\n"), err
    return line


def files_of(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_new_run_goes_into_a_new_or_empty_folder(tiny_corpus, tmp_path, capsys):
    from fope.cli import main

    config = write_config(tmp_path, tiny_corpus)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "data.json").write_text("my data")
    (folder / "metrics.jsonl").write_text("my metrics\n")
    assert main(["train", "--config", config, "--out", str(folder), "--max-steps", "2", "--no-progress"]) == 2
    assert "is not empty and holds no run (no config.yaml; it holds data.json, metrics.jsonl)" in one_error_line(capsys)
    assert files_of(folder) == {"data.json": b"my data", "metrics.jsonl": b"my metrics\n"}
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty"
    assert main(["train", "--config", config, "--out", str(empty), "--max-steps", "2", "--no-progress"]) == 0
    assert load_run(empty).step == 2


def test_max_steps_must_leave_steps_to_train(tiny_corpus, tmp_path, capsys):
    from fope.cli import main

    config = write_config(tmp_path, tiny_corpus)
    new = tmp_path / "new"
    for bad in ("0", "-1"):
        assert main(["train", "--config", config, "--out", str(new), "--max-steps", bad, "--no-progress"]) == 2
        assert f"train.max_steps (--max-steps) must be an int >= 1; got {bad}" in one_error_line(capsys)
        assert main(["train", "--preset", "tiny/fope", "--out", str(new), "--max-steps", bad, "--no-progress"]) == 2
        assert f"got {bad}" in one_error_line(capsys)
    assert not new.exists()

    run = tmp_path / "run"
    assert main(["train", "--config", config, "--out", str(run), "--max-steps", "4", "--no-progress"]) == 0
    capsys.readouterr()
    before = files_of(run)
    resume = ["train", "--resume", "--out", str(run), "--no-progress"]
    assert main([*resume, "--max-steps", "-5"]) == 2
    assert "must be an int >= 1; got -5" in one_error_line(capsys)
    for shorter in (["--max-steps", "2"], ["--max-steps", "4"], []):
        assert main([*resume, *shorter]) == 2
        assert f"{run} is already at step 4" in one_error_line(capsys)
    assert main([*resume, "--max-steps", "8", "--until-step", "3"]) == 2
    assert "--until-step must be after the run's step 4; got 3" in one_error_line(capsys)
    assert files_of(run) == before  # config.yaml (max_steps), metrics and checkpoints as they were
    assert main([*resume, "--max-steps", "6"]) == 0 and load_run(run).step == 6
    capsys.readouterr()
    # a time slice past the end (--until-step 10 of an 8-step run) trains to the end and says so
    assert main([*resume, "--max-steps", "8", "--until-step", "10"]) == 0 and load_run(run).step == 8
    assert "note: --until-step 10 is past train.max_steps=8: training to the end" in capsys.readouterr().out


def test_a_run_is_trained_by_one_process_at_a_time(tiny_corpus, tmp_path, capsys, monkeypatch):
    import fope.train
    from fope.cli import main
    from fope.errors import FopeError

    config, run = write_config(tmp_path, tiny_corpus), tmp_path / "run"
    lock_file = ".train.lock"  # docs/training.md
    run.mkdir()
    # another process holds the lock as fope train does: flock on RUN/.train.lock, its pid inside
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\nlock = open(sys.argv[1], 'w')\n"
         "fcntl.flock(lock, fcntl.LOCK_EX)\nlock.write(f'{os.getpid()}\\n'); lock.flush()\n"
         "print('locked', flush=True); input()", str(run / lock_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["train", "--config", config, "--out", str(run), "--max-steps", "2", "--no-progress"]) == 2
        assert f"{run} is being trained by another process (pid {holder.pid})" in one_error_line(capsys)
        assert [path.name for path in run.iterdir()] == [lock_file]  # nothing written
    finally:
        holder.communicate("\n")

    held = []
    train_step, training_lock = fope.train.train_step, fope.train.training_lock

    def step(session):  # while it trains, the run is locked
        with pytest.raises(FopeError, match="being trained by another process"), training_lock(run):
            pass
        held.append((run / lock_file).read_text())
        return train_step(session)

    monkeypatch.setattr(fope.train, "train_step", step)
    assert main(["train", "--config", config, "--out", str(run), "--max-steps", "2", "--no-progress"]) == 0
    assert held == [f"{os.getpid()}\n"] * 2
    assert not (run / lock_file).exists() and load_run(run).step == 2


def test_resume_keeps_the_runs_tokenizer_and_data(tmp_path, capsys):
    from fope.cli import main
    from tests.data.fakes import text_corpus

    corpus = text_corpus(tmp_path / "corpus", {"plays": 12, "verse": 8})
    run = tmp_path / "run"
    train(config_for(corpus, max_steps=4), run, progress=False)
    tokenizer, recorded = (run / "tokenizer.json").read_bytes(), json.loads((run / "data.json").read_text())
    for document in corpus.rglob("*.txt"):  # the source changes: prepared again, it gives another tokenizer
        document.write_text(document.read_text().upper())

    messages = []
    train(config_for(corpus, max_steps=6), run, resume=True, progress=False, log=messages.append)
    assert (run / "tokenizer.json").read_bytes() == tokenizer
    assert json.loads((run / "data.json").read_text()) == recorded
    assert any("it resumes on the data it was trained on" in message for message in messages), messages
    assert recorded["manifest"]  # the token files' checksums

    with pytest.raises(ConfigError, match=r"other options \(data.vocab_size 300 then, 280 now\)"):
        train(config_for(corpus, overrides=["data.vocab_size=280"], max_steps=8), run, resume=True, progress=False)

    shutil.rmtree(recorded["root"])  # the data it was trained on is gone: the source now gives another tokenizer
    assert main(["train", "--resume", "--out", str(run), "--max-steps", "8", "--no-progress"]) == 2
    assert f"its tokenizer is not {run / 'tokenizer.json'}, which the weights were trained with" in one_error_line(
        capsys
    )
    assert (run / "tokenizer.json").read_bytes() == tokenizer and load_run(run).step == 6


def test_a_set_that_reshapes_the_model_on_resume_is_one_line_naming_it(tiny_runs, tmp_path, capsys):
    import shutil

    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["fope"], tmp_path / "fope")  # d_model 32, 2 layers, seq_len 32
    checkpoint = run_dir / "checkpoints" / "step_0000008"
    resume = ["train", "--out", str(run_dir), "--resume", "--no-progress", "--max-steps", "9"]
    assert main([*resume, "--set", "optim.lr=1e-3", "--set", "model.d_model=64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "fope train: error: --set model.d_model=64 changes the run's model shape (embed.weight [300, 32] -> [300, 64], "
    )
    assert err.endswith(
        f"tensor(s) in all), which a resume cannot: the weights in {checkpoint} keep their shapes. Resume without "
        f"it, or start a new run in another --out (--set train.init_from={run_dir} copies the weights that fit)\n"
    )
    assert err.count("\n") == 1
    # FoPE keeps more frequencies at a longer training length: its coefficients change shape
    assert main([*resume, "--set", "train.seq_len=256"]) == 2
    assert (
        "--set train.seq_len=256 changes the run's model shape (position_modules.0.cos_coef" in capsys.readouterr().err
    )
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == [
        "latest",
        "step_0000004",
        "step_0000008",
    ]
    # what leaves the shapes alone still resumes
    assert main([*resume, "--set", "optim.lr=1e-3", "--set", "model.position_options.sigma=0.2"]) == 0
    assert load_run(run_dir).step == 9


def test_training_warns_when_the_held_out_share_is_far_from_val_fraction(tmp_path):
    from tests.data import fakes

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "huge.txt").write_text(" ".join(fakes.english_like(seed).replace("\n", " ") for seed in range(40)))
    (corpus / "small.txt").write_text(fakes.english_like(999))
    messages: list[str] = []
    train(config_for(corpus, max_steps=1, checkpoint_every=1), tmp_path / "run", progress=False, log=messages.append)
    warned = [message for message in messages if message.startswith("warning: the held-out split has")]
    assert len(warned) == 1 and "among these 2 the largest, huge.txt" in warned[0]


def test_resume_with_another_preset_or_config_is_refused_not_ignored(tiny_runs, tiny_corpus, tmp_path, capsys):
    """``--resume`` goes on with the run's own config.yaml: a --preset or --config beside it would be ignored."""
    import shutil

    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["fope"], tmp_path / "fope")
    saved = (run_dir / "config.yaml").read_text()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus, "rope")))
    resume = ["train", "--out", str(run_dir), "--resume", "--no-progress", "--max-steps", "9"]
    for source, flag in ((["--preset", "tiny/rope"], "--preset"), (["--config", str(other)], "--config")):
        assert main([*resume, *source]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"with its own config.yaml: leave out {flag} (change a setting with --set)" in err
    assert (run_dir / "config.yaml").read_text() == saved
    assert latest_checkpoint(run_dir).name == "step_0000008"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"data": {"source": "/nonexistent/corpus"}}, "data: source must be 'default', a directory of .txt files"),
        ({"data": {"vocab_size": 10}}, "data: vocab_size must be an int >= 257"),
        ({"data": {"sources": ["zzz"]}}, "data: the corpus has no documents of source ['zzz']"),
        ({"model": {"vocab_size": 5}}, "model.vocab_size=5 is smaller than the tokenizer's 300 tokens"),
        ({"train": {"seq_len": 10**7}}, "fewer than seq_len + 1 = 10000001"),
    ],
)
def test_a_data_setting_that_cannot_work_is_one_line_and_writes_no_run(tiny_corpus, tmp_path, capsys, setting, message):
    """What ``fope prepare`` refuses in one line, or what would fail at the first step, is refused up front."""
    from fope.cli import main

    config = tiny_run_config(tiny_corpus, "fope")
    for section, values in setting.items():
        config[section] = {**config[section], **values}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fope ")]
    assert "Traceback" not in err and len(lines) == 1 and message in lines[0], err
    assert not run_dir.exists() or not any(run_dir.iterdir())
