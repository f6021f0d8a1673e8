"""Fine-tuning a converted or exported FoPE model with transformers' ``Trainer`` under accelerate's FSDP2.

A folder written by ``fope convert`` or ``fope export`` is a transformers model; the Trainer trains it like any
other. ``fsdp_config(model)`` is the ``fsdp_config`` of ``TrainingArguments(fsdp=True, fsdp_config=...)`` that
shards it with FSDP2, one unit per decoder layer (docs/transformers.md has the whole recipe). What makes FoPE safe
there: its frequencies and coefficients are persistent float32 tensors of the checkpoint, never recomputed or
initialised by transformers, so meta-device and low-memory loading read them from the weights, and accelerate's
``cpu_ram_efficient_loading`` broadcasts them from rank 0 with the other weights.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fope.errors import FopeError
from fope.extras import require

__all__ = ["fsdp_config"]


def fsdp_config(
    model: nn.Module, *, cpu_ram_efficient_loading: bool = True, activation_checkpointing: bool = False
) -> dict[str, Any]:
    """``TrainingArguments(fsdp=True, fsdp_config=fsdp_config(model))``: FSDP2, one shard unit per decoder layer.

    ``cpu_ram_efficient_loading``: only rank 0 keeps the loaded weights, the others receive them by broadcast (FoPE's
    tensors with them); ``activation_checkpointing``: FSDP's own, per decoder layer. Full state dicts are gathered
    for saving, so ``trainer.save_model`` writes a folder that loads like the one read.
    """
    require("transformers", "fine-tuning with transformers' Trainer")
    require("accelerate", "FSDP2 under transformers' Trainer")
    from fope.integrations.modeling_fope import attention_layers
    from fope.integrations.transformers import is_converted

    if not is_converted(model):
        raise FopeError(
            f"this {type(model).__name__} has no FoPE: load a folder written by fope convert or fope export "
            "(fope.integrations.transformers.from_pretrained, or AutoModelForCausalLM with trust_remote_code=True)"
        )
    base, _ = attention_layers(model)
    layer_classes = sorted({type(layer).__name__.removeprefix("FSDP") for layer in base.layers})
    return {
        "version": 2,
        "transformer_layer_cls_to_wrap": layer_classes,
        "cpu_ram_efficient_loading": cpu_ram_efficient_loading,
        "activation_checkpointing": activation_checkpointing,
        "reshard_after_forward": True,
        "state_dict_type": "FULL_STATE_DICT",
    }
