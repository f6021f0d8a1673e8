"""fope's position encodings in torchtitan's decoders (Llama 3, Qwen 3, ...), through torchtitan's own extension points.

torchtitan builds every model from a tree of ``Config`` dataclasses; each attention layer's ``rope`` field is a
``RoPE.Config`` whose ``build()`` gives the module called as ``q, k = rope(q, k, positions)``. ``Position`` is a
``RoPE`` subclass with its own ``Config``: it rotates q and k with any rotary encoding of ``fope.positions`` (FoPE and
its ablations, RoPE with PI / NTK / YaRN / ..., NoPE). Nothing of torchtitan is copied or patched:

- ``with_position(model_config, "fope", train_length=...)`` swaps the ``rope`` of every layer of a decoder config, for
  a ``config_registry`` function of your own;
- ``fope_position``, an ``@override`` factory, does the same from the command line:
  ``--override.imports 'fope.integrations.torchtitan.fope_position={"position": "fope", "train_length": 4096}'``.

State. FoPE's coefficients are persistent buffers (parameters when ``learnable``), so they are in the state dict and in
torchtitan's checkpoints, and a checkpoint load restores them; the frequencies are a non-persistent buffer that
``init_states`` recomputes (torchtitan builds on the meta device). Layer ``i`` draws its coefficients from
``seed + i``, like the lab model's ``position_seed + i``, so every rank holds the same ones whatever its RNG.
Features are computed from the position ids torchtitan passes (not from the local index), so context parallelism,
which shards positions with the sequence, gives each rank the features of its own positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from fope.extras import require
from fope.positions import POSITION_ENCODINGS, PositionEncoding, build_position_encoding
from fope.positions.registry import position_options

require("torchtitan", "fope.integrations.torchtitan")

from torch.distributed.tensor import DTensor, distribute_tensor  # noqa: E402
from torch.func import functional_call  # noqa: E402
from torchtitan.config import override  # noqa: E402
from torchtitan.models.common.decoder import Decoder  # noqa: E402
from torchtitan.models.common.rope import ComplexRoPE  # noqa: E402
from torchtitan.models.common.rope import RoPE as TitanRoPE  # noqa: E402

__all__ = ["Position", "fope_position", "with_position"]


class Position(TitanRoPE):
    """A torchtitan ``RoPE`` that applies a ``fope.positions`` rotary encoding (float32 position math).

    The encoding is rebuilt from the config (``position``, ``options``, ``train_length``, heads, ``seed``); its tensors
    live on this module under their own names (``cos_coef``, ``sin_coef``, ``inv_freq``), so torchtitan sees one
    module of its own kind and the state dict holds ``layers.{i}.attention.rope.cos_coef``.
    """

    @dataclass(kw_only=True, slots=True)
    class Config(TitanRoPE.Config):
        position: str = "fope"
        options: dict[str, Any] = field(default_factory=dict)
        train_length: int = 2048
        n_heads: int = 1
        n_kv_heads: int | None = None
        seed: int = 0

    def __init__(self, config: Config) -> None:
        nn.Module.__init__(self)  # not RoPE.__init__: there is no (positions x pairs) table to precompute
        self.config = config
        encoding = _encoding(config)
        self._encoding = (encoding,)  # a template for functional_call, not a submodule: its tensors live here
        for name, value in encoding.named_parameters():
            setattr(self, name, nn.Parameter(value.detach().clone()))
        persistent = dict(encoding.state_dict(keep_vars=True))
        for name, value in encoding.named_buffers():
            self.register_buffer(name, value.detach().clone(), persistent=name in persistent)

    def forward(self, query: Tensor, key: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Rotate ``query`` ``(B, T, Hq, D)`` and ``key`` ``(B, T, Hkv, D)`` at ``positions`` ``(B|1, T)``."""
        if positions is None:
            positions = torch.arange(query.shape[1], device=query.device)
        state = {**dict(self.named_parameters(recurse=False)), **dict(self.named_buffers(recurse=False))}
        q, k = functional_call(self._encoding[0], state, (query.transpose(1, 2), key.transpose(1, 2), positions))
        return q.transpose(1, 2), k.transpose(1, 2)

    def reset_parameters(self) -> None:
        """Learnable coefficients: the encoding's own initial values (torchtitan's ``init_states`` calls this)."""
        fresh = _encoding(self.config)
        with torch.no_grad():
            for name, value in fresh.named_parameters():
                _copy_into(getattr(self, name), value)

    def _init_self_buffers(self, *, buffer_device: torch.device | None = None) -> None:
        fresh = _encoding(self.config)
        for name, value in fresh.named_buffers():
            device = buffer_device or getattr(self, name).device
            self._buffers[name] = value.to(device)

    def _apply(self, fn: Any, recurse: bool = True) -> Position:
        # Casting the model (model.to(torch.bfloat16)) must not round frequencies or coefficients: keep float32.
        originals = {name: tensor.data for name, tensor in self._parameters.items() if tensor is not None}
        originals.update({name: tensor for name, tensor in self._buffers.items() if tensor is not None})
        super()._apply(fn, recurse)
        for name, original in originals.items():
            moved = getattr(self, name)
            if moved.dtype != original.dtype:  # a cast: keep the float32 values, on the new device
                if isinstance(moved, nn.Parameter):
                    moved.data = original.to(device=moved.device)
                else:
                    self._buffers[name] = original.to(device=moved.device)
        return self

    def extra_repr(self) -> str:
        return f"position={self.config.position!r}, {self._encoding[0].extra_repr()}"


