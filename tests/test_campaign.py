"""Campaigns: run folder states (reuse, resume, extend, conflict), job ordering, dry-run config lines, summaries."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from fope.config import load_config, parse_yaml, save_config
from fope.errors import CampaignError
from fope.executor import LocalExecutor, RunFailed, Task, run_tasks
from fope.experiments.campaign import (
    Campaign,
    PlannedRun,
    Report,
    _training_jobs,
    assignment,
    preset_changes,
    train_and_evaluate,
)
from fope.experiments.state import run_state
from fope.presets import load_preset
from fope.report import contrast, format_contrast, text_table
from tests.conftest import tiny_run_config


@pytest.mark.parametrize(
    "value",
    [0.3, 2.0, 1e-3, 600, "yarn", True, None, {}, {"sigma": 0.3, "output_dim": "square"}, ["shakespeare"], "/a b/c"],
)
def test_assignment_parses_back_to_the_value(value):
    key, text = assignment("model.position_options", value).split("=", 1)
    assert key == "model.position_options" and parse_yaml(text) == value


def _base(tmp_path: Path, corpus: Path) -> Path:
    path = tmp_path / "base.yaml"
    if not path.is_file():
        import yaml

        path.write_text(yaml.safe_dump(tiny_run_config(corpus)))
    return path


def _run(tmp_path: Path, corpus: Path, name: str = "rope-s0") -> PlannedRun:
    return PlannedRun(name, load_config(_base(tmp_path, corpus)))


def _fake_run(run_dir: Path, config, step: int) -> None:
    save_config(config, run_dir / "config.yaml")
    if step:
        (run_dir / "checkpoints" / f"step_{step:07d}").mkdir(parents=True)
        (run_dir / "checkpoints" / "latest").write_text(f"step_{step:07d}")


def test_run_state_new_done_resume_extend_conflict(tmp_path, tiny_corpus):
    base = _base(tmp_path, tiny_corpus)
    config = load_config(base)
    assert run_state(config, tmp_path / "free").status == "new"
    _fake_run(tmp_path / "done", config, 8)
    assert run_state(config, tmp_path / "done").status == "done"
    _fake_run(tmp_path / "half", config, 4)
    assert run_state(config, tmp_path / "half").status == "resume"
    shorter = load_config(base, ["train.max_steps=4"])
    _fake_run(tmp_path / "short", shorter, 4)
    state = run_state(config, tmp_path / "short")
    assert state.status == "extend" and "trained for 4 steps; extending to 8" in state.reason
    _fake_run(tmp_path / "long", load_config(base, ["train.max_steps=16"]), 16)
    assert run_state(config, tmp_path / "long").status == "conflict"
    _fake_run(tmp_path / "other", load_config(base, ["train.seed=1", "model.position=fope"]), 8)
    state = run_state(config, tmp_path / "other")
    assert state.status == "conflict"
    assert "model.position: 'fope' there, 'rope' here" in state.reason and "train.seed: 1 there, 0 here" in state.reason


def test_a_folder_with_other_settings_stops_the_campaign_before_anything_runs(tmp_path, tiny_corpus, monkeypatch):
    run = _run(tmp_path, tiny_corpus)
    out = tmp_path / "out"
    _fake_run(out / "runs" / "rope-s0", load_config(_base(tmp_path, tiny_corpus), ["optim.lr=0.1"]), 8)

    def no_jobs(*args, **kwargs):
        raise AssertionError("nothing should start")

    monkeypatch.setattr("fope.experiments.campaign.run_tasks", no_jobs)
    with pytest.raises(CampaignError, match=r"rope-s0: optim.lr: 0.1 there, 0.003 here"):
        train_and_evaluate(Campaign((run,)), out, log=lambda _: None)


def test_progress_starts_from_the_checkpoints_not_from_what_an_interrupted_run_logged_after_them(tmp_path, tiny_corpus):
    config = load_config(_base(tmp_path, tiny_corpus))
    out = tmp_path / "out"
    for name, step in [("rope-s0", 0), ("rope-s1", 4)]:  # killed at step 6, before / after a checkpoint at step 4
        run_dir = out / "runs" / name
        _fake_run(run_dir, config, step)
        (run_dir / "metrics.jsonl").write_text("".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in (2, 4, 6)))
    campaign = Campaign((PlannedRun("rope-s0", config), PlannedRun("rope-s1", config)))
    jobs, run_dirs, progress, total = _training_jobs(campaign, out, lambda _: None, ())
    assert [job.name for job in jobs] == ["rope-s0", "rope-s1"] and total == 16
    assert progress() == 4  # rope-s0 restarts from step 0, rope-s1 from its checkpoint: the bar never goes back
    assert (run_dirs["rope-s0"] / "metrics.jsonl").read_text() == ""
    lines = (run_dirs["rope-s1"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]


def test_campaign_checks_names_dependencies_and_reports():
    config = load_preset("tiny/rope")
    with pytest.raises(CampaignError, match="unique"):
        Campaign((PlannedRun("a", config), PlannedRun("a", config)))
    with pytest.raises(CampaignError, match="starts from \\['b'\\], which are not earlier runs"):
        Campaign((PlannedRun("a", config, after=("b",)), PlannedRun("b", config)))
    with pytest.raises(CampaignError, match="unknown runs \\['c'\\]"):
        Campaign((PlannedRun("a", config),), (Report("report", "t", ("c",)),))


def test_the_dry_run_names_what_a_run_changes_in_its_preset():
    config = load_preset("tiny/fope", ["train.seed=2", "model.position_options={sigma: 0.5}"])
    assert preset_changes(PlannedRun("fope-s2", config, "tiny/fope")) == (
        "tiny/fope + model.position_options={sigma: 0.5}, train.seed=2"
    )
    assert preset_changes(PlannedRun("fope-s0", load_preset("tiny/fope"), "tiny/fope")) == "tiny/fope"


def _python(name: str, code: str, log: Path, **keywords) -> Task:
    return Task(name, ("-c", code), log, **keywords)


def test_tasks_wait_for_their_dependencies_and_a_failure_names_its_log(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    slow = f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(first)!r}).write_text('done')"
    check = f"import pathlib; pathlib.Path({str(second)!r}).write_text(pathlib.Path({str(first)!r}).read_text())"
    tasks = [
        _python("second", check, tmp_path / "second.log", after=("first",)),
        _python("first", slow, tmp_path / "first.log"),
    ]
    run_tasks(tasks, LocalExecutor(2), lambda: 0, 2, "testing", unit="run", poll=0.05)
    assert second.read_text() == "done"
    assert (tmp_path / "first.log").read_text().startswith("== first: started ")  # where and when it ran
    failing = [_python("bad", "raise SystemExit(3)", tmp_path / "bad.log")]
    with pytest.raises(RunFailed, match=f"testing of bad failed \\(exit 3\\); see {tmp_path / 'bad.log'}"):
        run_tasks(failing, LocalExecutor(1), lambda: 0, 1, "testing", unit="run", poll=0.05)
    killed = [_python("killed", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path / "k.log")]
    with pytest.raises(RunFailed, match="testing of killed failed \\(killed by SIGKILL\\)"):
        run_tasks(killed, LocalExecutor(1), lambda: 0, 1, "testing", unit="run", poll=0.05)


def test_after_a_failure_running_tasks_end_and_no_new_task_starts(tmp_path):
    def writing(name: str, delay: float) -> Task:
        code = f"import time, pathlib; time.sleep({delay}); pathlib.Path({str(tmp_path / name)!r}).write_text('x')"
        return _python(name, code, tmp_path / f"{name}.log")

    bad = _python("bad", "raise SystemExit(3)", tmp_path / "bad.log", label="evaluation of run")
    tasks = [writing("slow", 1.0), bad, writing("later", 0.0)]
    with pytest.raises(RunFailed, match=r"^evaluation of run failed \(exit 3\)"):
        run_tasks(tasks, LocalExecutor(2), lambda: 0, 3, "testing", unit="run", poll=0.05)
    assert (tmp_path / "slow").exists()  # not killed: its work is kept
    assert not (tmp_path / "later").exists()  # never started


def test_the_local_executor_hands_each_task_the_gpus_it_asks_for(tmp_path):
    seen = tmp_path / "seen"
    code = f"import os; open({str(seen)!r}, 'a').write(os.environ.get('CUDA_VISIBLE_DEVICES', '-') + ' ')"
    tasks = [_python(f"t{i}", code, tmp_path / f"t{i}.log", gpus=gpus) for i, gpus in enumerate((1, 2, 1, 0))]
    run_tasks(tasks, LocalExecutor(8, gpus=4), lambda: 0, 4, "testing", unit="run", poll=0.05)
    assert sorted(seen.read_text().split()) == ["-", "0", "1,2", "3"]  # four GPUs shared out, none twice
    with pytest.raises(CampaignError, match="t0 asks for 1 GPU\\(s\\); this machine has 0"):
        run_tasks(tasks[:1], LocalExecutor(1, gpus=0), lambda: 0, 1, "testing", unit="run", poll=0.05)


def _group(n: int, loss: float, std: float | None) -> dict:
    spread = {"n": n, "mean": loss, "std": std, "min": loss, "max": loss}
    row = {"length": 512, "multiple": 16.0, "loss": spread, "perplexity": dict(spread, mean=2.718**loss)}
    return {"n": n, "perplexity": {"by_length": [row]}}


def test_contrast_uses_the_standard_error_of_the_difference():
    groups = {"a": _group(3, 2.0, 0.1), "b": _group(3, 2.5, 0.1), "c": _group(3, 2.1, 0.1), "d": _group(1, 3.0, None)}
    far = contrast(groups, "a", "b", 512)
    assert far["log_perplexity_difference"] == pytest.approx(0.5)
    assert far["standard_error"] == pytest.approx((2 * 0.01 / 3) ** 0.5)
    assert far["verdict"] == "a is lower (6.1 standard errors, beyond 2.78)"  # Welch: 4 degrees of freedom
    assert contrast(groups, "a", "c", 512)["verdict"] == (
        "within the 95% interval (2.78 standard errors at df 4): no clear difference"
    )
    assert contrast(groups, "a", "d", 512)["verdict"] == "one run on a side: no spread, no conclusion"
    # 0.2 apart, standard error 0.0816: 2.45 standard errors, inside Welch's 2.78 at df 4 (a fixed 2 called it clear)
    groups["e"] = _group(3, 2.2, 0.1)
    assert contrast(groups, "a", "e", 512)["verdict"].startswith("within the 95% interval (2.78 standard errors")
    assert contrast(groups, "a", "b", 256) is None
    line = format_contrast(far, "effect")
    assert line.startswith("effect at 512 (16x): b 12.2 ± 0.1 vs a 7.4 ± 0.1 (n 3/3); log-ppl +0.500 ± 0.082")


def test_text_table_aligns_columns_and_fills_gaps():
    table = text_table([{"name": "rope", "ppl": "1.0"}, {"name": "fope-no-fs", "x": "2"}])
    assert table.splitlines() == ["name        ppl  x", "rope        1.0  -", "fope-no-fs    -  2"]


def test_the_executor_flags_are_checked_in_one_line(tmp_path, capsys):
    from fope.cli import main

    out = str(tmp_path / "out")
    assert main(["demo", "--quick", "--out", out, "--address", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "fope demo: error: --address is the Ray cluster's: give it with --executor ray\n"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    assert main(["demo", "--quick", "--out", out, "--executor", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained
