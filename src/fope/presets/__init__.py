"""The shipped run presets, package data loadable by name: ``tiny/<encoding>`` and ``paper/<size>``.

A preset ``GROUP/NAME`` is ``GROUP/base.yaml`` merged with ``GROUP/NAME.yaml`` (``merge``: sections merge key by key,
a ``*options`` mapping is replaced whole); its ``name`` is ``NAME`` unless the file sets one. The tiny presets differ
only in their position encoding, the paper presets in model size and FoPE's sigma. ``fope train --preset tiny/fope``,
``load_preset("tiny/fope")``, or ``preset_data`` for the mapping before validation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from fope.config import ConfigError, RunConfig, load_config, parse_yaml

GROUPS = ("tiny", "paper")
BASE = "base"


def merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``delta`` merged in: nested sections merge, ``*options`` mappings and others replace."""
    result = copy.deepcopy(dict(base))
    for key, value in delta.items():
        old = result.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping) and not key.endswith("options"):
            result[key] = merge(old, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _read(group: str, stem: str) -> dict[str, Any]:
    data = parse_yaml((files(__name__) / group / f"{stem}.yaml").read_text(encoding="utf-8"))
    return data or {}


def preset_names(group: str | None = None) -> list[str]:
    """Every preset name (``tiny/fope``, ``paper/60m``, ...), or those of one group."""
    names = []
    for name in GROUPS if group is None else (group,):
        folder = files(__name__) / name
        stems = [entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")]
        names += [f"{name}/{stem}" for stem in sorted(stems) if stem != BASE]
    return names


def preset_data(name: str) -> dict[str, Any]:
    """The merged mapping of preset ``name`` (``tiny/fope``), before any override or validation."""
    group, _, stem = name.partition("/")
    if group not in GROUPS or f"{group}/{stem}" not in preset_names(group):
        raise ConfigError(f"no preset {name!r}; available: {preset_names()}")
    data = merge(_read(group, BASE), _read(group, stem))
    data.setdefault("name", stem)
    return data


def load_preset(name: str, overrides: Sequence[str] = ()) -> RunConfig:
    """Preset ``name`` with ``key=value`` overrides as a validated ``RunConfig`` (as ``fope train --preset``)."""
    return load_config(base=preset_data(name), overrides=list(overrides))
