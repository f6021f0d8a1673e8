"""Plain-data configs: dataclasses filled from YAML/dicts with every key and type checked.

Errors name the dotted key (``train.lr``), the value and what is accepted; unknown keys are errors, not warnings.
``apply_overrides`` applies ``--set key=value`` strings (values parsed as YAML scalars).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fope.errors import FopeError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; every config writes learning rates that way, so read it as a float."""


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


def parse_yaml(text: str) -> Any:
    """YAML text parsed safely, with ``1e-3`` read as a float."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


class ConfigError(FopeError):
    """A config value or key that is not accepted."""


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
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {value!r} ({type(value).__name__})")
        return value
    if isinstance(kind, type) and not isinstance(value, kind):
        raise ConfigError(f"{key} must be {kind.__name__}; got {value!r}")
    return value


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
    """A YAML mapping from ``path``, with a clear error for a missing file or malformed YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        return {}
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
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {key} is not a section")
            node = child
        node[keys[-1]] = value
    return result
