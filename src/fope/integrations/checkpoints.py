"""FoPE checkpoints of other code: the authors' OLMo fork and the Intern stack (``docs/fope-spec.md`` section 7).

Each loader maps the other code's config keys to ``fope.FoPE`` options, builds equivalent modules and loads their
coefficients; a shape or a setting that ``FoPE`` does not reproduce is an error, never an approximation. The code
lives in ``fope.integrations.olmo_fork`` (the OLMo fork), ``fope.integrations.intern`` (Intern load and export) and
``fope.integrations.weights`` (reading tensors and configs); this module gathers their public names.
"""

from __future__ import annotations

from fope.integrations.intern import export_intern, intern_fope_options, load_intern_fope
from fope.integrations.olmo_fork import OLMO_DEFAULTS, OLMO_NEUTRAL, load_olmo_fope, olmo_fope_options
from fope.integrations.weights import Source, fope_modules, named_fope_modules, read_config, read_tensors

__all__ = [
    "OLMO_DEFAULTS",
    "OLMO_NEUTRAL",
    "Source",
    "export_intern",
    "fope_modules",
    "intern_fope_options",
    "load_intern_fope",
    "load_olmo_fope",
    "named_fope_modules",
    "olmo_fope_options",
    "read_config",
    "read_tensors",
]
