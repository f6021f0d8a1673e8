"""A local ``transformers`` causal LM behind ``TransformerLM``'s interface: continued pre-training with ``fope train``.

``load_for_training`` reads a model directory and switches its position encoding: FoPE through
``fope.integrations.transformers.convert``, YaRN through the model's own ``rope_parameters`` (transformers builds the
rotary module from them), or ``keep`` for the model's own. ``HFCausalLM`` wraps the model so the training loop, the
checkpoints and the evaluators use it like a ``TransformerLM``: ``forward(input_ids, positions, targets=...)`` returns
an ``LMOutput``, ``generate`` decodes with transformers' KV cache, ``config`` carries ``train_length`` and the shapes.
``save_pretrained`` writes a normal transformers folder; ``load_checkpoint`` reads it back.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fope.generation import decode
from fope.integrations.transformers import (
    CONFIG_KEY,
    convert,
    convert_options,
    fope_modules,
    from_pretrained,
    is_converted_directory,
    load_tokenizer,
    model_rope,
)
from fope.model import LMOutput
from fope.positions import POSITION_ENCODINGS, PositionEncoding, resolve_positions

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "DTYPES",
    "POSITIONS",
    "YARN_OPTIONS",
    "HFCausalLM",
    "HFModelConfig",
    "check_model_directory",
    "check_position_options",
    "load_checkpoint",
    "load_for_training",
    "quiet_progress",
]

#: FoPE and its two ablations (options fixed as in ``fope.positions.POSITION_ENCODINGS``), YaRN, or the model's own.
POSITIONS = ("fope", "fope-no-fs", "fope-no-cf", "yarn", "keep")
#: YaRN's options, named as in ``fope.positions`` (``original_max_position`` is transformers'
#: ``original_max_position_embeddings``).
YARN_OPTIONS = ("factor", "original_max_position", "beta_fast", "beta_slow", "attention_factor", "truncate")
DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
# Config entries with which some architectures transform the logits after the output embedding (Granite, Cohere,
# Gemma2): for them hidden_states + lm_head would not give forward's logits.
_LOGIT_TRANSFORMS = ("logits_scaling", "logit_scale", "final_logit_softcapping")


@dataclass
class HFModelConfig:
    """What the loop and the evaluators read from ``model.config``, with ``TransformerLM``'s names.

    ``position`` is the encoding the model was trained with here (``fope``, ``fope-no-fs``, ``fope-no-cf``, ``yarn``,
    or ``rope`` for a kept RoPE of any type); ``position_options`` are the options recorded in the model's config
    (``config.fope``, or its ``rope_parameters``).
    """

    architecture: str
    position: str
    position_options: dict[str, Any]
    train_length: int
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads

    @property
    def head_size(self) -> int:
        return self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, model: PreTrainedModel, train_length: int, position: str | None = None) -> HFModelConfig:
        """The config of ``model``; ``position`` None names the encoding it has (``fope``, ``yarn`` or ``rope``)."""
        config = model.config
        fope_record = getattr(config, CONFIG_KEY, None)
        if isinstance(fope_record, Mapping):
            options = dict(fope_record)
            exported = options.get("exported_from")  # a fope lab run written by `fope export` keeps its own name
            position = position or (exported.get("position") if isinstance(exported, Mapping) else None) or "fope"
        else:
            options = dict(getattr(config, "rope_parameters", None) or {})
            position = position or ("yarn" if options.get("rope_type") == "yarn" else "rope")
        num_heads = config.num_attention_heads
        return cls(
            architecture=type(model).__name__,
            position=position,
            position_options=options,
            train_length=train_length,
            vocab_size=config.vocab_size,
            d_model=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=num_heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or num_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // num_heads,
        )


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM with ``TransformerLM``'s interface (forward with shifted targets, generate, config).

    ``tokenizer`` (a transformers tokenizer, optional) is written next to the weights by ``save_pretrained`` so that a
    checkpoint is a complete model folder.
    """

    def __init__(
        self, model: PreTrainedModel, *, train_length: int, position: str | None = None, tokenizer: Any = None
    ) -> None:
        super().__init__()
        self.model = model
        self.config = HFModelConfig.of(model, train_length, position)
        self.tokenizer = tokenizer

    def forward(
        self,
        input_ids: Tensor,
        positions: Tensor | None = None,
        cache: Any = None,
        targets: Tensor | None = None,
    ) -> LMOutput:
        """Logits ``(B, T, vocab)``, and the mean float32 loss against ``targets`` (already shifted; -100 ignored).

        ``positions`` (``(T,)`` or ``(B, T)``, default ``0..T-1``) move the position encoding only; attention stays
        causal over the row. ``cache`` must be None: decoding with a cache is ``generate``'s job.
        """
        if cache is not None:
            raise TypeError("HFCausalLM.forward takes no cache; generate() decodes with transformers' KV cache")
        logits = self.model(**self._inputs(input_ids, positions), use_cache=False).logits
        if targets is None:
            return LMOutput(logits)
        if targets.shape != input_ids.shape:
            raise ValueError(
                f"targets must have the shape of input_ids {tuple(input_ids.shape)}; got {tuple(targets.shape)}"
            )
        # Not transformers' `labels`: those are shifted again inside the model.
        return LMOutput(logits, F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100))

    def hidden_states(self, input_ids: Tensor, positions: Tensor | None = None, cache: Any = None) -> Tensor:
        """Final-norm hidden states ``(B, T, d_model)``; ``lm_head`` turns them into forward's logits."""
        if cache is not None:
            raise TypeError("HFCausalLM.hidden_states takes no cache")
        self._check_plain_logits()
        return self.model.base_model(**self._inputs(input_ids, positions), use_cache=False).last_hidden_state

    @property
    def lm_head(self) -> nn.Module:
        """The output embedding: hidden states -> logits."""
        self._check_plain_logits()
        return self.model.get_output_embeddings()

    def generate(self, input_ids: Tensor, max_new_tokens: int, **options: Any) -> Tensor:
        """``TransformerLM.generate``'s contract on transformers' KV cache: prompt and new tokens ``(B, T + n)``.

        One prefill pass, then one token per step: ``fope.generation.decode`` with its keyword ``options`` (greedy at
        ``temperature=0.0``). The model's ``generation_config`` plays no part, so its sampling defaults cannot leak in.
        """
        # transformers 5.24 renamed the cache argument and output past_key_values -> cache (the old name warns)
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

        def step(new_tokens: Tensor, cache: Any) -> tuple[Tensor, Any]:
            output = self.model(input_ids=new_tokens, use_cache=True, logits_to_keep=1, **{name: cache})
            return output.logits[:, -1], getattr(output, name)

        return decode(step, input_ids, max_new_tokens, **options)

    def position_encodings(self) -> list[PositionEncoding]:
        """Each layer's position encoding: the FoPE modules, or a ``fope.RoPE`` equal to the model's RoPE (a copy)."""
        modules = fope_modules(self.model)
        if not modules:
            device = self.model.get_input_embeddings().weight.device
            modules = [model_rope(self.model).to(device)]
        return [modules[0 if len(modules) == 1 else index] for index in range(self.config.num_layers)]

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameters (tied weights once); ``exclude_embeddings`` leaves out the input and output embeddings."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            modules = (self.model.get_input_embeddings(), self.model.get_output_embeddings())
            embeddings = {id(module.weight): module.weight for module in modules}
            total -= sum(weight.numel() for weight in embeddings.values())
        return total

    def save_pretrained(self, directory: str | PathLike[str]) -> None:
        """Write the model (safetensors; config.json with the FoPE options) and the tokenizer, if any."""
        with quiet_progress():
            self.model.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    def _inputs(self, input_ids: Tensor, positions: Tensor | None) -> dict[str, Tensor]:
        """transformers' keyword inputs for one causal sequence per row at ``positions`` (default ``0..T-1``)."""
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
            shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be an integer tensor of shape (batch, seq_len); got {shape}")
        if positions is None:
            return {"input_ids": input_ids}
        batch, length = input_ids.shape
        positions = resolve_positions(positions, batch=batch, length=length, device=input_ids.device)
        # Without an attention mask, transformers reads position ids that do not step by 1 as packed sequences and
        # masks across them; TransformerLM's positions only move the encoding, so the mask must stay causal.
        return {
            "input_ids": input_ids,
            "position_ids": positions.unsqueeze(0) if positions.dim() == 1 else positions,
            "attention_mask": torch.ones_like(input_ids),
        }

    def _check_plain_logits(self) -> None:
        values = {name: getattr(self.model.config, name, None) for name in _LOGIT_TRANSFORMS}
        transforms = {name: value for name, value in values.items() if value is not None and value != 1}
        if transforms:
            raise NotImplementedError(
                f"{type(self.model).__name__} transforms its logits after the output embedding ({transforms}): "
                "hidden_states + lm_head would not give forward's logits; use forward()"
            )


