"""A campaign's worker process: train one run from the resolved config in its folder, or evaluate it.

    python -m fope.worker train RUN_DIR
    python -m fope.worker evaluate RUN_DIR '{"perplexity": [null, "text/"], "max_spans": 24, "trials": 20}'
    python -m fope.worker exec PYTHON_ARGUMENTS...

``train`` loads ``RUN_DIR/config.yaml`` (written by the campaign: the run's whole resolved config) and calls
``fope.train.train`` on it, continuing from the latest checkpoint when there is one (from scratch otherwise). Under
``torchrun`` every rank does the same. ``evaluate`` runs perplexity on each text (``null``: the held-out split) with
``max_spans`` spans per length, then passkey retrieval with ``trials`` trials per length (``null``: none).
``exec`` becomes ``python PYTHON_ARGUMENTS...`` (the torchrun agent of a multi-GPU run) in this process.

Every one of them dies with the process that started it (``die_with_parent``; the setting survives ``exec``).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def train_run(run_dir: Path) -> dict[str, Any]:
    """Train the run in ``run_dir`` to its config's ``train.max_steps``."""
    from fope.config import load_config
    from fope.train import train

    return train(load_config(run_dir / "config.yaml"), run_dir, resume=True, progress=False)


def run_evaluations(run_dir: Path, evaluations: dict[str, Any]) -> None:
    """The evaluations ``evaluations`` names (see the module's docstring), results written to ``RUN_DIR/eval``."""
    from fope.evaluate.passkey import evaluate_run_passkey, format_passkey
    from fope.evaluate.perplexity import evaluate_run_perplexity, format_perplexity

    for data in evaluations.get("perplexity", []):
        results = evaluate_run_perplexity(run_dir, data=data, max_spans=evaluations["max_spans"], progress=False)
        print(format_perplexity(results), flush=True)
    if evaluations.get("trials") is not None:
        print(format_passkey(evaluate_run_passkey(run_dir, trials=evaluations["trials"], progress=False)), flush=True)


#: Set by the executor to its own pid when it starts a worker: a worker whose parent is already gone when it asks to
#: die with it (a campaign killed while the worker was starting up) ends at once.
PARENT_PID = "FOPE_PARENT_PID"


def die_with_parent() -> None:
    """Have the kernel end this process when the one that started it dies (Linux; elsewhere nothing): a killed
    campaign, Ray worker or torchrun leaves no training behind that would write into the run folder beside a rerun.
    The setting survives ``exec``; ``PARENT_PID`` is read once (not handed on to what this process starts)."""
    expected = os.environ.pop(PARENT_PID, None)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if expected is not None and os.getppid() != int(expected):  # it died before the line above
            os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        die_with_parent()
    if len(args) > 1 and args[0] == "exec":
        os.execv(sys.executable, [sys.executable, *args[1:]])
    if len(args) == 2 and args[0] == "train":
        train_run(Path(args[1]))
    elif len(args) == 3 and args[0] == "evaluate":
        run_evaluations(Path(args[1]), json.loads(args[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
