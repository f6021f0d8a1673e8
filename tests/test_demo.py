"""The demo is a campaign: its run names, overrides, commands and report are the ones `fope demo` always had."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fope.campaign import evaluation_commands, train_command
from fope.demo import CONFIG_DIR, DemoPlan


def test_demo_campaign_keeps_the_demo_layout_and_commands():
    campaign = DemoPlan.make(seeds=[0, 1]).campaign()
    assert [spec.name for spec in campaign.specs] == [
        f"{encoding}-s{seed}" for seed in (0, 1) for encoding in ("rope", "fope", "alibi", "nope")
    ]
    spec = campaign.specs[0]
    overrides = [
        "train.max_steps=600",
        "train.seed=0",
        "train.threads=1",
        "train.checkpoint_every=600",
        "train.eval_every=600",
        "data.passkey_fraction=0.25",
    ]
    assert spec.config == CONFIG_DIR / "rope.yaml" and list(spec.overrides) == overrides
    run_dir = Path("demo-output/runs/rope-s0")
    command = [sys.executable, "-m", "fope", "train", "--config", str(spec.config), "--out", str(run_dir)]
    assert train_command(campaign, spec, run_dir) == [
        *command,
        "--no-progress",
        *(f for o in overrides for f in ("--set", o)),
    ]
    assert train_command(campaign, spec, run_dir, resume=True)[-1] == "--resume"
    fope = [sys.executable, "-m", "fope"]
    assert evaluation_commands(campaign, "rope-s0", run_dir) == [
        [*fope, "eval", str(run_dir), "--max-spans", "24", "--no-progress"],
        [*fope, "passkey", str(run_dir), "--trials", "20", "--no-progress"],
    ]
    (report,) = campaign.reports
    assert report.folder == "report" and report.attention and len(report.runs) == 8


def test_quick_demo_and_unknown_encodings():
    quick = DemoPlan.make(quick=True).campaign()
    assert [spec.name for spec in quick.specs] == ["rope-s0", "fope-s0", "alibi-s0", "nope-s0"]
    assert quick.max_spans == 4 and quick.passkey_trials == 4 and "train.max_steps=60" in quick.specs[0].overrides
    with pytest.raises(ValueError, match="no tiny preset for \\['sine'\\]"):
        DemoPlan.make(encodings=["rope", "sine"])
