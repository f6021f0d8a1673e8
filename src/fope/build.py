"""What a run trains, built from its config: the prepared data and its sampler, the model, the optimizer.

The model is a fresh ``TransformerLM`` (or one initialised from ``train.init_from``), the local transformers model of
``config.transformers`` with its position encoding switched, or, when resuming, the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fope.checkpoint import initialize_from, load_checkpoint_model, load_model_weights
from fope.config import ConfigError, RunConfig
from fope.data.prepare import PreparedData, prepare_data
from fope.data.retrieval import retrieval_mixer
from fope.data.sampler import WindowSampler
from fope.model import TransformerLM

if TYPE_CHECKING:
    from fope.integrations.hf_lm import HFCausalLM

__all__ = ["POSITION_PARAMETER_MARKERS", "build_model", "build_optimizer", "build_sampler", "prepare_run_data"]

#: Parameter names of position-encoding coefficients (exempt from weight decay): TransformerLM's position modules,
#: and the FoPE modules ``convert`` puts in a transformers model (``...self_attn.fope.`` or ``...rotary_emb.fope.``).
POSITION_PARAMETER_MARKERS = ("position_modules.", ".fope.")


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


def prepare_run_data(config: RunConfig) -> PreparedData:
    """The prepared data named by ``config.data`` (built and cached on first use)."""
    data = config.data
    return prepare_data(
        data.source,
        data.root,
        vocab_size=data.vocab_size,
        val_fraction=data.val_fraction,
        seed=data.split_seed,
        text_field=data.text_field,
        tokenizer=data.tokenizer,
        sources=data.sources,
    )


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
        model = TransformerLM(config.model_config(prepared.tokenizer.vocab_size))
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
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)
