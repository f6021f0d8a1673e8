"""A decoder-only Llama-style language model whose position encoding is a registry name (``fope.positions``).

Token embedding -> ``num_layers`` pre-norm blocks (RMSNorm, attention, RMSNorm, SwiGLU MLP) -> RMSNorm -> LM head.
There is no absolute position embedding: every attention layer reaches positions only through its position encoding,
``q, k = pe(q, k, positions)`` for rotary schemes or the additive ``pe.attention_bias(...)`` for bias schemes (ALiBi).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fope.checks import check_bool, check_float, check_int, check_seed
from fope.generation import KVCache, decode, sample_next_token
from fope.positions import (
    POSITION_ENCODINGS,
    STRUCTURAL_OPTIONS,
    PositionEncoding,
    build_position_encoding,
    resolve_positions,
)

__all__ = ["KVCache", "LMOutput", "LayerInputs", "ModelConfig", "ModelSection", "TransformerLM", "sample_next_token"]


@dataclass(kw_only=True)
class ModelSection:
    """The model as a run config writes it (its ``model`` section): ``ModelConfig``'s fields, where the three that a
    run fills in may be left unset (None): ``vocab_size`` (the tokenizer's), ``train_length`` (``train.seq_len``) and
    ``position_seed`` (``train.seed``). Types are checked when the config loads; ``ModelConfig``, the section resolved
    (``RunConfig.model_config``), checks the values."""

    vocab_size: int | None = None
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qk_norm: bool = False
    position: str = "rope"
    position_options: dict[str, Any] = field(default_factory=dict)
    train_length: int | None = None
    share_position: bool = False
    position_seed: int | None = None
    init_std: float = 0.02
    max_bias_bytes: int = 64 * 2**20


@dataclass(kw_only=True)
class ModelConfig(ModelSection):
    """Hyper-parameters of ``TransformerLM``; plain data, validated on construction, saved with ``to_dict``.

    ``mlp_ratio`` sets the SwiGLU hidden size ``mlp_ratio * d_model``. The authors' OLMo configs say ``mlp_ratio 8``
    for the same model: OLMo's fused SwiGLU projection is ``8 * d_model`` wide and its output is halved into value and
    gate, so their 8 is our 4. ``share_position`` uses one position-encoding module for every layer (for FoPE: one
    coefficient set, as in the Intern stack) instead of one per layer (the authors' per-layer coefficients).
    ``position_seed`` seeds the position encoding's random coefficients, layer ``i`` gets ``position_seed + i``;
    None draws them from the global RNG. ``max_bias_bytes`` bounds the float32 attention bias of bias schemes (ALiBi)
    built at once: queries are processed in chunks that stay under it.
    """

    vocab_size: int = field()  # required: field() drops the section's None default
    train_length: int = 512

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "train_length", "max_bias_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        if self.num_kv_heads is not None:
            check_int("num_kv_heads", self.num_kv_heads, minimum=1)
            if self.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads} "
                    "(grouped-query attention)"
                )
        if self.head_dim is not None:
            check_int("head_dim", self.head_dim, minimum=1)
        elif self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by num_heads={self.num_heads} (or set head_dim explicitly)"
            )
        for name in ("mlp_ratio", "norm_eps", "init_std"):
            check_float(name, getattr(self, name), minimum=0.0, strict=True)
        if self.mlp_hidden_dim < 1:
            raise ValueError(f"mlp_ratio * d_model must be >= 1; got {self.mlp_ratio} * {self.d_model}")
        for name in ("tie_embeddings", "qk_norm", "share_position"):
            check_bool(name, getattr(self, name))
        if not isinstance(self.position, str) or self.position not in POSITION_ENCODINGS:
            raise ValueError(f"position must be one of {sorted(POSITION_ENCODINGS)}; got {self.position!r}")
        if not isinstance(self.position_options, Mapping):
            raise TypeError(f"position_options must be a dict; got {type(self.position_options).__name__}")
        self.position_options = dict(self.position_options)
        for name in STRUCTURAL_OPTIONS:
            if name in self.position_options:
                field_name = "position_seed" if name == "seed" else name
                raise ValueError(f"position_options must not set {name!r}; set ModelConfig.{field_name} instead")
        if self.position_seed is not None and (
            isinstance(self.position_seed, bool)
            or not isinstance(self.position_seed, numbers.Integral)
            or self.position_seed < 0
        ):
            raise ValueError(f"position_seed must be None or an int >= 0; got {self.position_seed!r}")
        if self.position_seed is not None:
            self.position_seed = int(self.position_seed)  # a numpy int, as every other int field takes
            layers = 1 if self.share_position else self.num_layers
            why = f"layer i of {layers} is seeded position_seed + i, and position_seed is train.seed unless set"
            check_seed("position_seed", self.position_seed, offset=layers - 1, why=why)

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``num_kv_heads``, or ``num_heads`` (multi-head attention) when it is None."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_size(self) -> int:
        """Per-head dimension: ``head_dim``, or ``d_model // num_heads`` when it is None."""
        return self.d_model // self.num_heads if self.head_dim is None else self.head_dim

    @property
    def mlp_hidden_dim(self) -> int:
        """SwiGLU hidden size ``round(mlp_ratio * d_model)``."""
        return round(self.mlp_ratio * self.d_model)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain (JSON/YAML-friendly) dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        if not isinstance(values, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict needs a mapping of its fields; got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def build_position(config: ModelConfig, layer: int = 0) -> PositionEncoding:
    """The position-encoding module of layer ``layer`` (seeded ``position_seed + layer``)."""
    options = dict(config.position_options)
    if config.position_seed is not None:  # schemes without random state ignore it
        options["seed"] = config.position_seed + layer
    return build_position_encoding(
        config.position,
        head_dim=config.head_size,
        num_heads=config.num_heads,
        num_kv_heads=config.kv_heads,
        train_length=config.train_length,
        **options,
    )


def build_layer_positions(config: ModelConfig) -> nn.ModuleList:
    """One position-encoding module per layer, or a single one shared by all layers (``share_position``)."""
    return nn.ModuleList(
        build_position(config, layer) for layer in range(1 if config.share_position else config.num_layers)
    )


def causal_mask(num_queries: int, num_keys: int, device: torch.device) -> Tensor:
    """Boolean ``(Tq, Tk)``, True where visible: the queries are the last ``Tq`` of the ``Tk`` tokens."""
    query_index = torch.arange(num_keys - num_queries, num_keys, device=device)
    return torch.arange(num_keys, device=device) <= query_index.unsqueeze(-1)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    position: PositionEncoding,
    q_positions: Tensor,
    k_positions: Tensor,
    max_bias_bytes: int,
) -> Tensor:
    """Causal attention of queries ``(B, Hq, Tq, D)``, the last ``Tq`` tokens, over keys/values ``(B, Hkv, Tk, D)``.

    Without a bias, SDPA runs with ``is_causal`` (no cache, or a cache prefill) or no mask at all (one query), so
    flash kernels and ``enable_gqa`` apply; a block of queries after cached keys needs an offset boolean mask.
    With a bias scheme (ALiBi), queries go in chunks whose float32 bias stays under ``max_bias_bytes``; each chunk
    sees only the keys up to its last query, and the bias, built in the compute dtype, carries the causal ``-inf``.
    """
    num_heads, num_queries, num_keys = q.shape[1], q.shape[2], k.shape[2]
    grouped = k.shape[1] != num_heads
    if position.kind != "bias":
        if num_queries == num_keys or num_queries == 1:
            return F.scaled_dot_product_attention(q, k, v, is_causal=num_queries > 1, enable_gqa=grouped)
        mask = causal_mask(num_queries, num_keys, q.device)
        return F.scaled_dot_product_attention(q, *_repeat_kv(k, v, num_heads), attn_mask=mask)
    # SDPA's memory-efficient kernels take a mask but not enable_gqa: repeat the key/value heads instead.
    k, v = _repeat_kv(k, v, num_heads)
    bias_batch = max(
        q_positions.shape[0] if q_positions.dim() == 2 else 1, k_positions.shape[0] if k_positions.dim() == 2 else 1
    )
    rows = max(1, max_bias_bytes // (4 * bias_batch * num_heads * num_keys))
    past = num_keys - num_queries
    outputs = []
    for start in range(0, num_queries, rows):
        end = min(start + rows, num_queries)
        visible = past + end
        bias = position.attention_bias(q_positions[..., start:end], k_positions[..., :visible], dtype=q.dtype)
        bias.masked_fill_(~causal_mask(end - start, visible, q.device), float("-inf"))
        if bias.dim() == 3:
            bias = bias.unsqueeze(0)  # a 3-D mask sends CPU SDPA to its unfused math kernel; 4-D reaches flash
        outputs.append(
            F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, :visible], v[:, :, :visible], attn_mask=bias)
        )
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


def _repeat_kv(k: Tensor, v: Tensor, num_heads: int) -> tuple[Tensor, Tensor]:
    groups = num_heads // k.shape[1]
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


class LayerInputs(NamedTuple):
    """What a layer's attention takes besides its input: the layer's position encoding, the positions of the new
    tokens ``(T,)`` or ``(B, T)``, those of all keys (cached ones first), and the cache, if any."""

    position: PositionEncoding
    positions: Tensor
    key_positions: Tensor
    cache: KVCache | None = None


class Attention(nn.Module):
    """Multi-head / grouped-query attention: fused q/k/v projection, optional QK-norm, position encoding, SDPA."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.kv_heads, config.head_size
        self.max_bias_bytes = config.max_bias_bytes
        qkv_dim = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.qkv_proj = nn.Linear(config.d_model, qkv_dim, bias=False)
        self.out_proj = nn.Linear(self.num_heads * self.head_dim, config.d_model, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if config.qk_norm else None

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries ``(..., Hq, T, D)``, keys and values ``(..., Hkv, T, D)`` of ``x`` ``(..., T, d_model)``: the fused
        projection split into heads, QK-norm applied, before the position encoding."""
        sizes = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.num_kv_heads * self.head_dim)
        q, k, v = self.qkv_proj(x).split(sizes, dim=-1)
        q = q.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)
        k = k.unflatten(-1, (self.num_kv_heads, self.head_dim)).transpose(-3, -2)
        v = v.unflatten(-1, (self.num_kv_heads, self.head_dim)).transpose(-3, -2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def forward(self, x: Tensor, inputs: LayerInputs) -> Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x)
        q, k = inputs.position(q, k, inputs.positions)
        if inputs.cache is not None:
            k, v = inputs.cache.update(self.layer_index, k, v)
        out = attend(q, k, v, inputs.position, inputs.positions, inputs.key_positions, self.max_bias_bytes)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """``down(silu(gate) * up)``; one fused input projection whose output is ``[up, gate]`` (OLMo's order)."""

    def __init__(self, d_model: int, hidden_dim: int) -> None:
        super().__init__()
        self.up_gate_proj = nn.Linear(d_model, 2 * hidden_dim, bias=False)
        self.down_proj = nn.Linear(hidden_dim, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        up, gate = self.up_gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attention = Attention(config, layer_index)
        self.mlp_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config.d_model, config.mlp_hidden_dim)

    def forward(self, x: Tensor, inputs: LayerInputs) -> Tensor:
        x = x + self.attention(self.attention_norm(x), inputs)
        return x + self.mlp(self.mlp_norm(x))


