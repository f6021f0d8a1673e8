"""Run configs: the schemas of a training run (``RunConfig`` and its sections), loaded from YAML with every key checked.

Dataclasses are filled from YAML/dicts with every key, type and value checked when the config loads: errors name the
dotted key (``optim.lr``, ``model.position_options.sigma``), the value and what is accepted; unknown keys are
errors, not warnings, and so is a number that is not finite (``.nan``, ``.inf``). The ``model`` section is checked
against ``fope.model.ModelConfig`` and its position options against the position registry before any data is
prepared. ``apply_overrides`` applies ``--set key=value`` strings (values parsed as YAML scalars).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import yaml

from fope.checks import check_seed
from fope.data.corpus import check_sources
from fope.data.retrieval import check_retrieval_tasks
from fope.errors import ConfigError, not_utf8
from fope.extras import require
from fope.files import write_atomic
from fope.model import ModelConfig, ModelSection, build_position
from fope.positions.registry import position_options

T = TypeVar("T")


class DuplicateKeyError(yaml.YAMLError):
    """A key written twice in one YAML mapping (YAML would keep the last without a word)."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; every config writes learning rates that way, so read it as a float.

    A key written twice in one mapping (``train.seq_len`` twice, two ``model:`` sections) is a ``DuplicateKeyError``
    naming the key and both lines, where PyYAML would keep the last one silently."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(node, "", set())
        return super().construct_document(node)


def _refuse_duplicate_keys(node: yaml.Node, path: str, visited: set[int]) -> None:
    """Walk the node tree (each node once: aliases may repeat or nest nodes) and refuse a mapping key seen twice."""
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}[{index}]", visited)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` then a key of its own overrides, as YAML means
                continue
            if not isinstance(key, yaml.ScalarNode):  # a complex key: no config has one, the schema refuses it
                _refuse_duplicate_keys(value, path, visited)
                continue
            dotted, line = f"{path}.{key.value}" if path else str(key.value), key.start_mark.line + 1
            if key.value in lines:
                raise DuplicateKeyError(
                    f"key {dotted} appears twice, on line {lines[key.value]} and on line {line}; write each key once"
                )
            lines[key.value] = line
            _refuse_duplicate_keys(value, dotted, visited)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


#: Values (scalars, lists, mappings) a YAML document may hold once its aliases are expanded; a config holds hundreds.
MAX_YAML_VALUES = 100_000


class YAMLTooLarge(yaml.YAMLError):
    """A document whose aliases expand to more than ``MAX_YAML_VALUES`` values (an alias bomb), or refer to
    themselves."""


