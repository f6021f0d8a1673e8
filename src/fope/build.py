"""What a run trains, built from its config: the prepared data and its sampler, the model, the optimizer.

The model is a fresh ``TransformerLM`` (or one initialised from ``train.init_from``), the local transformers model of
``config.transformers`` with its position encoding switched, or, when resuming, the checkpoint's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
import torch

from fope.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_model_weights,
    read_checkpoint_meta,
)
from fope.config import ConfigError, RunConfig
from fope.data.prepare import PreparedData, open_prepared, preparation_options, prepare_data
from fope.data.retrieval import retrieval_mixer
from fope.data.sampler import WindowSampler
from fope.errors import one_line
from fope.extras import require
from fope.model import ModelConfig, TransformerLM
from fope.sharded import SHARDED_MODEL, is_sharded, read_sharded_tensors

if TYPE_CHECKING:
    from fope.integrations.hf_lm import HFCausalLM

__all__ = [
    "POSITION_PARAMETER_MARKERS",
    "build_model",
    "build_optimizer",
    "build_sampler",
    "initialize_from",
    "load_checkpoint_model",
    "non_embedding_parameters",
    "planned_model",
    "prepare_run_data",
    "resume_run_data",
]

#: Parameter names of position-encoding coefficients (exempt from weight decay): TransformerLM's position modules,
#: and the FoPE modules ``convert`` puts in a transformers model (``...self_attn.fope.`` or ``...rotary_emb.fope.``).
POSITION_PARAMETER_MARKERS = ("position_modules.", ".fope.")


def planned_model(config: RunConfig) -> ModelConfig:
    """The run's ``ModelConfig`` before any data exists: the vocabulary is ``data.vocab_size`` unless set (a run of a
    transformers model has none: ``model_config``'s one-line ``ConfigError``)."""
    vocab_size = config.model.vocab_size if config.model is not None else None
    return config.model_config(vocab_size=vocab_size or config.data.vocab_size)


def non_embedding_parameters(config: RunConfig) -> int | None:
    """Parameters of the run's model without the vocabulary matrices (built on the meta device: no memory)."""
    if config.transformers is not None:
        return None
    with torch.device("meta"):
        model = TransformerLM(planned_model(config))
    return model.num_parameters(exclude_embeddings=True)


def build_optimizer(model: TransformerLM | HFCausalLM, config: RunConfig) -> torch.optim.AdamW:
    """AdamW; matrices (embeddings and projections) decay, norms and position coefficients do not."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_position = any(marker in name for marker in POSITION_PARAMETER_MARKERS)
        (decay if parameter.dim() >= 2 and not is_position else no_decay).append(parameter)
    optim = config.optim
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


def _data_options(config: RunConfig) -> dict[str, Any]:
    """``prepare_data``'s keyword arguments besides ``source`` and ``out_dir``, from ``config.data``."""
    data = config.data
    return {
        "vocab_size": data.vocab_size,
        "val_fraction": data.val_fraction,
        "seed": data.split_seed,
        "text_field": data.text_field,
        "tokenizer": data.tokenizer,
        "sources": data.sources,
    }


def prepare_run_data(config: RunConfig) -> PreparedData:
    """The prepared data named by ``config.data`` (built and cached on first use)."""
    return prepare_data(config.data.source, config.data.root, **_data_options(config))


#: The preparation options a resumed run may not change, by their config key (``prepare_data``'s manifest ``options``).
_KEPT_OPTIONS = {
    "source": "data.source",
    "vocab_size": "data.vocab_size",
    "val_fraction": "data.val_fraction",
    "seed": "data.split_seed",
    "text_field": "data.text_field",
    "tokenizer": "data.tokenizer",
    "sources": "data.sources",
}


def _without_fingerprints(value: Any) -> Any:
    """A source or tokenizer spec without the fingerprint (names, sizes, times) of its files."""
    return {k: v for k, v in value.items() if k != "fingerprint"} if isinstance(value, dict) else value


def resume_run_data(config: RunConfig, run_dir: Path, log: Callable[[str], None]) -> PreparedData:
    """The data a resumed run trains on: the one it was trained on, never data with another tokenizer.

    That is the prepared data ``RUN_DIR/data.json`` names while it opens and was prepared with the data options of
    ``config`` (its source files may have changed since: the run keeps its data, and says so); else the data
    ``config`` prepares now. ``ConfigError`` when a data option changed, or when that data's tokenizer is not the
    run's ``tokenizer.json`` (the weights' vocabulary) or its files are not the ones ``data.json`` records.
    """
    wanted = preparation_options(config.data.source, **_data_options(config))
    recorded = _recorded_data(run_dir)
    if recorded is not None:
        saved = recorded.manifest["options"]
        changed = [
            f"{key} {_without_fingerprints(saved.get(name))!r} then, {_without_fingerprints(wanted.get(name))!r} now"
            for name, key in _KEPT_OPTIONS.items()
            if _without_fingerprints(saved.get(name)) != _without_fingerprints(wanted.get(name))
        ]
        if changed:
            raise ConfigError(
                f"--resume: {run_dir} was trained on data prepared with other options ({'; '.join(changed)}); a run "
                "keeps its data and tokenizer: leave the data options as they were, or start a new run"
            )
        if any(saved.get(name) != wanted.get(name) for name in ("source", "tokenizer")):
            log(
                f"the files of data.source or data.tokenizer changed since {run_dir} started: it resumes on the data "
                f"it was trained on ({recorded.root})"
            )
        return _checked_as_recorded(recorded, run_dir, f"the data it was trained on ({recorded.root})")
    prepared = prepare_run_data(config)
    source = config.data.source
    what = f"the data prepared now from data.source {source!r} ({prepared.root}; the data it was trained on is gone)"
    return _checked_as_recorded(prepared, run_dir, what)


