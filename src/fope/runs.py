"""Run directories: the resolved config, checkpoints written atomically, and loading a trained model back.

A run directory holds::

    config.yaml                  the resolved config the run was trained with
    tokenizer.json               the tokenizer (evaluation needs nothing else from the data)
    data.json                    where the prepared data lives (root, manifest checksum)
    metrics.jsonl                one JSON record per log / evaluation step
    checkpoints/step_000200/     model.safetensors, training_state.pt, meta.json (with checksums); for a run that
                                 trains a transformers model, a save_pretrained folder (config.json, weights,
                                 tokenizer) plus training_state.pt and meta.json
    checkpoints/latest           the name of the newest complete checkpoint
    eval/                        results written by ``fope eval`` / ``fope passkey`` / ``fope analyze``

A checkpoint directory is written under a temporary name and renamed into place only when every file is on disk,
and ``latest`` is replaced atomically after that: a killed run never leaves a half-written checkpoint that looks
valid. Loading checks every file against the checksums in ``meta.json``. Nothing is unpickled: weights are
safetensors and the training state is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from safetensors.torch import load_model, save_model

from fope.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from fope.data.corpus import check_sources
from fope.data.store import TokenStore
from fope.data.tokenizer import Tokenizer
from fope.errors import FopeError
from fope.integrations.hf_lm import (
    HFCausalLM,
    check_model_directory,
    check_position_options,
    load_checkpoint,
)
from fope.model import ModelConfig, TransformerLM

CHECKPOINTS = "checkpoints"
LATEST = "latest"


@dataclass
class DataConfig:
    """Where the training text comes from and how it is tokenized (see ``fope.data.prepare_data``).

    ``sources`` keeps only the documents of those sources (e.g. ``[shakespeare]`` of the default corpus); None: all.
    """

    source: str = "default"
    vocab_size: int = 1024
    val_fraction: float = 0.1
    split_seed: int = 0
    tokenizer: str | None = None
    text_field: str = "text"
    root: str | None = None
    passkey_fraction: float = 0.0
    sources: list[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.passkey_fraction < 1.0:
            raise ValueError(f"passkey_fraction must be in [0, 1); got {self.passkey_fraction}")
        if self.sources is not None:
            check_sources(self.sources)


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0; got {self.warmup_steps}")


@dataclass
class TrainConfig:
    """Run length, batch shape, logging and checkpointing, device and precision."""

    seq_len: int = 128
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 1000
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    eval_batches: int = 4
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    threads: int | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "seq_len",
            "batch_size",
            "grad_accum",
            "max_steps",
            "log_every",
            "eval_every",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of grad_accum={self.grad_accum}")
        if self.eval_batches < 0 or self.seed < 0:
            raise ValueError("eval_batches and seed must be >= 0")


@dataclass
class TransformersConfig:
    """Continued pre-training of a local ``transformers`` causal LM (``fope.integrations.hf_lm``).

    ``position``: ``fope`` (or the ablations ``fope-no-fs`` / ``fope-no-cf``) converts the model's RoPE with fresh
    coefficients, ``position_options`` being ``convert``'s (``sigma``, ``share_layers``, ``seed`` defaulting to
    ``train.seed``, ...); ``yarn`` turns it into YaRN (``factor``, ``original_max_position``, ``beta_fast``,
    ``beta_slow``, ``attention_factor``, ``truncate``); ``keep`` trains the model's own encoding. ``train_length``
    (default ``train.seq_len``) is the context the new encoding is made for. ``dtype`` is the dtype the weights are
    loaded and trained in (float32 weights with ``train.precision`` bf16 autocast is mixed precision).
    """

    path: str
    position: Literal["fope", "fope-no-fs", "fope-no-cf", "yarn", "keep"] = "fope"
    position_options: dict[str, Any] = field(default_factory=dict)
    train_length: int | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check_position_options(self.position, self.position_options)
        if self.train_length is not None and self.train_length < 1:
            raise ValueError(f"train_length must be >= 1; got {self.train_length}")


@dataclass
class RunConfig:
    """A whole training run. ``model`` holds ``ModelConfig`` fields; ``vocab_size`` defaults to the tokenizer's and
    ``train_length`` to ``train.seq_len``; ``position_seed`` defaults to ``train.seed``.

    ``transformers`` instead trains a local transformers model (then ``model`` stays empty); the data is tokenized
    with that model's tokenizer unless ``data.tokenizer`` names another.
    """

    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None
    transformers: TransformersConfig | None = None

    def __post_init__(self) -> None:
        if self.transformers is None:
            if not self.model:
                raise ValueError("set either model (a fope TransformerLM) or transformers (a local transformers model)")
            return
        if self.model:
            raise ValueError(
                f"model and transformers are exclusive: transformers trains the model in {self.transformers.path!r}, "
                f"so model must be empty; got model keys {sorted(self.model)}"
            )
        if self.train.init_from is not None:
            raise ValueError(
                "train.init_from starts a fope model from a run; with transformers the model starts from "
                f"transformers.path ({self.transformers.path!r}): remove train.init_from"
            )
        if self.data.tokenizer is None:
            self.data.tokenizer = self.transformers.path

    def model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The ``ModelConfig`` with the defaults above filled in; errors name the ``model.`` key."""
        values = dict(self.model)
        if values.get("vocab_size") is None:
            if vocab_size is None:
                raise ConfigError("model.vocab_size is not set and no tokenizer is known to take it from")
            values["vocab_size"] = vocab_size
        if values.get("train_length") is None:
            values["train_length"] = self.train.seq_len
        if values.get("position_seed") is None:
            values["position_seed"] = self.train.seed
        try:
            return ModelConfig.from_dict(values)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"model: {error}") from error


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None
) -> RunConfig:
    """A ``RunConfig`` from a YAML file (or ``base`` data) with ``key=value`` overrides, fully validated."""
    data = load_yaml(path) if path is not None else dict(base or {})
    data = apply_overrides(data, list(overrides))
    config = from_dict(RunConfig, data)
    if config.transformers is not None:
        try:
            check_model_directory(config.transformers.path)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    else:
        config.model_config(vocab_size=config.model.get("vocab_size") or 2**16)  # validate the model section now
    return config


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    _write_atomic(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False).encode())