def check_model_directory(path: str | PathLike[str]) -> Path:
    """``path`` as a Path if it is a local transformers model folder (config.json and weights); else a clear error."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ValueError(f"transformers.path must be a local model directory; {str(path)!r} is not a directory")
    if not (directory / "config.json").is_file():
        raise ValueError(
            f"transformers.path must be a model directory written by save_pretrained; {str(path)!r} has no config.json"
        )
    if not any(next(directory.glob(pattern), None) for pattern in _WEIGHT_PATTERNS):
        raise ValueError(f"transformers.path {str(path)!r} holds no weights (*.safetensors or *.bin)")
    return directory


def check_position_options(position: str, options: Mapping[str, Any]) -> None:
    """Option names for ``position``: convert's for the FoPE variants, ``YARN_OPTIONS`` for yarn, none for keep."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {list(POSITIONS)}; got {position!r}")
    if position == "keep":
        accepted: list[str] = []
    elif position == "yarn":
        accepted = list(YARN_OPTIONS)
    else:
        accepted = convert_options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"position_options for {position!r} do not take {unknown}; accepted: {accepted}")
    if position != "yarn":
        for name, value in POSITION_ENCODINGS.get(position, POSITION_ENCODINGS["fope"]).fixed.items():
            if name in options and options[name] != value:
                raise ValueError(f"{position!r} fixes {name}={value!r}; got {name}={options[name]!r}")


