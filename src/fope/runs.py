"""Run directories: loading a trained model back with everything needed to evaluate it.

A run directory holds::

    config.yaml                  the resolved config the run was trained with (``fope.config``)
    tokenizer.json               the tokenizer (evaluation needs nothing else from the data)
    data.json                    where the prepared data lives (root, checksums of its files)
    metrics.jsonl                one JSON record per log / evaluation step
    checkpoints/step_000200/     model.safetensors, training_state.pt, meta.json (with checksums); for a run that
                                 trains a transformers model, a save_pretrained folder (config.json, weights,
                                 tokenizer) plus training_state.pt and meta.json (``fope.checkpoint``)
    checkpoints/latest           the name of the newest complete checkpoint
    eval/                        results written by ``fope eval`` / ``fope passkey`` / ``fope analyze``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fope.build import load_checkpoint_model
from fope.checkpoint import CheckpointError, find_checkpoint, read_checkpoint_meta
from fope.config import ConfigError, RunConfig, from_dict, load_yaml
from fope.data.store import TokenStore
from fope.data.tokenizer import Tokenizer
from fope.device import resolve_device
from fope.model import TransformerLM

if TYPE_CHECKING:
    from fope.integrations.hf_lm import HFCausalLM

__all__ = ["Run", "load_run", "read_run_config"]


@dataclass
class Run:
    """A trained model with everything needed to evaluate it."""

    path: Path
    config: RunConfig
    model: TransformerLM | HFCausalLM
    tokenizer: Tokenizer
    step: int
    checkpoint: Path

    @property
    def label(self) -> str:
        """A short name for tables and legends: the config's ``name`` or the directory name."""
        return self.config.name or self.path.name

    @property
    def train_length(self) -> int:
        return self.model.config.train_length

    def data_root(self) -> Path:
        """The prepared-data directory the run was trained on."""
        return Path(_data_info(self.path)["root"])

    def val_store(self) -> TokenStore:
        """The held-out split of the run's prepared data."""
        root = self.data_root()
        if not root.is_dir():
            raise FileNotFoundError(
                f"the run's prepared data {root} is gone; rebuild it with `fope prepare` using the run's data config"
            )
        return TokenStore(root / "val")


def load_run(run_dir: str | Path, step: int | None = None, device: str | torch.device = "cpu") -> Run:
    """Load a run directory's config, tokenizer and checkpoint (default: latest) into an eval-mode model on ``device``
    (``fope.device.resolve_device``: one that is not there is a ``ConfigError``)."""
    device = resolve_device(device)
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    config = read_run_config(path)
    directory = find_checkpoint(path, step)
    meta = read_checkpoint_meta(directory)
    model = load_checkpoint_model(config, directory, meta)
    model.to(device).eval()
    data_info = _data_info(path) if (path / "data.json").is_file() else {}
    tokenizer = Tokenizer.load(path / "tokenizer.json", eos_token=data_info.get("eos_token"))  # names a bad file
    return Run(path, config, model, tokenizer, meta["step"], directory)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run was trained with (``RUN_DIR/config.yaml``); an error names the file."""
    path = Path(run_dir) / "config.yaml"
    try:
        return from_dict(RunConfig, load_yaml(path))
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from error


def _data_info(run_dir: Path) -> dict[str, Any]:
    """``data.json``: the prepared data's root, manifest checksums and end-of-document token."""
    path = run_dir / "data.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(info, dict) or not isinstance(info.get("root"), str):
        raise CheckpointError(f"{path} is corrupt: it must be a mapping with the prepared data's root")
    return info
