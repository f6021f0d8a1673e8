"""The recipes by name: ``fope experiment NAME`` and ``fope demo``, each a module that is a ``Recipe``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fope.experiments import ablation, baselines, cross_domain, demo, extension, retrieval, sweep
from fope.experiments.common import Plan, Settings


class Recipe(Protocol):
    """What a recipe module holds: ``NAME``, an ``Options`` dataclass (its own settings: the CLI's flags are made from
    its fields) and ``build`` (its ``Plan``; the plan carries the recipe's ``summarize``). It may also hold
    ``DEFAULTS`` (its full runs' ``Settings`` defaults), ``SETTINGS`` (the ``Settings`` fields it takes, default all)
    and ``HELP`` (its own help for them)."""

    NAME: str
    Options: type

    def build(self, settings: Settings, options: Any, out: Path) -> Plan: ...


#: Recipe name -> its module; ``demo`` is ``fope demo``, the others ``fope experiment NAME``.
RECIPES: Mapping[str, Recipe] = {
    "ablation": ablation,
    "sweep": sweep,
    "extension": extension,
    "cross-domain": cross_domain,
    "baselines": baselines,
    "retrieval": retrieval,
    "demo": demo,
}