def with_position(
    model_config: Any,
    position: str = "fope",
    *,
    train_length: int,
    seed: int = 0,
    **options: Any,
) -> Any:
    """Give every attention layer of a torchtitan decoder config the ``fope.positions`` encoding ``position``.

    Changes ``model_config`` in place and returns it. ``options`` are the encoding's (``sigma``, ``layout``,
    ``zero_pad``, ``factor``, ...); ``theta`` comes from each layer's RoPE config, and ``layout`` from its kind
    (``ComplexRoPE``: adjacent pairs, "interleaved"; ``CosSinRoPE``: "half") unless given. Layer ``i`` is seeded
    ``seed + i``. Bias schemes (ALiBi) have no place in torchtitan's rope slot and are refused.
    """
    if position not in POSITION_ENCODINGS:
        raise ValueError(f"position must be one of {sorted(POSITION_ENCODINGS)}; got {position!r}")
    if POSITION_ENCODINGS[position].cls.kind == "bias":
        raise ValueError(f"{position!r} is an attention-bias scheme: torchtitan's rope slot takes rotary ones only")
    layers = getattr(model_config, "layers", None)
    if not isinstance(layers, list) or not layers:
        raise TypeError(f"model_config must be a torchtitan decoder config with layers; got {type(model_config)}")
    for index, layer in enumerate(layers):
        attention = getattr(layer, "attention", None)
        rope = getattr(attention, "rope", None)
        if not isinstance(rope, TitanRoPE.Config) or not hasattr(attention, "n_heads"):
            raise TypeError(
                f"layer {index}'s attention ({type(attention).__name__}) has no rope and n_heads: fope replaces the "
                "RoPE of grouped-query attention (Llama 3, Qwen 3)"
            )
        if isinstance(rope, Position.Config):
            raise ValueError(f"layer {index} already uses fope's {rope.position!r}")
        accepted = position_options(position)
        derived = {"theta": rope.theta, "layout": "interleaved" if isinstance(rope, ComplexRoPE.Config) else "half"}
        shared = {f.name: getattr(rope, f.name) for f in dataclasses.fields(TitanRoPE.Config) if f.init}
        attention.rope = Position.Config(
            **shared,
            position=position,
            options={**{key: value for key, value in derived.items() if key in accepted}, **options},
            train_length=train_length,
            n_heads=attention.n_heads,
            n_kv_heads=attention.n_kv_heads,
            seed=seed + index,
        )
        _encoding(attention.rope)  # a bad option fails here, at configuration time, naming it
    return model_config


@override(target=Decoder.Config, description="fope position encoding in every attention layer")
def fope_position(config: Any, position: str = "fope", **options: Any) -> Any:
    """``--override.imports 'fope.integrations.torchtitan.fope_position={"position": ..., "train_length": ...}'``.

    The keywords are ``with_position``'s. The model config is changed in place (the trainer holds it already).
    """
    return with_position(config, position, **options)


def _encoding(config: Position.Config) -> PositionEncoding:
    """The ``fope.positions`` encoding a ``Position.Config`` describes, float32 on the CPU."""
    options = dict(config.options)
    with _float32_on_cpu():
        encoding = build_position_encoding(
            config.position,
            head_dim=config.dim,
            num_heads=config.n_heads,
            num_kv_heads=config.n_kv_heads,
            train_length=config.train_length,
            seed=config.seed,
            **options,
        )
    if encoding.kind == "bias":
        raise ValueError(f"{config.position!r} is an attention-bias scheme: torchtitan's rope slot takes rotary ones")
    return encoding


@contextmanager
def _float32_on_cpu() -> Iterator[None]:
    # torchtitan builds models under torch.device("meta") and its training dtype as the default dtype.
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu"):
            yield
    finally:
        torch.set_default_dtype(dtype)


def _copy_into(target: Tensor, value: Tensor) -> None:
    if isinstance(target, DTensor):  # sharded by FSDP2 before init_states
        value = distribute_tensor(value.to(target.device), target.device_mesh, target.placements)
    target.copy_(value.to(device=target.device, dtype=target.dtype))