#: The dtypes token ids may have (what ``nn.Embedding`` and ``F.cross_entropy`` take).
TOKEN_DTYPES = (torch.int64, torch.int32)


def check_token_ids(name: str, ids: Tensor, vocab_size: int, ignored: int | None = None) -> None:
    """Every id of ``ids`` in ``[0, vocab_size)`` (or equal to ``ignored``), and, with ``ignored``, not all ignored.

    Checked on CPU tensors in eager mode only, as positions are (``resolve_positions``): on an accelerator the check
    would wait for the device in every forward. There a bad id fails in the embedding's own kernel (a device-side
    assert), and targets that are all -100 give a NaN loss, as in plain PyTorch.
    """
    if ids.device.type != "cpu" or torch.compiler.is_compiling():
        return
    scored = ids if ignored is None else ids[ids != ignored]
    if ignored is not None and not scored.numel():
        raise ValueError(f"every entry of {name} is {ignored} (ignored): there is nothing to score")
    if scored.numel() and (int(scored.min()) < 0 or int(scored.max()) >= vocab_size):
        also = f" or {ignored}" if ignored is not None else ""
        raise ValueError(
            f"{name} must be token ids in [0, {vocab_size}){also} (vocab_size {vocab_size}); got ids from "
            f"{int(scored.min())} to {int(scored.max())}"
        )