class _BoundedLoader(_Loader):
    """``_Loader`` that counts the values of each document with its aliases expanded, before building any of them:
    a 1 KB "billion laughs" file is refused at once instead of filling memory."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        check_expansion(node)
        return node


def check_expansion(node: yaml.Node, limit: int = MAX_YAML_VALUES) -> int:
    """The values of a composed YAML document with its aliases expanded (an alias counts every value it stands for);
    ``YAMLTooLarge`` past ``limit`` or for an alias inside its own anchor. Each node is counted once."""
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(item: yaml.Node) -> int:
        key = id(item)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise YAMLTooLarge(
                f"the alias at line {item.start_mark.line + 1} refers to the value that holds it: a cycle"
            )
        pending.add(key)
        if isinstance(item, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in item.value)
        elif isinstance(item, yaml.MappingNode):
            total = 1 + sum(size(name) + size(child) for name, child in item.value)
        else:
            total = 1
        if total > limit:
            raise YAMLTooLarge(
                f"its aliases expand to more than {limit} values (an alias bomb?); a config is refused past that"
            )
        pending.discard(key)
        sizes[key] = total
        return total

    return size(node)


def parse_yaml(text: str) -> Any:
    """YAML text parsed safely, with ``1e-3`` read as a float and aliases expanding to at most ``MAX_YAML_VALUES``."""
    return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no arbitrary objects


__all__ = [
    "ConfigError",
    "DataConfig",
    "DuplicateKeyError",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "TransformersConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_yaml",
    "save_config",
    "to_dict",
]


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return " | ".join(repr(v) for v in typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(kind))
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in typing.get_args(kind))}]"
    return "null" if kind is type(None) else getattr(kind, "__name__", str(kind))


def _convert(value: Any, kind: Any, key: str) -> Any:
    """``value`` checked against the annotation ``kind`` (ints are accepted where floats are)."""
    origin = typing.get_origin(kind)
    if kind is Any:
        check_finite(value, key)
        return value
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of {kind.__name__} fields; got {value!r}")
        return from_dict(kind, value, prefix=f"{key}.")
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{key} must be one of {list(typing.get_args(kind))}; got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]) and isinstance(value, Mapping):
            return _convert(value, options[0], key)  # an optional section: its own error names the nested key
        for option in typing.get_args(kind):
            with contextlib.suppress(ConfigError):
                return _convert(value, option, key)
        raise ConfigError(f"{key} must be {_type_name(kind)}; got {value!r} ({type(value).__name__})")
    if kind is type(None):
        if value is not None:
            raise ConfigError(f"{key} must be null; got {value!r}")
        return None
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list; got {value!r}")
        args = typing.get_args(kind)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must be a list of {len(args)} items; got {value!r}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping; got {value!r}")
        key_type, value_type = typing.get_args(kind) or (Any, Any)
        return {_convert(k, key_type, key): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false; got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer; got {value!r} ({type(value).__name__})")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number; got {value!r} ({type(value).__name__})")
        check_finite(value, key)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {value!r} ({type(value).__name__})")
        return value
    if isinstance(kind, type) and not isinstance(value, kind):
        raise ConfigError(f"{key} must be {kind.__name__}; got {value!r}")
    return value


def check_finite(value: Any, key: str) -> None:
    """Every number in ``value`` (nested lists and mappings too) is finite: ``.nan`` or ``.inf`` is an error."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number; got {value!r}")
    if isinstance(value, Mapping):
        for name, item in value.items():
            check_finite(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{key}[{index}]")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """An instance of the dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping; got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; accepted keys here: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        if fields[name].metadata.get("empty_is_unset") and value == {}:  # ``model: {}``, written before it was typed
            value = None
        kwargs[name] = _convert(value, hints[name], f"{prefix}{name}")
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing config key {prefix}{missing[0]}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:  # the dataclass's own checks (__post_init__)
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from error


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain data (tuples become lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with a clear error for a missing or empty file, malformed YAML or a key written
    twice."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{not_utf8(path, error)}: a config file is YAML") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        raise ConfigError(
            f"{path} is empty (or only comments); a config file holds a mapping with name, model, data, optim and train"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level; got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with ``key.sub=value`` overrides applied (values parsed as YAML: ``1e-3``, ``true``...)."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"--set expects key=value; got {override!r}")
        dotted, raw = override.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError(f"--set key must be dotted names like train.lr; got {dotted!r}")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {dotted}: cannot parse value {raw!r}: {error}") from error
        node = result
        for key in keys[:-1]:
            if node.get(key) is None:  # a section left out, or null (a transformers run's saved model section)
                node[key] = {}
            child = node[key]
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {key} is not a section")
            node = child
        node[keys[-1]] = value
    return result


# ------------------------------------------------------------------ the run config


@dataclass
class DataConfig:
    """Where the training text comes from and how it is tokenized (see ``fope.data.prepare_data``).

    ``sources`` keeps only the documents of those sources (e.g. ``[shakespeare]`` of the default corpus); None: all.
    ``passkey_fraction`` of the training rows end with a retrieval example, each of a task drawn uniformly from
    ``retrieval_tasks`` (``fope.data.retrieval.TASK_NAMES``).
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
    retrieval_tasks: list[str] = field(default_factory=lambda: ["passkey"])

    def __post_init__(self) -> None:
        if not 0.0 <= self.passkey_fraction < 1.0:
            raise ValueError(f"passkey_fraction must be in [0, 1); got {self.passkey_fraction}")
        check_retrieval_tasks(self.retrieval_tasks)
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
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1) (AdamW's); got {list(self.betas)}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0; got {self.eps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 (the largest global gradient norm); got {self.grad_clip}")


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
    #: With ``init_from``: position tensors whose shape changed (FoPE's coefficients when the new length keeps more
    #: frequencies) start "fresh", or "expand" keeps the source's overlap (the authors' ``len_extra_fourier_expand``).
    init_positions: Literal["fresh", "expand"] = "fresh"
    #: Under torchrun: "ddp" replicates the model on every rank, "fsdp" shards it (FSDP2, sharded checkpoints).
    parallel: Literal["ddp", "fsdp"] = "ddp"
    #: Recompute each block's activations in the backward pass instead of keeping them (less memory, more time).
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.init_positions not in ("fresh", "expand"):
            raise ValueError(f"init_positions must be 'fresh' or 'expand'; got {self.init_positions!r}")
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
        if self.eval_batches < 0:
            raise ValueError(f"eval_batches must be >= 0; got {self.eval_batches}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or null: torch's default); got {self.threads}")
        check_seed("seed", self.seed)


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
        require("transformers", "a run config with a transformers section")
        from fope.integrations.hf_lm import check_position_options

        check_position_options(self.position, self.position_options)
        if self.train_length is not None and self.train_length < 1:
            raise ValueError(f"train_length must be >= 1; got {self.train_length}")


#: Characters a run's ``name`` may hold: it labels the run in progress bars, report tables, legends and file names.
MAX_NAME_LENGTH = 100


def exclusive_sections(path: Any) -> str:
    return f"model and transformers are exclusive: transformers trains the model in {path!r}, so leave model out"


@dataclass
class RunConfig:
    """A whole training run. ``model`` is a ``ModelSection`` (``ModelConfig``'s fields): ``vocab_size`` defaults to the
    tokenizer's and ``train_length`` to ``train.seq_len``; ``position_seed`` defaults to ``train.seed``.

    ``transformers`` instead trains a local transformers model (then ``model`` is left out); the data is tokenized
    with that model's tokenizer unless ``data.tokenizer`` names another.
    """

    model: ModelSection | None = field(default=None, metadata={"empty_is_unset": True})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None
    transformers: TransformersConfig | None = None

    def __post_init__(self) -> None:
        if self.name is not None and len(self.name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"name must be at most {MAX_NAME_LENGTH} characters (it labels the run in tables, plots and file "
                f"names); got {len(self.name)} characters: {self.name[:40]!r}..."
            )
        if self.transformers is None:
            if self.model is None:
                raise ValueError("set either model (a fope TransformerLM) or transformers (a local transformers model)")
            return
        if self.model is not None:
            raise ValueError(exclusive_sections(self.transformers.path))
        for key, value, instead in (
            ("parallel", self.train.parallel == "fsdp", "train.parallel=ddp"),
            ("activation_checkpointing", self.train.activation_checkpointing, "transformers.gradient_checkpointing"),
        ):
            if value:
                raise ValueError(
                    f"train.{key} applies to fope's own model; a transformers model trains with {instead} here "
                    "(or under Hugging Face's Trainer, docs/transformers.md)"
                )
        if self.train.init_from is not None:
            raise ValueError(
                "train.init_from starts a fope model from a run; with transformers the model starts from "
                f"transformers.path ({self.transformers.path!r}): remove train.init_from"
            )
        if self.data.tokenizer is None:
            self.data.tokenizer = self.transformers.path

    def model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The ``ModelConfig`` with the defaults above filled in, every field and position option checked.

        Errors name the ``model.`` key: a field of the wrong type, an option the position encoding does not take, a
        value it refuses (``model.position_options.sigma: sigma must be >= 0.0; got -1.0``).
        """
        if self.model is None:
            raise ConfigError(
                f"this run trains the transformers model in {self.transformers.path!r}: it has no model section"
            )
        values = dataclasses.asdict(self.model)
        if values.get("vocab_size") is None:
            if vocab_size is None:
                raise ConfigError("model.vocab_size is not set and no tokenizer is known to take it from")
            values["vocab_size"] = vocab_size
        if values.get("train_length") is None:
            values["train_length"] = self.train.seq_len
        if values.get("position_seed") is None:
            values["position_seed"] = self.train.seed
        config = from_dict(ModelConfig, values, prefix="model.")
        check_position(config)
        return config


def check_position(model: ModelConfig) -> None:
    """``model.position_options`` are options of ``model.position`` and values it accepts (built once to check)."""
    name, options = model.position, model.position_options
    accepted = position_options(name)
    for key, value in options.items():
        if key not in accepted:
            raise ConfigError(
                f"model.position_options.{key}={value!r}: position {name!r} takes no option {key!r}; "
                f"accepted: {accepted}"
            )
    with torch.random.fork_rng(devices=[]):  # a position_seed of None draws from the global RNG: leave it untouched
        try:
            build_position(model)
        except (TypeError, ValueError) as error:
            first = str(error).split(" ", 1)[0]
            key = f"model.position_options.{first}" if first in options else f"model (position {name!r})"
            raise ConfigError(f"{key}: {error}") from error


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested config sections (``train.seed``); ``*options`` mappings stay whole values."""
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


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict[str, Any] | None = None
) -> RunConfig:
    """A ``RunConfig`` from a YAML file (or ``base`` data) with ``key=value`` overrides, fully validated."""
    data = load_yaml(path) if path is not None else dict(base or {})
    data = apply_overrides(data, list(overrides))
    transformers = data.get("transformers")
    if data.get("model") and isinstance(transformers, Mapping) and transformers.get("path"):  # before the section's
        raise ConfigError(exclusive_sections(transformers["path"]))  # own errors (a missing model.num_layers)
    config = from_dict(RunConfig, data)
    if config.transformers is not None:
        from fope.integrations.hf_lm import check_model_directory

        try:
            check_model_directory(config.transformers.path)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    else:
        config.model_config(vocab_size=config.model.vocab_size or 2**16)  # validate the model section now
    return config


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_atomic(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False).encode())