# ------------------------------------------------------------------ checkpoints


class CheckpointError(FopeError):
    """A checkpoint that is missing, incomplete or corrupt."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: TransformerLM | HFCausalLM,
    training_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write ``checkpoints/step_XXXXXXX`` atomically, point ``latest`` at it, keep only the newest ``keep``.

    A ``TransformerLM`` is written to ``model.safetensors``; an ``HFCausalLM`` with ``save_pretrained`` (config.json,
    safetensors shards, tokenizer). ``meta.json`` holds the checksum of every file.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    temporary = root / f".{final.name}.tmp-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    if isinstance(model, HFCausalLM):
        model.save_pretrained(temporary)
    else:
        save_model(model, str(temporary / "model.safetensors"))
    files = sorted(path.name for path in temporary.iterdir())
    if training_state is not None:
        torch.save(training_state, temporary / "training_state.pt")
        files.append("training_state.pt")
    record = {
        "step": step,
        "time": time.time(),
        "model_config": model.config.to_dict(),
        **(meta or {}),
        "files": {name: _sha256(temporary / name) for name in files},
    }
    (temporary / "meta.json").write_text(json.dumps(record, indent=2))
    for name in [*files, "meta.json"]:
        _fsync_file(temporary / name)
    if final.exists():  # re-saving a step (after a resume): move the old one aside first
        stale = root / f".{final.name}.old-{os.getpid()}"
        os.rename(final, stale)
        os.rename(temporary, final)
        shutil.rmtree(stale)
    else:
        os.rename(temporary, final)
    _write_atomic(root / LATEST, final.name.encode())
    if keep is not None:
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            if old.name != final.name:
                shutil.rmtree(old)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or None when the run has none yet."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    directory = root / pointer.read_text().strip()
    if not directory.is_dir():
        raise CheckpointError(f"{pointer} names {directory.name}, which does not exist")
    return directory


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The checkpoint of ``step`` (default: the latest); a clear error when there is none."""
    if step is None:
        directory = latest_checkpoint(run_dir)
        if directory is None:
            raise CheckpointError(f"{run_dir} has no checkpoint yet (no {CHECKPOINTS}/{LATEST})")
        return directory
    directory = Path(run_dir) / CHECKPOINTS / checkpoint_name(step)
    if not directory.is_dir():
        available = sorted(p.name for p in (Path(run_dir) / CHECKPOINTS).glob("step_*"))
        raise CheckpointError(f"{run_dir} has no checkpoint for step {step}; available: {available}")
    return directory


