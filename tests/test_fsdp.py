"""``train.parallel: fsdp``: FSDP2 over gloo processes on the CPU, sharded checkpoints, and resuming across kinds and
world sizes. Two ``torchrun`` launches of 2 ranks; the rest in one process (a process group of one rank)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from fope.checkpoint import CheckpointError, clean_stale_temporaries, latest_checkpoint, load_model_weights
from fope.cli import main
from fope.config import ConfigError, RunConfig, from_dict, load_config
from fope.model import ModelConfig, TransformerLM
from fope.runs import load_run
from fope.train import iterate_losses, train
from tests.conftest import tiny_run_config

pytestmark = pytest.mark.fsdp

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def val_losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {record["step"]: record["val_loss"] for record in records if "val_loss" in record}


#: What ``fsdp_ranks.py`` writes of the coefficients, per kind and rank.
WRITTEN = ("drawn", "live", "alone")


def small_fope(learnable: bool = False, shared: bool = False) -> ModelConfig:
    """The model ``fsdp_ranks.py`` and the killed save build (FoPE, 2 layers)."""
    options = {"learnable": learnable}
    return ModelConfig(
        vocab_size=64,
        d_model=32,
        num_layers=2,
        num_heads=2,
        position="fope",
        train_length=32,
        position_options=options,
        share_position=shared,
    )


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, **tolerance: float) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        if tolerance:
            torch.testing.assert_close(x, y, msg=name, **tolerance)
        else:
            assert torch.equal(x, y), name


@pytest.fixture
def one_rank(tmp_path):
    """A gloo process group of one rank in this process (what ``fsdp`` needs besides torchrun), removed after."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


# ------------------------------------------------------------------ 2 ranks: the same run as 1 process, 2 -> 1 -> 2


