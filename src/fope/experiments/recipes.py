"""The recipes by name: ``fope experiment NAME`` and ``fope demo``, each a module (``Options``, ``build``,
``summarize``)."""

from __future__ import annotations

from types import ModuleType

from fope.experiments import ablation, baselines, cross_domain, demo, extension, retrieval, sweep

#: Recipe name -> its module; ``demo`` is ``fope demo``, the others ``fope experiment NAME``.
RECIPES: dict[str, ModuleType] = {
    "ablation": ablation,
    "sweep": sweep,
    "extension": extension,
    "cross-domain": cross_domain,
    "baselines": baselines,
    "retrieval": retrieval,
    "demo": demo,
}
