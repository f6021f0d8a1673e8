"""What a run folder holds compared with the run a campaign wants there: new, done, resume, extend or conflict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from fope.config import RunConfig, load_config, to_dict

#: Config keys that follow the run length: a run whose config differs only in these can be extended.
LENGTH_KEYS = frozenset({"train.max_steps", "train.checkpoint_every", "train.eval_every"})
#: Keys that change when a run is saved, not what it computes: a stored result does not mismatch on them.
BOOKKEEPING_KEYS = frozenset({"train.checkpoint_every"})


class RunState(NamedTuple):
    """``status``: new, done, resume, extend (more steps) or conflict; the latest checkpoint's step; why."""

    status: str
    completed_step: int = 0
    reason: str = ""


def completed_step(run_dir: Path) -> int:
    """The step of the run's latest checkpoint (0 without one)."""
    pointer = run_dir / "checkpoints" / "latest"
    if pointer.is_file():
        return int(pointer.read_text().strip().removeprefix("step_"))
    return 0


def logged_step(run_dir: Path) -> int:
    """The step of the last line of the run's ``metrics.jsonl`` (0 without one): training progress."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested sections (``train.seed``); ``*options`` mappings stay whole values."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and not key.endswith("options"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(there: Mapping[str, Any], here: Mapping[str, Any], ignore: frozenset[str] = frozenset()) -> list[str]:
    """``key: A there, B here`` for every dotted key whose value differs between two config mappings."""
    there, here = flatten(there), flatten(here)
    return [
        f"{key}: {there.get(key)!r} there, {here.get(key)!r} here"
        for key in sorted(set(there) | set(here))
        if key not in ignore and there.get(key) != here.get(key)
    ]


def config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """``key: A there, B here`` for every config value that differs, other than the run length."""
    return differences(to_dict(saved), to_dict(wanted), LENGTH_KEYS)


def run_state(config: RunConfig, run_dir: Path) -> RunState:
    """Whether ``run_dir`` is free, holds this run finished, unfinished or shorter, or holds another run."""
    steps = config.train.max_steps
    if not (run_dir / "config.yaml").is_file():
        return RunState("new")
    saved = load_config(run_dir / "config.yaml")
    done = completed_step(run_dir)
    found = config_differences(saved, config)
    if found:
        return RunState("conflict", done, "; ".join(found))
    if saved.train.max_steps == steps:
        return RunState("done" if done >= steps else "resume", done)
    if saved.train.max_steps < steps:
        return RunState("extend", done, f"trained for {saved.train.max_steps} steps; extending to {steps}")
    return RunState("conflict", done, f"trained for {saved.train.max_steps} steps, {steps} asked")