def _recorded_data(run_dir: Path) -> PreparedData | None:
    """The prepared data ``RUN_DIR/data.json`` names, or None when it is gone or does not open."""
    try:
        root = json.loads((run_dir / "data.json").read_text())["root"]
        return open_prepared(root)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _checked_as_recorded(prepared: PreparedData, run_dir: Path, what: str) -> PreparedData:
    """``prepared``, if its tokenizer is the run's and its files are those ``data.json`` recorded; else ConfigError."""
    path = run_dir / "tokenizer.json"
    try:
        vocabulary = tokenizers.Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
    except Exception as error:  # the library raises a bare Exception for a file that does not parse
        raise CheckpointError(f"cannot read {path}: {' '.join(str(error).split())[:300]}") from error
    reason = None
    if prepared.tokenizer.backend.get_vocab(with_added_tokens=True) != vocabulary:
        reason = f"its tokenizer is not {path}, which the weights were trained with"
    else:
        try:
            files = json.loads((run_dir / "data.json").read_text()).get("manifest")
        except (OSError, ValueError, AttributeError):
            files = None
        if files and files != prepared.manifest["files"]:
            reason = f"its token files are not those {run_dir / 'data.json'} records"
    if reason is not None:
        raise ConfigError(
            f"--resume: {run_dir} cannot continue on {what}: {reason}; restore the source the run was prepared "
            "from, or start a new run"
        )
    return prepared


def build_sampler(config: RunConfig, prepared: PreparedData) -> WindowSampler:
    """Training windows, with ``data.passkey_fraction`` of them ending with an example of one of
    ``data.retrieval_tasks`` (drawn uniformly per row; no longer than ``seq_len``)."""
    data, tokenizer = config.data, prepared.tokenizer
    mixers = []
    if data.passkey_fraction > 0:
        mixers.append(
            (data.passkey_fraction, retrieval_mixer(data.retrieval_tasks, tokenizer.encode, tokenizer.eos_id))
        )
    return WindowSampler(prepared.train, config.train.seq_len, config.train.batch_size, config.train.seed, mixers)


def build_model(
    config: RunConfig,
    prepared: PreparedData,
    checkpoint: Path | None,
    meta: dict[str, Any] | None,
    log: Callable[[str], None],
) -> tuple[TransformerLM | HFCausalLM, dict[str, Any]]:
    """The model to train (on the CPU) and what to record about where it started.

    A fresh ``TransformerLM`` (or one initialised from ``train.init_from``), or the local transformers model of
    ``config.transformers`` with its position encoding switched; when resuming, the checkpoint's weights.
    """
    hf = config.transformers
    init_info: dict[str, Any] = {}
    if hf is None:
        model_config = config.model_config(prepared.tokenizer.vocab_size)
        if model_config.vocab_size < prepared.tokenizer.vocab_size:  # a token id past the embeddings: an IndexError
            raise ConfigError(
                f"model.vocab_size={model_config.vocab_size} is smaller than the tokenizer's "
                f"{prepared.tokenizer.vocab_size} tokens: leave it unset (the tokenizer's size is taken) or raise it"
            )
        model = TransformerLM(model_config)
        if checkpoint is not None:
            load_model_weights(model, checkpoint)
        elif config.train.init_from:
            init_info = initialize_from(model, config.train.init_from, log, config.train.init_positions)
        return model, init_info
    if checkpoint is not None:
        model = load_checkpoint_model(config, checkpoint, meta)
    else:
        from fope.integrations.hf_lm import load_for_training

        options = dict(hf.position_options)
        if hf.position.startswith("fope"):
            options.setdefault("seed", config.train.seed)
        model = load_for_training(
            hf.path,
            train_length=hf.train_length or config.train.seq_len,
            position=hf.position,
            position_options=options,
            dtype=hf.dtype,
            attn_implementation=hf.attn_implementation,
            tokenizer=_transformers_tokenizer(config.data.tokenizer),
        )
        init_info = {"init_from": str(hf.path)}
        log(f"training {model.config.architecture} from {hf.path} with position {model.config.position}")
    if prepared.tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(
            f"the tokenizer has {prepared.tokenizer.vocab_size} tokens and the model in {hf.path} only "
            f"{model.config.vocab_size} embeddings: tokenize with the model's own tokenizer (data.tokenizer)"
        )
    if hf.gradient_checkpointing:
        base = model.model
        getattr(base, "activation_checkpointing_enable", base.gradient_checkpointing_enable)()
    return model, init_info