@pytest.mark.slow
def test_two_ranks_train_as_one_process_and_resume_on_one_then_two(tiny_corpus, tmp_path):
    """fsdp on 2 ranks to step 4, resumed by 1 process (ddp) to 8, then by 2 ranks (fsdp) to 12, against one
    uninterrupted 1-process run, with 2 micro-batches per step (the first without gradient sync): losses, validation
    losses and weights agree to 1e-4 (gradient sums run in another order). The same launch checks FoPE's
    coefficients on every rank (learnable ones train as in 1 process) and a batch 2 ranks cannot split."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(tiny_run_config(tiny_corpus, "fope", max_steps=12, eval_every=4, grad_accum=2))
    )
    run_dir, out = tmp_path / "fsdp", tmp_path / "ranks"
    out.mkdir()
    command = [*TORCHRUN, str(ROOT / "tests" / "fsdp_ranks.py"), str(config_path), str(run_dir), str(out)]
    ranks = subprocess.Popen(command, env=ENV, cwd=ROOT)
    reference = tmp_path / "one"
    train(load_config(config_path), reference, progress=False)  # meanwhile
    assert ranks.wait() == 0
    checkpoints = sorted(run_dir.glob("checkpoints/step_*"))
    metas = [json.loads((path / "meta.json").read_text()) for path in checkpoints]
    # step 8 by 1 process: today's checkpoint; step 12 by 2 ranks: sharded
    assert [(meta["step"], meta.get("format"), meta.get("world_size")) for meta in metas] == [
        (8, None, None),
        (12, "sharded", 2),
    ]
    assert (checkpoints[0] / "model.safetensors").is_file() and not (checkpoints[1] / "model.safetensors").exists()
    shards = {"model/.metadata", "model/__0_0.distcp", "model/__1_0.distcp", "optimizer/__1_0.distcp"}
    assert shards <= set(metas[1]["files"])

    one, split = dict(iterate_losses(reference)), dict(iterate_losses(run_dir))
    assert sorted(one) == sorted(split) == list(range(1, 13))
    for step in one:
        assert split[step] == pytest.approx(one[step], rel=1e-4), step
    one_val, split_val = val_losses(reference), val_losses(run_dir)
    assert sorted(one_val) == sorted(split_val) == [4, 8, 12]
    for step in one_val:
        assert split_val[step] == pytest.approx(one_val[step], rel=1e-4), step
    fsdp_run, ddp_run = load_run(run_dir), load_run(reference)  # what eval, passkey, export and campaigns load
    assert fsdp_run.step == 12
    assert_same_weights(fsdp_run.model, ddp_run.model, atol=1e-4, rtol=1e-3)

    # the commands read the sharded checkpoint as they read model.safetensors
    for run in (run_dir, reference):
        assert main(["eval", str(run), "--lengths", "32", "--max-spans", "2", "--no-progress"]) == 0
        assert main(["passkey", str(run), "--lengths", "128", "--trials", "2", "--no-progress"]) == 0
    fsdp_eval, ddp_eval = (json.loads((run / "eval" / "perplexity.json").read_text()) for run in (run_dir, reference))
    assert fsdp_eval["results"][0]["loss"] == pytest.approx(ddp_eval["results"][0]["loss"], rel=1e-4)
    assert main(["export", str(run_dir), str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "config.json").is_file()

    # every rank holds rank 0's coefficients (it drew others), and the checkpoint holds them
    assert [(out / f"odd-{rank}.txt").read_text() for rank in (0, 1)] == [
        "train.batch_size=9 must be a multiple of world_size x grad_accum = 2 x 1"
    ] * 2
    for kind in ("frozen", "learnable", "shared"):
        drawn, live, alone = (
            [load_file(out / f"{what}-{kind}-{rank}.safetensors") for rank in (0, 1)] for what in WRITTEN
        )
        saved = TransformerLM(small_fope(learnable=kind != "frozen", shared=kind == "shared"))
        load_model_weights(saved, latest_checkpoint(out / f"coef-{kind}"))
        assert len(live[0]) == (2 if kind == "shared" else 4)  # cos_coef and sin_coef of each layer, or of one set
        for name, tensor in live[0].items():
            assert not torch.equal(drawn[0][name], drawn[1][name]), name  # the ranks drew different ones
            assert torch.equal(live[1][name], tensor), name
            assert torch.equal(saved.state_dict()[name], tensor), name
            assert tensor.dtype == torch.float32
            # frozen: rank 0's draw, kept; learnable: rank 0's draw, trained as 1 process trains it
            assert torch.equal(drawn[0][name], tensor) == (kind == "frozen"), name
            torch.testing.assert_close(tensor, alone[0][name], rtol=0, atol=1e-6, msg=name)


# ------------------------------------------------------------------ 1 rank, in this process


def fsdp_config(corpus: Path, *overrides: str, **train_options: object):
    base = tiny_run_config(corpus, "fope", **train_options)
    return load_config(base=base, overrides=["train.parallel=fsdp", *overrides])


def test_fsdp_resume_is_exact_and_refuses_another_model(tiny_corpus, tmp_path, one_rank):
    """On one rank a sharded run resumed from its checkpoint (with activation checkpointing on) gives the losses and
    weights of the uninterrupted run bit for bit; a run with another model cannot resume it."""
    train(fsdp_config(tiny_corpus), tmp_path / "full", progress=False)
    train(fsdp_config(tiny_corpus), tmp_path / "split", until_step=4, progress=False)
    assert json.loads((latest_checkpoint(tmp_path / "split") / "meta.json").read_text())["format"] == "sharded"
    train(
        fsdp_config(tiny_corpus, "train.activation_checkpointing=true"), tmp_path / "split", resume=True, progress=False
    )
    full, split = dict(iterate_losses(tmp_path / "full")), dict(iterate_losses(tmp_path / "split"))
    assert sorted(full) == list(range(1, 9)) and split == full
    assert val_losses(tmp_path / "split") == val_losses(tmp_path / "full")
    assert_same_weights(load_run(tmp_path / "full").model, load_run(tmp_path / "split").model)

    refused = r"step_0000008 holds another model: embed.weight is \[300, 32\] there and \[300, 64\] here; 18 more"
    with pytest.raises(CheckpointError, match=refused):
        train(
            fsdp_config(tiny_corpus, "model.d_model=64", max_steps=12), tmp_path / "split", resume=True, progress=False
        )
    refused = r"holds another model: it has layers.1.attention.out_proj.weight, .* and 5 more that the model lacks"
    with pytest.raises(CheckpointError, match=refused):
        train(
            fsdp_config(tiny_corpus, "model.num_layers=1", max_steps=12),
            tmp_path / "split",
            resume=True,
            progress=False,
        )


def test_fsdp_needs_torchrun_and_fope_model(tiny_corpus, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"train.parallel=fsdp shards the model across the processes of torchrun"):
        train(fsdp_config(tiny_corpus), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_run_config(tiny_corpus)))
    command = ["train", "--config", str(config_path), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*command, "--set", "train.parallel=fsdp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not started by torchrun" in err and "train.parallel=ddp" in err
    with pytest.raises(ConfigError, match=r"train.parallel applies to fope's own model"):
        from_dict(RunConfig, {"transformers": {"path": "llama"}, "train": {"parallel": "fsdp"}})
    with pytest.raises(ConfigError, match=r"train.parallel must be one of \['ddp', 'fsdp'\]; got 'zero3'"):
        from_dict(
            RunConfig, {"model": {"d_model": 32, "num_layers": 1, "num_heads": 2}, "train": {"parallel": "zero3"}}
        )


# ------------------------------------------------------------------ a save killed at its staging step


KILLED_SAVE = """
import os, signal, sys
import torch, torch.distributed as dist
import fope.fsdp
from fope.fsdp import save_sharded_checkpoint, shard_model
from fope.model import ModelConfig, TransformerLM

