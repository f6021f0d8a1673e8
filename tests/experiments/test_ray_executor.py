"""Campaigns on a real Ray cluster: a head and a second node, each its own ``ray start`` process group on localhost
(tests/ray_cluster.py). ``fope demo --quick`` through it gives the local executor's numbers (the golden ones of
tests/test_demo_numbers.py); a run whose process is killed mid-training is reported, and the same campaign again
resumes it from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fope.checkpoint import latest_step
from fope.config import load_config
from fope.executor import RayExecutor, RunFailed
from fope.experiments.campaign import Campaign, PlannedRun, run_campaign
from tests.conftest import tiny_run_config
from tests.ray_cluster import SRC, ray_cluster
from tests.test_demo_numbers import BASELINE, assert_same_numbers, demo_numbers

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each: two single-thread runs at once, one on each node."""
    with ray_cluster(nodes=2, cpus=1) as (address, _):
        yield address


def nodes_in_logs(logs: Path) -> set[str]:
    """The Ray nodes the tasks whose logs are in ``logs`` ran on (each log's first line says where)."""
    return {match for log in logs.glob("*.log") for match in re.findall(r"\(Ray node (\w+)\)", log.read_text())}


def test_the_quick_demo_on_a_ray_cluster_gives_the_local_executors_numbers(cluster, tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(SRC)}
    # two of the demo's three arms, one run per node: the golden numbers of those two (a third would train alone)
    command = [sys.executable, "-m", "fope", "demo", "--quick", "--out", str(out), "--encodings", "rope,fope"]
    command += ["--executor", "ray", "--address", cluster]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "placed by Ray on 2 node(s)" in done.stdout
    expected, actual = json.loads(BASELINE.read_text()), demo_numbers(out)
    expected = {name: numbers for name, numbers in expected.items() if not name.startswith("alibi")}
    assert sorted(actual) == sorted(expected) == ["fope-demo-s0", "rope-demo-s0"]
    for name in expected:
        for part in ("train", "perplexity", "passkey"):
            assert_same_numbers(actual[name][part], expected[name][part], f"{name} {part}")
    assert len(nodes_in_logs(out / "logs")) == 2  # both nodes trained


def _kill_training_at(run_dir: Path, step: int, killed: list[int]) -> None:
    """Once ``run_dir`` has a checkpoint at ``step`` or later, SIGKILL the worker process that trains it."""
    deadline = time.monotonic() + 300
    while latest_step(run_dir) < step and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in Path("/proc").iterdir():
        try:
            arguments = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fope.worker" in arguments and str(run_dir).encode() in arguments:
            os.kill(int(proc.name), signal.SIGKILL)
            killed.append(int(proc.name))


def test_a_killed_run_is_reported_and_the_same_campaign_resumes_it_from_its_checkpoint(cluster, tmp_path, tiny_corpus):
    configs = {
        position: tiny_run_config(tiny_corpus, position, max_steps=240, checkpoint_every=20)
        for position in ("rope", "alibi")
    }
    runs = tuple(PlannedRun(f"{position}-s0", load_config(base=config)) for position, config in configs.items())
    campaign, out = Campaign(runs), tmp_path / "out"
    victim = out / "runs" / "rope-s0"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_training_at, args=(victim, 20, killed))
    killer.start()
    executor = RayExecutor(cluster)
    try:
        with pytest.raises(RunFailed, match=rf"training of rope-s0 failed \(killed by SIGKILL\); see {out}/logs/rope"):
            run_campaign(campaign, out, log=lambda _: None, executor=executor)
        killer.join()
        assert killed and 20 <= latest_step(victim) < 240
        assert latest_step(out / "runs" / "alibi-s0") == 240  # the other run ended: its work is kept
        run_campaign(campaign, out, log=lambda _: None, executor=executor)
    finally:
        executor.close()
    assert latest_step(victim) == 240
    log = (out / "logs" / "rope-s0.train.log").read_text()
    resumed = re.findall(r"resuming \S+ from step (\d+)", log)
    assert len(resumed) == 1 and int(resumed[0]) >= 20  # the second start continued from its checkpoint
    assert (out / "logs" / "alibi-s0.train.log").read_text().count("== alibi-s0: started") == 1  # not retrained
    steps = [json.loads(line)["step"] for line in (victim / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 240  # what was logged after the checkpoint was dropped