def _transformers_tokenizer(path: str | None) -> Any:
    """The transformers tokenizer in folder ``path`` (saved with every checkpoint), or None for other tokenizers."""
    if path is None or not (Path(path) / "tokenizer_config.json").is_file():
        return None
    from fope.integrations.transformers import load_tokenizer

    return load_tokenizer(path)


def initialize_from(
    model: TransformerLM, source: str | Path, log: Callable[[str], None], positions: str = "fresh"
) -> dict[str, Any]:
    """Continued pre-training: copy a run's weights into ``model``; position tensors whose shapes differ stay fresh.

    ``positions="expand"`` is the authors' ``len_extra_fourier_expand`` (their OLMo fork's ``checkpoint.py``): a FoPE
    coefficient tensor ``(heads, K, d_out)`` whose last two sizes changed keeps its fresh initialisation (identity
    plus Xavier noise, at the new shape) except the overlap ``[..., :K, :d_out]`` of both shapes, which is copied from
    the source; a smaller new shape is the source's top-left block. Every other weight must exist in the source with
    the same shape (a different architecture is an error).
    """
    if positions not in ("fresh", "expand"):
        raise ValueError(f"positions must be 'fresh' or 'expand'; got {positions!r}")
    directory = Path(source)
    if (directory / "config.yaml").is_file():
        directory = find_checkpoint(directory)
    meta = read_checkpoint_meta(directory)
    from safetensors.torch import load_file

    if is_sharded(directory):
        source_state = read_sharded_tensors(directory / SHARDED_MODEL)
    else:
        source_state = load_file(str(directory / "model.safetensors"))
    target_state = model.state_dict()
    kept_fresh, expanded = [], []
    for name, tensor in target_state.items():
        if name.startswith("position_modules."):
            there = source_state.get(name)
            if there is not None and there.shape == tensor.shape:
                tensor.copy_(there)
            elif positions == "expand" and there is not None and _expandable(name, there, tensor):
                rows, columns = min(there.shape[-2], tensor.shape[-2]), min(there.shape[-1], tensor.shape[-1])
                tensor[..., :rows, :columns] = there[..., :rows, :columns]
                expanded.append(f"{name} {tuple(there.shape)} -> {tuple(tensor.shape)}")
            else:
                kept_fresh.append(name)
            continue
        if name not in source_state and name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        if name not in source_state:
            raise CheckpointError(f"cannot initialize from {directory}: it has no weight {name!r}")
        if source_state[name].shape != tensor.shape:
            raise CheckpointError(
                f"cannot initialize from {directory}: {name} has shape {tuple(source_state[name].shape)} there "
                f"and {tuple(tensor.shape)} here (the architecture must match; only the position encoding may change)"
            )
        tensor.copy_(source_state[name])
    if kept_fresh:
        log(f"position encoding differs from the source: {len(kept_fresh)} position tensors freshly initialised")
    if expanded:
        log(f"{len(expanded)} FoPE coefficient tensors expanded from the source (e.g. {expanded[0]})")
    info = {"init_from": str(directory), "init_from_step": meta["step"], "fresh_position_tensors": kept_fresh}
    return info | ({"expanded_position_tensors": len(expanded)} if expanded else {})


def _expandable(name: str, source: torch.Tensor, target: torch.Tensor) -> bool:
    """A FoPE coefficient tensor whose leading (head) sizes agree: only ``K`` and ``d_out`` may change."""
    coefficient = name.endswith(("cos_coef", "sin_coef"))
    return coefficient and source.ndim == target.ndim >= 2 and source.shape[:-2] == target.shape[:-2]


def load_checkpoint_model(config: RunConfig, directory: Path, meta: dict[str, Any]) -> TransformerLM | HFCausalLM:
    """The model saved in a checkpoint of a run with this config (on the CPU)."""
    saved = meta["model_config"]
    if config.transformers is not None:
        require("transformers", f"the transformers model in {directory}")
        from fope.integrations.hf_lm import load_checkpoint

        try:
            return load_checkpoint(
                directory,
                train_length=saved["train_length"],
                position=saved["position"],
                dtype=config.transformers.dtype,
                attn_implementation=config.transformers.attn_implementation,
            )
        except (KeyError, OSError, ValueError) as error:
            raise CheckpointError(f"cannot load the transformers model in {directory}: {one_line(error)}") from error
    try:
        model_config = ModelConfig.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / 'meta.json'} holds an invalid model_config: {error}") from error
    model = TransformerLM(model_config)
    load_model_weights(model, directory)
    return model