def read_checkpoint_meta(directory: str | Path, verify: bool = True) -> dict[str, Any]:
    """``meta.json`` of a checkpoint, with every listed file checked against its checksum."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{directory} is not a complete checkpoint: meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{meta_path} is corrupt: {error}") from error
    if verify:
        for name, expected in meta.get("files", {}).items():
            path = directory / name
            if not path.is_file():
                raise CheckpointError(f"{directory} is incomplete: {name} is missing")
            if _sha256(path) != expected:
                raise CheckpointError(f"{path} is corrupt: its checksum does not match meta.json")
    return meta


def load_model_weights(model: TransformerLM, directory: str | Path) -> None:
    """Load ``model.safetensors`` of a checkpoint into ``model`` (strict)."""
    path = Path(directory) / "model.safetensors"
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """The optimizer / scheduler / RNG / step state of a checkpoint (``torch.load(weights_only=True)``)."""
    path = Path(directory) / "training_state.pt"
    if not path.is_file():
        raise CheckpointError(f"{directory} holds no training state (weights only); it cannot be resumed")
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ loading a run


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
        info = json.loads((self.path / "data.json").read_text())
        return Path(info["root"])

    def val_store(self) -> TokenStore:
        """The held-out split of the run's prepared data."""
        root = self.data_root()
        if not root.is_dir():
            raise FileNotFoundError(
                f"the run's prepared data {root} is gone; rebuild it with `fope prepare` using the run's data config"
            )
        return TokenStore(root / "val")


def load_run(run_dir: str | Path, step: int | None = None, device: str | torch.device = "cpu") -> Run:
    """Load a run directory's config, tokenizer and checkpoint (default: latest) into an eval-mode model."""
    path = Path(run_dir)
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    config = from_dict(RunConfig, load_yaml(path / "config.yaml"))
    directory = find_checkpoint(path, step)
    meta = read_checkpoint_meta(directory)
    model = load_checkpoint_model(config, directory, meta)
    model.to(device).eval()
    data_info = json.loads((path / "data.json").read_text()) if (path / "data.json").is_file() else {}
    tokenizer = Tokenizer.load(path / "tokenizer.json", eos_token=data_info.get("eos_token"))
    return Run(path, config, model, tokenizer, int(meta["step"]), directory)


def load_checkpoint_model(config: RunConfig, directory: Path, meta: dict[str, Any]) -> TransformerLM | HFCausalLM:
    """The model saved in a checkpoint of a run with this config (on the CPU)."""
    if config.transformers is not None:
        saved = meta["model_config"]
        return load_checkpoint(
            directory,
            train_length=saved["train_length"],
            position=saved["position"],
            dtype=config.transformers.dtype,
            attn_implementation=config.transformers.attn_implementation,
        )
    model = TransformerLM(ModelConfig.from_dict(meta["model_config"]))
    load_model_weights(model, directory)
    return model


def describe(config: RunConfig) -> dict[str, Any]:
    """The config as plain data (for reports)."""
    return dataclasses.asdict(config)
