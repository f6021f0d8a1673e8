"""Shared fixtures: no test touches the user's cache; a tiny prepared corpus and tiny run configs. Under CI (``CI`` set
and not "false") a skipped test fails: CI installs every extra, so a skip there hides a missing dependency."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.data.fakes import text_corpus

# The kernel tests (tests/kernels) run the Triton kernel under Triton's interpreter on CPU tensors. Triton reads
# TRITON_INTERPRET when ``triton.language`` is first imported (its standard library is jitted then), and other tests
# import triton before them (torchtitan does, at collection): so the whole session runs with the interpreter on.
# Nothing else in the suite runs Triton code (torch.compile on the CPU generates C++).
os.environ.setdefault("TRITON_INTERPRET", "1")


def _fail_skips_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and os.environ.get("CI", "").lower() not in ("", "0", "false"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every extra is installed: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:  # a module-level importorskip
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point FOPE_CACHE at a temporary folder for the whole session (tests may still override it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FOPE_CACHE", str(tmp_path_factory.mktemp("fope-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of generated English-like documents in two sources (a few hundred KB)."""
    return text_corpus(tmp_path_factory.mktemp("corpus"), {"plays": 12, "verse": 8})


def tiny_run_config(corpus: Path, position: str = "rope", **train: object) -> dict:
    """A run config (plain data) small enough to train for a few steps in about a second."""
    return {
        "name": position,
        "model": {"d_model": 32, "num_layers": 2, "num_heads": 2, "mlp_ratio": 2.0, "position": position},
        "data": {"source": str(corpus), "vocab_size": 300},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "train": {
            "seq_len": 32,
            "batch_size": 8,
            "max_steps": 8,
            "log_every": 1,
            "eval_every": 4,
            "eval_batches": 1,
            "checkpoint_every": 4,
            "threads": 1,
            **train,
        },
    }


#: The runs ``tiny_runs`` trains: name -> (position, seed). Both "rope" runs are labeled rope (two seeds).
TINY_RUNS = {
    "rope": ("rope", 0),
    "rope-seed1": ("rope", 1),
    "fope": ("fope", 0),
    "alibi": ("alibi", 0),
    "nope": ("nope", 0),
}


@pytest.fixture(scope="session")
def tiny_runs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained run directories (8 steps at seq_len 32), shared by the session: copy one before writing into it."""
    from fope.config import load_config
    from fope.train import train

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, (position, seed) in TINY_RUNS.items():
        train(load_config(base=tiny_run_config(tiny_corpus, position, seed=seed)), root / name, progress=False)
        runs[name] = root / name
    return runs
