"""The demo is a campaign: its run names, configs, worker commands and report are the ones `fope demo` always had."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fope.config import to_dict
from fope.executor import worker_command
from fope.experiments import plan_experiment
from fope.experiments.campaign import evaluation_command
from fope.experiments.demo import STEPS
from fope.presets import load_preset


def test_demo_campaign_keeps_the_demo_layout_and_commands():
    campaign = plan_experiment("demo", "demo-output", seeds=[0, 1]).campaign
    assert [run.name for run in campaign.runs] == [
        f"{encoding}-demo-s{seed}" for seed in (0, 1) for encoding in ("rope", "fope", "alibi")
    ]
    run = campaign.runs[0]
    overrides = [
        "name=rope-demo",
        f"train.max_steps={STEPS}",
        "train.seed=0",
        "train.threads=1",
        "train.checkpoint_every=500",  # common.CHECKPOINT_EVERY: a stopped demo resumes from step 500
        f"train.eval_every={STEPS}",
        "data.passkey_fraction=0.75",
    ]
    assert run.preset == "tiny/rope" and to_dict(run.config) == to_dict(load_preset("tiny/rope", overrides))
    fope = campaign.runs[1].config
    assert fope.model.position_options == {"sigma": 0.1} and fope.data.passkey_fraction == 0.75
    run_dir = Path("demo-output/runs/rope-demo-s0")
    worker = [sys.executable, "-m", "fope.worker"]
    assert worker_command("train", str(run_dir)) == [*worker, "train", str(run_dir)]
    command = evaluation_command(campaign, "rope-demo-s0", run_dir)
    assert command[:-1] == [*worker, "evaluate", str(run_dir)]
    assert json.loads(command[-1]) == {"perplexity": [None], "max_spans": 24, "trials": 100}
    (report,) = campaign.reports
    assert report.folder == "report" and report.attention and len(report.runs) == 6
    assert [pair[:2] for pair in report.contrasts] == [("rope-demo", "fope-demo"), ("fope-demo", "alibi-demo")]


def test_quick_demo_and_unknown_encodings():
    plan = plan_experiment("demo", "out", quick=True)
    quick = plan.campaign
    assert [run.name for run in quick.runs] == ["rope-demo-s0", "fope-demo-s0", "alibi-demo-s0"]
    assert quick.max_spans == 4 and quick.passkey_trials == 4 and quick.runs[0].config.train.max_steps == 60
    assert plan.root == Path("out") and plan.command == "fope demo"
    with pytest.raises(ValueError, match="no tiny preset for \\['sine'\\]"):
        plan_experiment("demo", "out", encodings=["rope", "sine"])
    with pytest.raises(ValueError, match=r"experiment 'demo' has no option \['scale'\]"):
        plan_experiment("demo", "out", scale="paper")
