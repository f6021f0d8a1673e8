"""Names for configs: ``build_position_encoding("fope", head_dim=64, num_heads=8, train_length=512)``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fope.positions.base import PositionEncoding
from fope.positions.bias import ALiBi, NoPE
from fope.positions.fourier import FoPE
from fope.positions.frequencies import SCALING_SCHEMES, _scheme_options
from fope.positions.rotary import RoPE

__all__ = ["POSITION_ENCODINGS", "STRUCTURAL_OPTIONS", "build_position_encoding", "position_options"]

#: Options a model passes to every scheme; a scheme that has no use for one ignores it.
STRUCTURAL_OPTIONS = ("head_dim", "num_heads", "num_kv_heads", "train_length", "seed")


@dataclass(frozen=True)
class Variant:
    """A named configuration: a class, options it fixes, and (for extension variants) a frequency scheme."""

    cls: type[PositionEncoding]
    description: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    scaling_type: str | None = None


POSITION_ENCODINGS: dict[str, Variant] = {
    "rope": Variant(RoPE, "RoPE (Su et al.)"),
    "pi": Variant(RoPE, "RoPE with linear position interpolation (needs factor)", scaling_type="linear"),
    "ntk": Variant(RoPE, "RoPE with NTK-aware base scaling (needs factor)", scaling_type="ntk"),
    "yarn": Variant(RoPE, "RoPE with YaRN (needs factor, original_max_position)", scaling_type="yarn"),
    "p-rope": Variant(RoPE, "p-RoPE: lowest frequencies dropped (needs drop_fraction)", scaling_type="p-rope"),
    "hope": Variant(RoPE, "HoPE-style: frequencies below 2*pi/train_length made position-free", scaling_type="floor"),
    "cope": Variant(RoPE, "CoPE (Li et al.): lowest frequencies softly clipped (cosine taper)", scaling_type="cope"),
    "hardclip": Variant(RoPE, "HardClip: lowest frequencies set to zero (CoPE's baseline)", scaling_type="hardclip"),
    "fope": Variant(FoPE, "FoPE (Hua et al.): Fourier series + floor clipping"),
    "fope-no-fs": Variant(FoPE, "FoPE ablation without the Fourier series (floor clipping only)", {"fourier": False}),
    "fope-no-cf": Variant(FoPE, "FoPE ablation without floor clipping", {"clip_floor": False}),
    "fope-pi": Variant(FoPE, "FoPE with position interpolation of its kept frequencies", scaling_type="linear"),
    "fope-yarn": Variant(FoPE, "FoPE with YaRN on its kept frequencies", scaling_type="yarn"),
    "alibi": Variant(ALiBi, "ALiBi linear attention biases (Press et al.)"),
    "nope": Variant(NoPE, "no position encoding"),
}
for _alias, _target in (("rope-pi", "pi"), ("rope-ntk", "ntk"), ("rope-yarn", "yarn")):
    POSITION_ENCODINGS[_alias] = POSITION_ENCODINGS[_target]


def position_options(name: str) -> list[str]:
    """The option names a registered encoding takes besides the structural ones (an extension variant's flat)."""
    if not isinstance(name, str) or name not in POSITION_ENCODINGS:
        raise ValueError(f"unknown position encoding {name!r}; known: {sorted(POSITION_ENCODINGS)}")
    variant = POSITION_ENCODINGS[name]
    accepted = set(inspect.signature(variant.cls.__init__).parameters) - {"self", *STRUCTURAL_OPTIONS}
    if variant.scaling_type is not None:
        accepted.discard("scaling")
        accepted |= _scheme_options(SCALING_SCHEMES[variant.scaling_type])[0]
    return sorted(accepted)


def build_position_encoding(name: str, **options: Any) -> PositionEncoding:
    """Build a registered position encoding by name.

    Structural options (``head_dim``, ``num_heads``, ``num_kv_heads``, ``train_length``, ``seed``) are passed to schemes
    that use them and ignored by the others; any other option must be one the scheme accepts. Extension variants take
    their scheme's options flat: ``build_position_encoding("yarn", head_dim=64, factor=4, original_max_position=512)``.
    """
    if not isinstance(name, str) or name not in POSITION_ENCODINGS:
        raise ValueError(f"unknown position encoding {name!r}; known: {sorted(POSITION_ENCODINGS)}")
    variant = POSITION_ENCODINGS[name]
    parameters = inspect.signature(variant.cls.__init__).parameters.values()
    accepted = [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    kwargs: dict[str, Any] = dict(variant.fixed)
    if variant.scaling_type is not None:
        if options.get("scaling") is not None:
            raise TypeError(
                f"{name!r} sets its own scaling; pass its options flat or use the base scheme with scaling="
            )
        options.pop("scaling", None)
        scheme_options, _ = _scheme_options(SCALING_SCHEMES[variant.scaling_type])
        kwargs["scaling"] = {"type": variant.scaling_type}
        kwargs["scaling"].update({key: options.pop(key) for key in list(options) if key in scheme_options})
    for key, value in options.items():
        if key in variant.fixed and value != variant.fixed[key]:
            raise ValueError(f"{name!r} fixes {key}={variant.fixed[key]!r}; got {key}={value!r}")
        if key in accepted:
            kwargs[key] = value
        elif key not in STRUCTURAL_OPTIONS:
            extra = f" (plus its {variant.scaling_type} options)" if variant.scaling_type else ""
            raise TypeError(f"position encoding {name!r} does not accept option {key!r}; accepted: {accepted}{extra}")
    return variant.cls(**kwargs)
