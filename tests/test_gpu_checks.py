"""scripts/gpu_checks.py, the prepared GPU run, on a CPU: it lists its steps, every step refuses in one line without
CUDA, a failing step does not stop the others, the run's exit code and summary say which failed, and a step past its
limit is killed with its process group."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_checks.py"
PYTHON_STEPS = ["hf_trainer", "torchtitan", "fsdp_train", "bench_fsdp", "bench_kernel"]


def load_gpu_checks() -> dict:
    return runpy.run_path(str(SCRIPT), run_name="gpu_checks")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_dry_run_lists_every_step_and_its_script(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_checks.py", "--dry-run"])
    load_gpu_checks()["main"]()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines[:-1]] == ["gpu", *PYTHON_STEPS]
    assert lines[-1] == "6 steps, at most 530 s in all"  # the timeouts sum past the budget: it is the bound
    for line in lines[1:-1]:
        script = line.split()[4]  # "NAME (LIMIT s): python SCRIPT ..."
        assert (ROOT / script).is_file(), line


def test_without_cuda_every_step_refuses_in_one_line_and_the_run_fails(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a CPU even where a GPU is
    done = run("--out", str(tmp_path), "--only", *PYTHON_STEPS, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert [step["step"] for step in summary["steps"]] == PYTHON_STEPS and summary["passed"] is False
    environment = summary["environment"]
    assert environment["cuda_available"] is False and environment["device"] is None
    assert environment["packages"]["torch"] == torch.__version__
    for step in summary["steps"]:
        log = (tmp_path / f"{step['step']}.log").read_text().strip()
        assert "\n" not in log and "CUDA" in log, (step["step"], log)
        assert step["exit_code"] == 2 and not step["timed_out"] and step["json"] is None
        assert step["last_line"] == log
    assert done.stdout.count("FAILED") == len(PYTHON_STEPS)


def test_a_missing_program_fails_and_a_slow_step_is_killed_at_its_limit(tmp_path):
    gpu_checks = load_gpu_checks()
    run_step, step = gpu_checks["run_step"], gpu_checks["Step"]
    missing = run_step(step("absent", 5, "no-such-program-fope --version", False), tmp_path, 5)
    assert (missing["passed"], missing["exit_code"]) == (False, 127)
    assert missing["last_line"].startswith("no-such-program-fope: not found on PATH")
    started = time.monotonic()
    slow = run_step(step("slow", 1, "sleep 30", False), tmp_path, 1)
    assert time.monotonic() - started < 10
    assert slow["timed_out"] and not slow["passed"] and slow["limit_s"] == 1
    assert slow["last_line"] == "gpu_checks: slow stopped after its 1 s limit"


def test_an_earlier_runs_results_are_replaced_only_with_force(tmp_path, monkeypatch, capsys):
    (tmp_path / "gpu_checks.json").write_text('{"passed": true}')
    monkeypatch.setattr(sys, "argv", ["gpu_checks.py", "--out", str(tmp_path), "--only", "gpu"])
    with pytest.raises(SystemExit) as stopped:
        load_gpu_checks()["main"]()
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"gpu_checks: {tmp_path} holds an earlier run's results (gpu_checks.json); pass --force to replace them, "
        "or give another --out\n"
    )
    assert (tmp_path / "gpu_checks.json").read_text() == '{"passed": true}' and not (tmp_path / "gpu.log").exists()
    json_steps = [step for step in load_gpu_checks()["STEPS"] if "--json" in step.command]
    assert [step.name for step in json_steps] == PYTHON_STEPS
    for step in json_steps:  # their --json is in the run's own folder, checked above: a rerun replaces it
        assert step.command.endswith("--force"), step.command


def test_no_output_folder_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv("OUT", raising=False)
    monkeypatch.setattr(sys, "argv", ["gpu_checks.py", "--only", "gpu"])
    with pytest.raises(SystemExit) as stopped:
        load_gpu_checks()["main"]()
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "gpu_checks: no output folder: pass --out DIR or set $OUT\n"
