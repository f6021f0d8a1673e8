"""The worker dies with the process that started it, and so does what it ``exec``s (a multi-GPU run's torchrun agent):
a killed campaign or Ray worker leaves nothing behind writing into the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fope.executor import worker_arguments

SLEEPER = "import time; time.sleep(120)"

#: A parent that starts Python with the arguments given as JSON as the executor starts a task, prints the child's pid
#: and waits to be killed.
PARENT = """
import json, sys, time
from pathlib import Path
from fope.executor import Task, start_process
child = start_process(Task("t", tuple(json.loads(sys.argv[1])), Path(sys.argv[2])), "here")
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def orphan_survives(arguments: list[str], log: Path, *, started: bool = True) -> bool:
    """Start Python with ``arguments`` from a parent, kill the parent (once the child runs python's ``SLEEPER`` with
    ``started``, else at once) and say whether the child is still alive 10 s later (it is killed at the end)."""
    command = [sys.executable, "-c", PARENT, json.dumps(arguments), str(log)]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while started and Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:] != [b"-c", SLEEPER.encode(), b""]:
            assert time.monotonic() < deadline, "the child never reached its sleep"
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return alive(pid)
    finally:
        parent.kill()
        if alive(pid):
            os.kill(pid, 9)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_what_the_worker_execs_dies_with_its_parent(tmp_path):
    log = tmp_path / "task.log"
    assert orphan_survives(["-c", SLEEPER], log)  # without the worker an orphan lives on
    assert not orphan_survives(["-m", "fope.worker", "exec", "-c", SLEEPER], log)
    # Killed while the worker is still starting (before it asks to die with its parent): it ends once it asks.
    assert not orphan_survives(["-m", "fope.worker", "exec", "-c", SLEEPER], log, started=False)


def test_a_multi_gpu_run_starts_torchrun_through_the_worker():
    arguments = worker_arguments("train", "RUN_DIR", gpus=4)
    assert arguments[:3] == ("-m", "fope.worker", "exec")
    assert arguments[3:] == (
        *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"),
        *("-m", "fope.worker", "train", "RUN_DIR"),
    )
    assert worker_arguments("train", "RUN_DIR", gpus=1) == ("-m", "fope.worker", "train", "RUN_DIR")
