"""build_position_encoding: names, flat extension options, structural options, errors."""

from __future__ import annotations

import pytest
import torch

from fope.positions import POSITION_ENCODINGS, ALiBi, FoPE, NoPE, RoPE, build_position_encoding

STRUCTURE = {"head_dim": 32, "num_heads": 4, "num_kv_heads": 2, "train_length": 128}


#: The options a registered name needs besides ``STRUCTURE``.
EXTENSIONS = {
    **{name: {"factor": 2.0, "original_max_position": 128} for name in POSITION_ENCODINGS if "yarn" in name},
    **{name: {"factor": 2.0} for name in ("pi", "rope-pi", "ntk", "rope-ntk", "fope-pi")},
    "p-rope": {"drop_fraction": 0.25},
}


@pytest.mark.parametrize("name", sorted(POSITION_ENCODINGS))
def test_every_registered_name_builds_and_runs(name):
    pe = build_position_encoding(name, **STRUCTURE, **EXTENSIONS.get(name, {}))
    assert isinstance(pe, POSITION_ENCODINGS[name].cls)
    q, k = torch.randn(1, 4, 3, 32), torch.randn(1, 2, 3, 32)
    q_out, k_out = pe(q, k)
    assert q_out.shape == q.shape and k_out.shape == k.shape


@pytest.mark.parametrize("name", sorted(POSITION_ENCODINGS))
def test_q_and_k_on_different_devices_is_an_error_naming_both(name):
    pe = build_position_encoding(name, **STRUCTURE, **EXTENSIONS.get(name, {}))
    cpu, meta = torch.randn(1, 4, 3, 32), torch.empty(1, 2, 3, 32, device="meta")
    with pytest.raises(ValueError, match=r"^q and k must be on the same device; got q on cpu and k on meta$"):
        pe(cpu, meta)
    with pytest.raises(ValueError, match=r"got q on meta and k on cpu$"):
        pe(torch.empty(1, 4, 3, 32, device="meta"), cpu[:, :2])


def test_variants_set_their_options():
    assert isinstance(build_position_encoding("rope", **STRUCTURE), RoPE)
    assert isinstance(build_position_encoding("alibi", **STRUCTURE), ALiBi)
    assert isinstance(build_position_encoding("nope", **STRUCTURE), NoPE)
    no_fs = build_position_encoding("fope-no-fs", **STRUCTURE)
    assert isinstance(no_fs, FoPE) and no_fs.fourier is False
    assert build_position_encoding("fope-no-cf", **STRUCTURE).clip_floor is False
    yarn = build_position_encoding("yarn", head_dim=64, factor=16.0, original_max_position=512, beta_fast=32)
    assert yarn.scaling == {"type": "yarn", "factor": 16.0, "original_max_position": 512, "beta_fast": 32}
    assert yarn.attention_factor > 1
    fope_yarn = build_position_encoding("fope-yarn", **STRUCTURE, factor=2.0, original_max_position=128, sigma=0.1)
    assert fope_yarn.sigma == 0.1 and fope_yarn.scaling["type"] == "yarn"
    direct = build_position_encoding("rope", head_dim=64, scaling={"type": "linear", "factor": 2.0})
    torch.testing.assert_close(direct.inv_freq, RoPE(64).inv_freq / 2)


def test_errors():
    with pytest.raises(ValueError, match=r"unknown position encoding 'rotary'; known: \["):
        build_position_encoding("rotary", head_dim=32)
    with pytest.raises(TypeError, match="'rope' does not accept option 'sigma'"):
        build_position_encoding("rope", head_dim=32, sigma=0.3)
    with pytest.raises(ValueError, match="'fope-no-cf' fixes clip_floor=False; got clip_floor=True"):
        build_position_encoding("fope-no-cf", **STRUCTURE, clip_floor=True)
    with pytest.raises(TypeError, match="'yarn' sets its own scaling"):
        build_position_encoding("yarn", head_dim=32, scaling={"type": "linear", "factor": 2})
    with pytest.raises(TypeError, match=r"needs \['factor'\]"):
        build_position_encoding("pi", head_dim=32)


def test_inputs_that_failed_deep_inside_are_refused_by_name():
    """Each of these was a traceback from inside torch or Python (ZeroDivisionError, math domain error, unhashable
    type, OverflowError, a size mismatch) before it was checked."""
    from fope.model import ModelConfig
    from fope.positions.bias import alibi_slopes

    for heads in (0, 2.5):
        with pytest.raises(ValueError, match="num_heads must be an int >= 1"):
            alibi_slopes(heads)
    alibi = ALiBi(4)
    with pytest.raises(ValueError, match="must have one batch size"):
        alibi.attention_bias(torch.arange(5).expand(2, 5), torch.arange(7).expand(3, 7))
    assert alibi.attention_bias(torch.arange(5), torch.arange(7).expand(3, 7)).shape == (3, 4, 5, 7)
    for dtype in ("float16", torch.int64):  # a str was taken for a device; int64 truncated the bias
        with pytest.raises(TypeError, match=r"dtype must be a floating torch\.dtype"):
            alibi.attention_bias(torch.arange(5), torch.arange(7), dtype=dtype)
    with pytest.raises(ValueError, match="q and k need at least one head each"):
        RoPE(8)(torch.randn(1, 0, 5, 8), torch.randn(1, 0, 5, 8))
    with pytest.raises(ValueError, match=r"seed must be an int from 0 to 18446744073709551615"):
        FoPE(head_dim=8, num_heads=2, train_length=64, seed=2**70)
    with pytest.raises(ValueError, match=r"unknown position encoding \['rope'\]"):
        build_position_encoding(["rope"])
    with pytest.raises(ValueError, match=r"position must be one of .*; got \['fope'\]"):
        ModelConfig(vocab_size=32, d_model=16, num_layers=1, num_heads=2, position=["fope"])
    with pytest.raises(TypeError, match="from_dict needs a mapping of its fields; got NoneType"):
        ModelConfig.from_dict(None)


def test_q_and_k_of_two_dtypes_are_refused_on_every_path():
    """The fused kernel refuses q and k of two dtypes; the eager path returned them in two dtypes. Both refuse now."""
    q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"q and k must have one dtype; got q torch\.float32 and k torch\.float16"):
        RoPE(8)(q, k)


def test_option_lists_name_real_options_and_numpy_seeds_are_ints():
    import numpy as np

    from fope.model import ModelConfig

    with pytest.raises(TypeError, match=r"does not accept option 'foo'; accepted: \[\]"):  # was ['args', 'kwargs']
        build_position_encoding("nope", foo=1)
    config = ModelConfig(vocab_size=32, d_model=16, num_layers=1, num_heads=2, position_seed=np.int64(3))
    assert config.position_seed == 3 and type(config.position_seed) is int