run_dir = sys.argv[1]
dist.init_process_group("gloo", init_method=f"file://{run_dir}.rendezvous", rank=0, world_size=1)
model = TransformerLM(ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=2, position="fope",
                                  train_length=32))
shard_model(model, bf16=False)
optimizer = torch.optim.AdamW(model.parameters())
state = {"scheduler": {}, "rng": {"torch": torch.get_rng_state()}, "tokens": 0}
save_sharded_checkpoint(run_dir, 1, model, optimizer, state, {})
with torch.no_grad():
    model.embed.weight.add_(1.0)  # step 2's weights differ
fope.fsdp.publish_directory = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
save_sharded_checkpoint(run_dir, 2, model, optimizer, state, {})
"""


def test_a_save_killed_at_its_staging_step_leaves_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run_dir)], env=ENV, cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    root = run_dir / "checkpoints"
    staged = [entry for entry in root.iterdir() if entry.name.startswith(".step_0000002.tmp-")]
    assert len(staged) == 1 and (staged[0] / "model" / ".metadata").is_file()  # the shards were written, not published
    assert latest_checkpoint(run_dir).name == "step_0000001" and not (root / "step_0000002").exists()
    model = TransformerLM(small_fope())
    staged_model = TransformerLM(model.config)
    load_model_weights(model, latest_checkpoint(run_dir))
    load_model_weights(staged_model, staged[0])
    assert torch.equal(staged_model.embed.weight, model.embed.weight + 1.0)  # step 1 is what latest loads
    assert clean_stale_temporaries(root) == staged  # its writer is dead: the next save or resume removes it


def test_a_checkpoint_index_cannot_run_code(tmp_path):
    """DCP's index is a pickle: fope reads it with an allow-list, so a planted one is an error, and runs nothing."""
    checkpoint = tmp_path / "step_0000001"
    (checkpoint / "model").mkdir(parents=True)
    marker = tmp_path / "ran"
    (checkpoint / "model" / ".metadata").write_bytes(pickle.dumps(Planted(str(marker))))
    model = TransformerLM(ModelConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=2))
    with pytest.raises(CheckpointError, match=r"is not a checkpoint index: posix\.system is not part of"):
        load_model_weights(model, checkpoint)
    assert not marker.exists()


class Planted:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)
