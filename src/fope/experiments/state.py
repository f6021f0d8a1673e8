"""What a run folder holds compared with the run a campaign wants there: new, done, resume, extend or conflict."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from fope.checkpoint import latest_step
from fope.config import RunConfig, differences, load_config, to_dict

#: Config keys that follow the run length: a run whose config differs only in these can be extended.
LENGTH_KEYS = frozenset({"train.max_steps", "train.checkpoint_every", "train.eval_every"})
#: Keys that change when a run is saved, not what it computes: a stored result does not mismatch on them.
BOOKKEEPING_KEYS = frozenset({"train.checkpoint_every"})


class RunState(NamedTuple):
    """``status``: new, done, resume, extend (more steps) or conflict; the latest checkpoint's step; why."""

    status: str
    completed_step: int = 0
    reason: str = ""


def config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """``key: A there, B here`` for every config value that differs, other than the run length."""
    return differences(to_dict(saved), to_dict(wanted), LENGTH_KEYS)


def run_state(config: RunConfig, run_dir: Path) -> RunState:
    """Whether ``run_dir`` is free, holds this run finished, unfinished or shorter, or holds another run."""
    steps = config.train.max_steps
    if not (run_dir / "config.yaml").is_file():
        return RunState("new")
    saved = load_config(run_dir / "config.yaml")
    done = latest_step(run_dir)
    found = config_differences(saved, config)
    if found:
        return RunState("conflict", done, "; ".join(found))
    if saved.train.max_steps == steps:
        return RunState("done" if done >= steps else "resume", done)
    if saved.train.max_steps < steps:
        return RunState("extend", done, f"trained for {saved.train.max_steps} steps; extending to {steps}")
    return RunState("conflict", done, f"trained for {saved.train.max_steps} steps, {steps} asked")