def load_for_training(
    path: str | PathLike[str],
    *,
    train_length: int,
    position: str = "fope",
    position_options: Mapping[str, Any] | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    tokenizer: Any = None,
) -> HFCausalLM:
    """Load the local model at ``path`` and switch its position encoding for training at ``train_length`` tokens.

    ``fope`` (and the ablations ``fope-no-fs`` / ``fope-no-cf``): ``convert(model, train_length, **position_options)``
    with fresh coefficients. ``yarn``: the model's plain RoPE becomes YaRN with ``factor`` (default ``train_length /
    original_max_position``) and ``original_max_position`` (default the model's ``max_position_embeddings``).
    ``keep``: the model as it is (RoPE of any type, or FoPE if the folder was saved from a converted model).
    ``max_position_embeddings`` becomes the context the switched encoding is made for (``train_length``, or
    ``factor * original_max_position`` for YaRN) when that is longer.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = check_model_directory(path)
    options = dict(position_options or {})
    check_position_options(position, options)
    load_options = _load_options(dtype, attn_implementation)
    is_fope = is_converted_directory(directory)
    if is_fope and position != "keep":
        raise ValueError(
            f"{directory} holds a model already converted to FoPE (config.json has {CONFIG_KEY!r}); "
            f"position {position!r} needs a RoPE model. Use position: keep to continue training it"
        )
    config = None if is_fope else AutoConfig.from_pretrained(directory, local_files_only=True)
    if position == "yarn":
        config.rope_parameters = _yarn_parameters(config, options, train_length)
        context = round(config.rope_parameters["factor"] * config.rope_parameters["original_max_position_embeddings"])
        config.max_position_embeddings = max(config.max_position_embeddings, context)
    with quiet_progress():
        if is_fope:
            model = from_pretrained(directory, **load_options)
        else:
            model = AutoModelForCausalLM.from_pretrained(directory, config=config, **load_options)
    if position in POSITION_ENCODINGS and position != "yarn":  # the FoPE variants
        convert(model, train_length, **{**POSITION_ENCODINGS[position].fixed, **options})
        model.config.max_position_embeddings = max(model.config.max_position_embeddings, train_length)
    named = None if position == "keep" else position
    return HFCausalLM(model, train_length=train_length, position=named, tokenizer=tokenizer)


def load_checkpoint(
    directory: str | PathLike[str],
    *,
    train_length: int,
    position: str | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
) -> HFCausalLM:
    """An ``HFCausalLM`` from a folder written by ``HFCausalLM.save_pretrained`` (with its tokenizer, if saved)."""
    from transformers import AutoModelForCausalLM

    directory = check_model_directory(directory)
    load_options = _load_options(dtype, attn_implementation)
    with quiet_progress():
        if is_converted_directory(directory):
            model = from_pretrained(directory, **load_options)
        else:
            model = AutoModelForCausalLM.from_pretrained(directory, **load_options)
    tokenizer = None
    if (directory / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(directory)
    return HFCausalLM(model, train_length=train_length, position=position, tokenizer=tokenizer)


def _load_options(dtype: str, attn_implementation: str | None) -> dict[str, Any]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    options: dict[str, Any] = {"dtype": DTYPES[dtype], "local_files_only": True}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    return options


def _yarn_parameters(config: Any, options: Mapping[str, Any], train_length: int) -> dict[str, Any]:
    """transformers ``rope_parameters`` that make the model's plain RoPE a YaRN for ``train_length`` tokens."""
    parameters = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in parameters:
        raise ValueError(f"position 'yarn' needs one RoPE for all layers with a rope_theta; the model has {parameters}")
    if parameters.get("rope_type", "default") != "default":
        raise ValueError(
            f"position 'yarn' rescales a plain RoPE; this model's RoPE is already {parameters['rope_type']!r} "
            f"({parameters}). Use position: keep to train with it as it is"
        )
    original = options.get("original_max_position", config.max_position_embeddings)
    if isinstance(original, bool) or not isinstance(original, int) or original < 1:
        raise ValueError(f"YaRN's original_max_position must be an int >= 1; got {original!r}")
    factor = options.get("factor", train_length / original)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 1:
        raise ValueError(
            f"YaRN's factor must be a number > 1; got {factor!r} (train_length {train_length} / original_max_position "
            f"{original} by default): train longer than the model's context, or set position_options.factor"
        )
    yarn = {
        **{key: parameters[key] for key in ("rope_theta", "partial_rotary_factor") if key in parameters},
        "rope_type": "yarn",
        "factor": float(factor),
        "original_max_position_embeddings": int(original),
    }
    for name in ("beta_fast", "beta_slow", "attention_factor"):
        if name in options:
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"YaRN's {name} must be a number; got {value!r}")
            yarn[name] = float(value)
    if "truncate" in options:
        if not isinstance(options["truncate"], bool):
            raise ValueError(f"YaRN's truncate must be true or false; got {options['truncate']!r}")
        yarn["truncate"] = options["truncate"]
    return yarn


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No transformers progress bars ("Loading weights", "Writing model shards"): inside the training loop's bar, in
    an export."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()
