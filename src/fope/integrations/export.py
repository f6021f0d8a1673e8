"""``fope export``: a trained lab model (``fope.TransformerLM``) as a Hugging Face ``transformers`` folder.

The folder loads with ``AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)`` and
``AutoTokenizer.from_pretrained(out)`` where only ``torch`` and ``transformers`` are installed, so any tool built on
them (lm-eval's ``hf`` model, vLLM-free scripts, ...) evaluates the model. What maps to what:

- the blocks become ``LlamaForCausalLM`` weights, or ``Qwen3ForCausalLM`` ones when the model has QK-norm (Qwen3
  normalises q and k per head before the rotation, as ``TransformerLM`` does): ``qkv_proj`` is split into
  ``q_proj``/``k_proj``/``v_proj``, ``up_gate_proj`` (output ``[up, gate]``) into ``up_proj``/``gate_proj``;
- every rotary position encoding becomes the modeling file's ``FourierFeatures`` (``modeling_fope.py``, written next
  to the weights): FoPE and its ablations with their own frequencies, coefficients, output pairs, zero-pair rule and
  attention factor; RoPE with any frequency scheme (PI, NTK, YaRN, p-RoPE, HoPE) as identity coefficients over its
  own frequencies and attention factor; NoPE as no frequency at all (``cos = 1, sin = 0`` on every pair). One set
  per layer, or one for all layers when the run shares its encoding (``share_position``);
- ALiBi has no equivalent (the Llama-family attention takes no per-head linear bias through a public API): refused.

Before anything is written the exported model runs on a probe prompt next to the lab model; logits that differ are an
error, never a silently different model.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fope.errors import FopeError
from fope.integrations.hf_lm import quiet_progress
from fope.integrations.modeling_fope import CONFIG_KEY, FEATURE_KEYS, FourierFeatures, attention_layers, classes_for
from fope.integrations.transformers import check_model_out_dir, write_out_dir
from fope.model import TransformerLM
from fope.positions import FoPE, RoPE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from fope.data.tokenizer import Tokenizer

__all__ = [
    "architecture_for",
    "default_context",
    "export_model",
    "export_run",
    "feature_modules_of",
    "hf_config",
    "to_transformers",
    "transformers_tokenizer",
]

_PROBE_LENGTH = 48
#: Relative error allowed between the lab model's logits and the exported model's on the probe (float32 rounding).
_PROBE_TOLERANCE = 1e-4


def export_run(
    run_dir: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    step: int | None = None,
    overwrite: bool = False,
    max_position_embeddings: int | None = None,
) -> Path:
    """Write the checkpoint of a run (default: the latest) as a transformers folder ``out_dir``; returns its path.

    See ``export_model``. The run's name, position encoding and its options, training length and step are recorded in
    ``config.json``'s ``fope.exported_from``. An ``out_dir`` that is, holds or lies inside ``run_dir`` is refused,
    ``overwrite`` or not.
    """
    from fope.runs import load_run

    target = check_model_out_dir(out_dir, overwrite, inputs={"RUN_DIR": run_dir})
    run = load_run(run_dir, step=step)
    if not isinstance(run.model, TransformerLM):
        raise FopeError(
            f"{run_dir} trains a transformers model: its checkpoint {run.checkpoint} already is a transformers folder "
            "(load it with AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)); nothing to export"
        )
    provenance = {"run": run.label, "step": run.step}
    return export_model(
        run.model,
        run.tokenizer,
        target,
        overwrite=overwrite,
        provenance=provenance,
        max_position_embeddings=max_position_embeddings,
    )


def export_model(
    model: TransformerLM,
    tokenizer: Tokenizer,
    out_dir: str | PathLike[str],
    *,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    max_position_embeddings: int | None = None,
) -> Path:
    """Write ``model`` and ``tokenizer`` as a transformers folder ``out_dir`` (float32 safetensors); returns its path.

    ``max_position_embeddings`` (the context tools such as lm-eval truncate prompts to) defaults to the model's
    ``train_length``, or ``factor`` times the original context for a scaled encoding (PI, NTK, YaRN). ``provenance``
    is merged into ``config.fope["exported_from"]``. A non-empty ``out_dir`` is refused unless ``overwrite``; it is
    replaced in one rename once the new folder is written.
    """
    if not isinstance(model, TransformerLM):
        raise TypeError(f"model must be a fope TransformerLM; got {type(model).__name__}")
    target = check_model_out_dir(out_dir, overwrite)
    hf_model = to_transformers(model, tokenizer, provenance=provenance, max_position_embeddings=max_position_embeddings)
    hf_tokenizer = transformers_tokenizer(tokenizer, model_max_length=hf_model.config.max_position_embeddings)

    def write(folder: Path) -> None:
        with quiet_progress():
            hf_model.save_pretrained(folder)
        hf_tokenizer.save_pretrained(folder)

    return write_out_dir(target, write)


def to_transformers(
    model: TransformerLM,
    tokenizer: Tokenizer | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    max_position_embeddings: int | None = None,
) -> PreTrainedModel:
    """The exported model in memory (an eval-mode float32 ``FoPEForCausalLM`` on the CPU), checked against ``model``."""
    architecture = architecture_for(model)
    modules, shared = feature_modules_of(model)  # refuses ALiBi before anything is built
    config = hf_config(model, tokenizer, max_position_embeddings=max_position_embeddings)
    record = {
        "base_architecture": architecture,
        "features": _feature_spec(modules[0], model, shared),
        "exported_from": _provenance(model, provenance),
    }
    config_class, model_class = classes_for(architecture)
    config = config_class(**config, **{CONFIG_KEY: record})
    config.architectures = [model_class.__name__]
    hf_model = model_class(config).eval()
    _load_weights(hf_model, model, modules, shared)
    _check_logits(hf_model, model)
    return hf_model


def architecture_for(model: TransformerLM) -> str:
    """``"Qwen3ForCausalLM"`` for a model with QK-norm (per-head q/k RMSNorm before the rotation), else Llama."""
    return "Qwen3ForCausalLM" if model.config.qk_norm else "LlamaForCausalLM"


def hf_config(
    model: TransformerLM, tokenizer: Tokenizer | None = None, *, max_position_embeddings: int | None = None
) -> dict[str, Any]:
    """The Llama / Qwen3 config arguments of ``model`` (without ``config.fope``)."""
    config = model.config
    eos_id = tokenizer.eos_id if tokenizer is not None else None
    if eos_id is not None and not 0 <= eos_id < config.vocab_size:
        raise FopeError(f"the tokenizer's eos id {eos_id} is outside the model's vocabulary of {config.vocab_size}")
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise FopeError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary has {config.vocab_size}"
        )
    context = default_context(model) if max_position_embeddings is None else max_position_embeddings
    if isinstance(context, bool) or not isinstance(context, int) or context < config.train_length:
        raise FopeError(
            f"max_position_embeddings must be an int >= the training length {config.train_length}; got {context!r}"
        )
    values: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.mlp_hidden_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "rms_norm_eps": config.norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": config.init_std,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        # The architecture's own RoPE is replaced by the identity (the modeling file rotates q and k itself).
        "rope_parameters": {"rope_type": "default", "rope_theta": float(getattr(_first(model), "theta", 10000.0))},
    }
    if config.qk_norm:
        values.update(use_sliding_window=False, sliding_window=None, layer_types=["full_attention"] * config.num_layers)
    else:
        values.update(mlp_bias=False, pretraining_tp=1)
    return values


def default_context(model: TransformerLM) -> int:
    """``train_length``, or the context a scaled encoding was made for (``factor`` times its original context)."""
    train_length = model.config.train_length
    scaling = getattr(_first(model), "scaling", None)
    if isinstance(scaling, dict) and isinstance(scaling.get("factor"), (int, float)):
        original = scaling.get("original_max_position", train_length)
        return max(train_length, math.ceil(scaling["factor"] * original))
    return train_length


def feature_modules_of(model: TransformerLM) -> tuple[list[FourierFeatures], bool]:
    """``FourierFeatures`` equal to the model's position encodings (one per layer, or one shared), and whether shared.

    FopeError (a ValueError) for ALiBi (no transformers equivalent here) and for encodings without an export rule.
    """
    encodings = list(model.position_modules)
    modules = [_features_of(encoding, model) for encoding in encodings]
    return modules, model.config.share_position


def transformers_tokenizer(tokenizer: Tokenizer, *, model_max_length: int | None = None) -> Any:
    """``tokenizer`` as a ``PreTrainedTokenizerFast`` with its EOS as eos, bos and pad token.

    Special-token strings in text are encoded as text, as fope's ``Tokenizer`` does (``split_special_tokens``), and
    nothing is added around the ids (no BOS): the ids are fope's.
    """
    from transformers import PreTrainedTokenizerFast

    eos = tokenizer.eos_token
    options: dict[str, Any] = {"eos_token": eos, "bos_token": eos, "pad_token": eos, "split_special_tokens": True}
    if model_max_length is not None:
        options["model_max_length"] = model_max_length
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, **options)


def _first(model: TransformerLM) -> nn.Module:
    return model.position_modules[0]


def _features_of(encoding: nn.Module, model: TransformerLM) -> FourierFeatures:
    """One encoding as ``FourierFeatures`` holding copies of its frequencies and coefficients."""
    config = model.config
    if isinstance(encoding, FoPE):
        inv_freq = encoding.inv_freq.detach().to("cpu", torch.float32)
        terms = encoding.cos_coef.shape[1]
        if terms > inv_freq.numel():  # keep_zeroed: the zeroed frequencies are constant terms, cos 0 = 1, sin 0 = 0
            inv_freq = torch.cat((inv_freq, inv_freq.new_zeros(terms - inv_freq.numel())))
        cos_coef, sin_coef = (t.detach().to("cpu", torch.float32) for t in (encoding.cos_coef, encoding.sin_coef))
        options = {"output_dim": encoding.output_dim, "zero_pad": encoding.zero_pad, "learnable": encoding.learnable}
        rotary_dim, attention_factor = encoding.rotary_dim, encoding.attention_factor
    elif isinstance(encoding, RoPE):  # any frequency scheme: identity coefficients over all pairs
        inv_freq = encoding.inv_freq.detach().to("cpu", torch.float32)
        pairs = inv_freq.numel()
        cos_coef = sin_coef = torch.eye(pairs, dtype=torch.float32).unsqueeze(0)
        options = {"output_dim": pairs, "zero_pad": "identity", "learnable": False}
        rotary_dim, attention_factor = encoding.rotary_dim, encoding.attention_factor
    elif encoding.kind == "bias":
        raise FopeError(
            f"{type(encoding).__name__} (position {config.position!r}) has no transformers equivalent here: "
            "Llama-family attention takes no per-head linear bias; only rotary encodings and NoPE export"
        )
    elif encoding.kind == "none":  # NoPE: no frequency; every pair is a zero pair with cos = 1, sin = 0
        inv_freq = torch.zeros(0)
        cos_coef = sin_coef = torch.zeros(1, 0, 0)
        options = {"output_dim": 0, "zero_pad": "identity", "learnable": False}
        rotary_dim, attention_factor = config.head_size - config.head_size % 2, 1.0
    else:
        raise FopeError(f"position encoding {type(encoding).__name__} ({config.position!r}) has no export rule")
    module = FourierFeatures(
        num_coef_heads=cos_coef.shape[0],
        num_kept=inv_freq.numel(),
        rotary_dim=rotary_dim,
        attention_factor=float(attention_factor),
        layout=getattr(encoding, "layout", "half"),  # NoPE: no pair turns, any layout
        **options,
    )
    with torch.no_grad():
        for name, value in (("inv_freq", inv_freq), ("cos_coef", cos_coef), ("sin_coef", sin_coef)):
            getattr(module, name).copy_(value)
    return module


def _feature_spec(module: FourierFeatures, model: TransformerLM, shared: bool) -> dict[str, Any]:
    heads, kept, output_dim = module.cos_coef.shape
    spec = {
        "share_layers": shared,
        "num_coef_heads": heads,
        "num_kept": kept,
        "output_dim": output_dim,
        "rotary_dim": 2 * module.num_pairs,
        "zero_pad": module.zero_pad,
        "attention_factor": module.attention_factor,
        "layout": module.layout,
        "learnable": isinstance(module.cos_coef, nn.Parameter),
    }
    if sorted(spec) != sorted(FEATURE_KEYS):
        raise RuntimeError(f"modeling_fope.FEATURE_KEYS is {list(FEATURE_KEYS)}; fope export writes {sorted(spec)}")
    return spec


def _provenance(model: TransformerLM, provenance: dict[str, Any] | None) -> dict[str, Any]:
    import fope

    config = model.config
    record = {
        "tool": "fope export",
        "fope_version": fope.__version__,
        "position": config.position,
        "position_options": dict(config.position_options),
        "share_position": config.share_position,
        "position_seed": config.position_seed,
        "train_length": config.train_length,
        "qk_norm": config.qk_norm,
        **(provenance or {}),
    }
    return json.loads(json.dumps(record, default=str))  # JSON-safe: what config.json will hold


def _load_weights(hf_model: nn.Module, model: TransformerLM, modules: list[FourierFeatures], shared: bool) -> None:
    """Copy the lab model's weights into the Llama / Qwen3 layout, and the position features into their modules."""
    config = model.config
    q_size, kv_size = config.num_heads * config.head_size, config.kv_heads * config.head_size
    state: dict[str, Tensor] = {
        "model.embed_tokens.weight": model.embed.weight,
        "model.norm.weight": model.norm.weight,
        "lm_head.weight": model.lm_head.weight,
    }
    for index, block in enumerate(model.layers):
        prefix = f"model.layers.{index}."
        attention = block.attention
        q, k, v = attention.qkv_proj.weight.split((q_size, kv_size, kv_size), dim=0)
        up, gate = block.mlp.up_gate_proj.weight.chunk(2, dim=0)
        state.update(
            {
                prefix + "input_layernorm.weight": block.attention_norm.weight,
                prefix + "post_attention_layernorm.weight": block.mlp_norm.weight,
                prefix + "self_attn.q_proj.weight": q,
                prefix + "self_attn.k_proj.weight": k,
                prefix + "self_attn.v_proj.weight": v,
                prefix + "self_attn.o_proj.weight": attention.out_proj.weight,
                prefix + "mlp.up_proj.weight": up,
                prefix + "mlp.gate_proj.weight": gate,
                prefix + "mlp.down_proj.weight": block.mlp.down_proj.weight,
            }
        )
        if config.qk_norm:
            state[prefix + "self_attn.q_norm.weight"] = attention.q_norm.weight
            state[prefix + "self_attn.k_norm.weight"] = attention.k_norm.weight
    state = {name: tensor.detach().to("cpu", torch.float32) for name, tensor in state.items()}
    expected = {name for name in hf_model.state_dict() if ".fope." not in name}
    if set(state) != expected:
        raise TypeError(
            f"{type(hf_model).__name__} does not have the weights the export writes: missing "
            f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}"
        )
    with torch.no_grad():
        own = hf_model.state_dict()
        for name, tensor in state.items():
            if own[name].shape != tensor.shape:
                shapes = f"{tuple(tensor.shape)}, the model has {tuple(own[name].shape)}"
                raise TypeError(f"{name}: the export gives shape {shapes}")
            own[name].copy_(tensor)
        base, attentions = attention_layers(hf_model)
        targets = [base.rotary_emb.fope] if shared else [attention.fope for attention in attentions]
        sources = modules if len(modules) == len(targets) else modules[:1] * len(targets)
        for target, source in zip(targets, sources, strict=True):
            for name in ("inv_freq", "cos_coef", "sin_coef"):
                getattr(target, name).copy_(getattr(source, name))


def _check_logits(hf_model: nn.Module, model: TransformerLM) -> None:
    """The exported model must give the lab model's logits on a probe prompt (float32 copies, on the CPU)."""
    import copy

    tensors = [*model.parameters(), *model.buffers()]
    as_is = all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.int64) for t in tensors)
    reference = model if as_is else copy.deepcopy(model).to("cpu", torch.float32)
    length = min(_PROBE_LENGTH, hf_model.config.max_position_embeddings)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=generator)
    was_training = reference.training
    reference.eval()
    try:
        with torch.no_grad():
            expected = reference(ids).logits.float()
            actual = hf_model(input_ids=ids, use_cache=False).logits.float()
    finally:
        reference.train(was_training)
    error = float((actual - expected).norm() / expected.norm().clamp_min(1e-30))
    if not error <= _PROBE_TOLERANCE:
        raise RuntimeError(
            f"the exported {type(hf_model).__name__} does not reproduce the model's logits (relative error "
            f"{error:.1e} > {_PROBE_TOLERANCE:g}): please report this as a bug in fope export"
        )