class LMOutput(NamedTuple):
    """``logits`` ``(B, T, vocab_size)`` and, when targets were given, the mean float32 cross-entropy ``loss``."""

    logits: Tensor
    loss: Tensor | None = None


class TransformerLM(nn.Module):
    """Decoder-only LM with a pluggable position encoding (``config.position``) and a KV cache for generation.

    Weights start as Normal(0, ``init_std``), except the two projections that write into the residual stream
    (attention ``out_proj`` and MLP ``down_proj``), which use ``init_std / sqrt(2 * num_layers)`` (GPT-2) so the
    residual stream's variance does not grow with depth. RMSNorm weights start at one. Position-encoding modules keep
    their own initialisation (FoPE's coefficients).

    ``activation_checkpointing`` (off by default): in training mode each block's activations are recomputed in the
    backward pass (``torch.utils.checkpoint``) instead of being kept, trading compute for memory.
    """

    activation_checkpointing: bool = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig; got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, index) for index in range(config.num_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.position_modules = build_layer_positions(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise embeddings, linear and norm weights as described in the class docstring."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        residual_std = std / math.sqrt(2 * self.config.num_layers)
        for block in self.layers:
            nn.init.normal_(block.attention.out_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down_proj.weight, mean=0.0, std=residual_std)

    def position_encodings(self) -> list[PositionEncoding]:
        """Each layer's position encoding, in layer order (the same module repeated when ``share_position``)."""
        modules = list(self.position_modules)
        return [modules[0 if len(modules) == 1 else index] for index in range(self.config.num_layers)]

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Trainable and frozen parameters (tied weights counted once); optionally without the vocabulary matrices.

        ``exclude_embeddings`` leaves out the token embedding and the LM head (when not tied); frozen FoPE
        coefficients are buffers and never counted.
        """
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.embed.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.lm_head.weight.numel()
        return total

    def hidden_states(self, input_ids: Tensor, positions: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Final-norm hidden states ``(B, T, d_model)`` of token ids ``(B, T)``; the LM head turns them into logits.

        ``positions`` (``(T,)`` or ``(B, T)`` integers) default to ``arange(past, past + T)`` with ``past`` the
        number of cached tokens; a ``cache`` receives this call's keys and values.
        """
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype not in TOKEN_DTYPES:
            shape = f"{tuple(input_ids.shape)} {input_ids.dtype}" if isinstance(input_ids, Tensor) else ""
            raise ValueError(
                "input_ids must be an int64 (or int32) tensor of shape (batch, seq_len); got "
                + (shape or type(input_ids).__name__)
            )
        batch, length = input_ids.shape
        if not batch or not length:
            raise ValueError(f"input_ids must hold at least one token in at least one row; got shape {(batch, length)}")
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache must be a fope.generation.KVCache or None; got {type(cache).__name__}")
            cache.check(batch, self.config.num_layers)
        past = 0 if cache is None else cache.length
        if positions is None:
            positions = torch.arange(past, past + length, device=input_ids.device)
        else:
            positions = resolve_positions(positions, batch=batch, length=length, device=input_ids.device)
        try:
            key_positions = positions if cache is None else cache.extend(positions)
            x = self.embed(input_ids)
            recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
            for block, position in zip(self.layers, self.position_encodings(), strict=True):
                inputs = LayerInputs(position, positions, key_positions, cache)
                x = checkpoint(block, x, inputs, use_reentrant=False) if recompute else block(x, inputs)
        except BaseException:
            if cache is not None:  # a failed call leaves the cache as it was: later calls must not see its tokens
                cache.rollback(past)
            raise
        return self.norm(x)

    def forward(
        self,
        input_ids: Tensor,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        targets: Tensor | None = None,
    ) -> LMOutput:
        """Logits ``(B, T, vocab_size)``, and the mean next-token loss (float32) when ``targets`` ``(B, T)`` are given.

        Targets equal to -100 are ignored (padding, prompt tokens). See ``hidden_states`` for positions and cache.
        """
        if targets is not None:  # checked before the forward: a refused call leaves a cache as it was
            if not isinstance(targets, Tensor) or targets.dtype not in TOKEN_DTYPES:
                kind = str(targets.dtype) if isinstance(targets, Tensor) else type(targets).__name__
                raise TypeError(f"targets must be an int64 (or int32) tensor like input_ids; got {kind}")
            if not isinstance(input_ids, Tensor) or targets.shape != input_ids.shape:
                shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
                raise ValueError(f"targets must have the shape of input_ids {shape}; got {tuple(targets.shape)}")
            check_token_ids("targets", targets, self.config.vocab_size, ignored=-100)
        logits = self.lm_head(self.hidden_states(input_ids, positions, cache))
        if targets is None:
            return LMOutput(logits)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten().long(), ignore_index=-100)
        return LMOutput(logits, loss)

    def generate(self, input_ids: Tensor, max_new_tokens: int, **options: Any) -> Tensor:
        """Continue each row of ``input_ids`` ``(B, T)``; returns prompt and new tokens ``(B, T + n)``.

        One prefill pass fills a KV cache, then one token per step: ``fope.generation.decode``, whose keyword
        ``options`` these are (``temperature=0.0`` greedy, else sampled after ``top_k`` / ``top_p`` filtering with
        ``generator``; ``eos_id`` pads the rows that produced it and stops once every row has).
        """

        def step(new_tokens: Tensor, cache: KVCache | None) -> tuple[Tensor, KVCache]:
            if cache is None:
                cache = KVCache(self.config.num_layers, input_ids.shape[-1] + max_new_tokens)
            return self.lm_head(self.hidden_states(new_tokens, cache=cache)[:, -1]), cache

        return decode(step, input_ids, max_new_tokens, **options)

    def replace_position_encoding(
        self,
        name: str,
        *,
        train_length: int | None = None,
        share_position: bool | None = None,
        position_seed: int | None = None,
        **options: Any,
    ) -> None:
        """Swap every layer's position encoding for a freshly initialised ``name`` scheme; other weights are kept.

        For continued pre-training at a longer context, e.g. RoPE -> FoPE:
        ``model.replace_position_encoding("fope", train_length=1024, sigma=0.3)``. Arguments left as None keep the
        current config values; ``options`` replace ``position_options``. Rebuild the optimizer afterwards if the
        new scheme has learnable parameters.
        """
        changes: dict[str, Any] = {"position": name, "position_options": options}
        for key, value in (
            ("train_length", train_length),
            ("share_position", share_position),
            ("position_seed", position_seed),
        ):
            if value is not None:
                changes[key] = value
        config = dataclasses.replace(self.config, **changes)
        self.position_modules = build_layer_positions(config).to(self.embed.weight.device)
        self.config = config
