"""External FoPE layouts: the authors' OLMo fork and the Intern stack load into FoPE modules that match the spec's
formula (the independent float64 reference) with their coefficients; bad shapes and settings are clear errors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import yaml
from safetensors.torch import save_file

from fope.integrations.checkpoints import (
    export_intern,
    intern_fope_options,
    load_intern_fope,
    load_olmo_fope,
    olmo_fope_options,
    read_tensors,
)
from fope.positions import FoPE
from tests.positions.reference import fope_reference, frequencies, kept_count, olmo_fourier_frequencies

HEADS, HEAD_DIM, LENGTH = 4, 32, 1024
OLMO = {
    "d_model": HEADS * HEAD_DIM,
    "n_heads": HEADS,
    "n_layers": 2,
    "max_sequence_length": LENGTH,
    "rope_theta": 10000.0,
    "fourier": True,
    "fourier_dim": 0,
    "fourier_init": "eye_xavier_norm",
    "fourier_init_norm_gain": 0.3,
    "fourier_separate_basis": True,
    "fourier_separate_head": True,
    "fourier_learnable": False,
    "fourier_norm": False,
    "fourier_ignore_zero": True,
    "rope_clamp_floor_freq": True,
    "rope_clamp_floor_to_zero": True,
}
KEPT = kept_count(HEAD_DIM, 10000.0, LENGTH)  # 9 of 16 frequencies at or above 2*pi/1024
OFFICIAL_DIM = min(KEPT, HEAD_DIM // 4)  # 8


def random_coefficients(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def olmo_state(heads: int = HEADS, kept: int = KEPT, output_dim: int = OFFICIAL_DIM) -> dict[str, torch.Tensor]:
    state = {"transformer.wte.weight": torch.zeros(8, OLMO["d_model"])}
    for block in range(OLMO["n_layers"]):
        for index, kind in enumerate(("cos", "sin")):
            shape = (heads, kept, output_dim) if heads else (kept, output_dim)
            state[f"transformer.blocks.{block}.pos_emb.{kind}_coef"] = random_coefficients(
                *shape, seed=10 * block + index
            )
    return state


def assert_matches_formula(
    module: FoPE, cos_coef, sin_coef, *, q_heads: int, kv_heads: int, theta: float = 1e4, series=None
):
    """The module's output equals the spec's formula evaluated with these raw coefficients (and ``series``, the
    frequencies of the series terms, default the first K RoPE frequencies), with no attention temperature."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, q_heads, 5, module.head_dim, generator=generator)
    k = torch.randn(1, kv_heads, 5, module.head_dim, generator=generator)
    positions = torch.tensor([[0, 3, 17, 200, 1000]])
    if cos_coef.dim() == 2:
        cos_coef, sin_coef = cos_coef.unsqueeze(0), sin_coef.unsqueeze(0)
    reference = {
        "cos_coef": cos_coef,
        "sin_coef": sin_coef,
        "kept_frequencies": series
        if series is not None
        else frequencies(module.rotary_dim, theta)[: cos_coef.shape[1]],
        "rotary_dim": module.rotary_dim,
        "zero_pad": "official",
        "layout": "half",
    }
    q_out, k_out = module(q, k, positions)
    torch.testing.assert_close(q_out.double(), fope_reference(q, positions, **reference), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(k_out.double(), fope_reference(k, positions, **reference), atol=1e-4, rtol=1e-4)


def test_olmo_config_keys_map_to_fope_options():
    options = olmo_fope_options(OLMO)
    assert options["head_dim"] == HEAD_DIM and options["num_heads"] == options["num_kv_heads"] == HEADS
    assert options["train_length"] == LENGTH and options["sigma"] == 0.3 and options["clip_floor"]
    assert options["output_dim"] == "official" and not options["share_heads"] and not options["learnable"]
    assert "scaling" not in options and "frequency_dim" not in options and "num_inv_freq" not in options
    small = olmo_fope_options({**OLMO, "fourier_dim": 4, "fourier_learnable": True})  # <= head_dim: ignored
    assert small["output_dim"] == "official" and "frequency_dim" not in small and small["learnable"]
    assert olmo_fope_options({**OLMO, "fourier_dim": 64})["frequency_dim"] == 64  # not the output dim
    assert olmo_fope_options({**OLMO, "fourier_ignore_zero": False})["keep_zeroed"]
    assert not olmo_fope_options({**OLMO, "rope_clamp_floor_freq": False})["clip_floor"]
    yarn = olmo_fope_options({**OLMO, **OLMO_YARN})["scaling"]
    assert yarn == {
        "type": "yarn",
        "factor": 16.0,
        "original_max_position": 512,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "truncate": True,
        "temperature": False,
    }


def test_olmo_blocks_load_into_modules_matching_the_formula():
    state = olmo_state()
    modules = load_olmo_fope(OLMO, state)
    assert len(modules) == 2
    for block, module in enumerate(modules):
        cos_coef = state[f"transformer.blocks.{block}.pos_emb.cos_coef"]
        sin_coef = state[f"transformer.blocks.{block}.pos_emb.sin_coef"]
        assert torch.equal(module.cos_coef, cos_coef) and torch.equal(module.sin_coef, sin_coef)
        assert_matches_formula(module, cos_coef, sin_coef, q_heads=HEADS, kv_heads=HEADS)


def test_olmo_coefficients_shared_by_heads_may_omit_the_head_axis():
    state = olmo_state(heads=0)
    (first, _) = load_olmo_fope({**OLMO, "fourier_separate_head": False}, state)
    assert first.share_heads and tuple(first.cos_coef.shape) == (1, KEPT, OFFICIAL_DIM)
    cos_coef, sin_coef = (state[f"transformer.blocks.0.pos_emb.{kind}_coef"] for kind in ("cos", "sin"))
    assert_matches_formula(first, cos_coef, sin_coef, q_heads=HEADS, kv_heads=HEADS)


def test_olmo_checkpoint_files_and_a_yaml_config(tmp_path):
    state = olmo_state()
    save_file(state, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": OLMO, "optimizer": {"lr": 6e-4}}))
    expected = load_olmo_fope(OLMO, state)
    for weights in (tmp_path / "model.safetensors", tmp_path / "model.pt", tmp_path):
        loaded = load_olmo_fope(tmp_path / "config.yaml", weights)
        assert all(torch.equal(a.sin_coef, b.sin_coef) for a, b in zip(loaded, expected, strict=True))


def test_a_yaml_config_is_read_as_fope_reads_its_own(tmp_path):
    from tests.test_config import billion_laughs

    state = olmo_state()
    (tmp_path / "bomb.yaml").write_text(billion_laughs())  # 9**9 values once expanded: refused, not minutes of work
    with pytest.raises(ValueError, match=r"bomb\.yaml: .*aliases expand to more than 100000 values"):
        load_olmo_fope(tmp_path / "bomb.yaml", state)
    (tmp_path / "twice.yaml").write_text("model:\n  d_model: 64\nmodel:\n  d_model: 128\n")
    with pytest.raises(ValueError, match=r"twice\.yaml: .*model"):
        load_olmo_fope(tmp_path / "twice.yaml", state)


# The authors' YaRN runs (configs/c4/length-1024/ce-extra/x+yarn/*-yarn_after.yaml): train at 1024 from 512.
OLMO_YARN = {"len_extra": True, "len_extra_orig_length": 512, "len_extra_type": "YARN", "len_extra_yarn_scale": 16}


@pytest.mark.parametrize(
    "change",
    [
        {},
        OLMO_YARN,
        {**OLMO_YARN, "len_extra_before_clamp": True},
        {**OLMO_YARN, "len_extra_yarn_beta_fast": 16.0, "len_extra_yarn_beta_slow": 2.0, "len_extra_yarn_scale": 4},
        {"len_extra": True, "len_extra_orig_length": 256, "len_extra_type": "PI"},
        {"len_extra": True, "len_extra_orig_length": 256, "len_extra_type": "PI", "len_extra_before_clamp": True},
        {"rope_floor_freq_ratio": 0.5},
        {"rope_floor_freq_ratio": 2.0, **OLMO_YARN, "len_extra_before_clamp": True},
        {"rope_floor_freq_ratio": 0.0},
        {"fourier_dim": 64},
        {"fourier_dim": 16},  # below head_dim: ignored
        {"fourier_ignore_zero": False},
        {"fourier_ignore_zero": False, "fourier_dim": 48, **OLMO_YARN},
        {"rope_clamp_floor_freq": False},
        {"rope_clamp_floor_freq": False, "fourier_ignore_zero": False},
        {"fourier_separate_head": False, "fourier_dim": 64},
        {"rope_clamp_upper_freq": True, "rope_upper_freq_ratio": 1.0},  # pi: above every frequency, neutral
        {"rope_full_precision": False, "len_extra_fourier_expand": True, "fourier_init": "eye"},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()) or "paper",
)
def test_olmo_settings_load_into_modules_matching_the_authors_code(change):
    """Series frequencies and coefficient shapes come from a transcription of the authors' get_inv_freq /
    FourierEmbedding (tests/positions/reference.py), never from fope; the module must equal that formula."""
    config = {**OLMO, **change}
    series, input_dim, output_dim = olmo_fourier_frequencies(config)
    shared = not config["fourier_separate_head"]
    state = olmo_state(heads=0 if shared else HEADS, kept=input_dim, output_dim=output_dim)
    modules = load_olmo_fope(config, state)
    assert len(modules) == 2
    for block, module in enumerate(modules):
        assert module.attention_factor == 1.0  # the authors' YaRN has no attention temperature
        cos_coef = state[f"transformer.blocks.{block}.pos_emb.cos_coef"]
        sin_coef = state[f"transformer.blocks.{block}.pos_emb.sin_coef"]
        assert_matches_formula(module, cos_coef, sin_coef, q_heads=HEADS, kv_heads=HEADS, series=series)


def test_olmo_the_authors_yarn_config_itself():
    """The model section of their OLMo-60M ...-yarn_after.yaml: head_dim 64, trained at 1024 with YaRN from 512."""
    config = {
        "d_model": 512,
        "n_heads": 8,
        "n_layers": 1,
        "alibi": False,
        "rope": True,
        "rope_clamp_floor_freq": True,
        "rope_clamp_floor_to_zero": True,
        "fourier": True,
        "fourier_init": "eye_xavier_norm",
        "fourier_init_norm_gain": 0.3,
        "fourier_separate_basis": True,
        "fourier_separate_head": True,
        "fourier_ignore_zero": True,
        "len_extra": True,
        "len_extra_orig_length": 512,
        "len_extra_type": "YARN",
        "len_extra_yarn_scale": 16,
        "flash_attention": True,
        "max_sequence_length": 1024,
    }
    series, input_dim, output_dim = olmo_fourier_frequencies(config)
    assert (input_dim, output_dim) == (kept_count(64, 1e4, 1024), 16) == (18, 16)
    state = {
        f"blocks.0.pos_emb.{kind}_coef": random_coefficients(8, input_dim, output_dim, seed=index)
        for index, kind in enumerate(("cos", "sin"))
    }
    (module,) = load_olmo_fope(config, state)
    torch.testing.assert_close(module.inv_freq.double(), torch.tensor(series, dtype=torch.float64), rtol=1e-6, atol=0)
    assert module.attention_factor == 1.0
    assert_matches_formula(
        module,
        state["blocks.0.pos_emb.cos_coef"],
        state["blocks.0.pos_emb.sin_coef"],
        q_heads=8,
        kv_heads=8,
        series=series,
    )


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"fourier_norm": True}, "fourier_norm=True"),
        ({"fourier_separate_basis": False}, "fourier_separate_basis=False"),
        ({"rope_clamp_floor_to_zero": False}, "rope_clamp_floor_to_zero=False"),
        ({"pos_emb": False}, "pos_emb=False"),
        ({"alibi": True}, "alibi=True"),
        ({"rope": False}, "rope=False"),
        ({"rope_init_distribution": "linear"}, "rope_init_distribution='linear'"),
        ({"rope_no_pos": True}, "rope_no_pos=True"),
        ({"rope_learnable": True}, "rope_learnable=True"),
        ({"rope_include_neg_freq": True}, "rope_include_neg_freq=True"),
        ({"rope_init_floor_freq": 0.1}, "rope_init_floor_freq=0.1"),
        ({"rope_init_upper_freq": 0.5}, "rope_init_upper_freq=0.5"),
        ({"rope_zero_freq_ratio": 0.25}, "rope_zero_freq_ratio=0.25"),
        ({"rope_clamp_to_linear": True}, "rope_clamp_to_linear=True"),
        ({"rope_clamp_upper_freq": True, "rope_upper_freq_ratio": 0.1}, "rope_clamp_upper_freq=True"),
        ({"rope_clamp_upper_freq": True, "rope_clamp_upper_to_zero": False}, "rope_clamp_upper_freq=True"),
        ({"rope_floor_freq_ratio": -1.0}, "rope_floor_freq_ratio=-1.0"),
        ({**OLMO_YARN, "len_extra_type": "CLEX"}, "len_extra_type='CLEX'"),
        ({**OLMO_YARN, "len_extra_orig_length": 0}, "len_extra_orig_length=0"),
        ({**OLMO_YARN, "len_extra_yarn_factor": 2.0}, "len_extra_yarn_factor=2.0"),
    ],
)
def test_olmo_settings_that_change_the_math_are_refused_by_name(change, fragment):
    with pytest.raises(ValueError) as info:
        load_olmo_fope({**OLMO, **change}, olmo_state())
    message = str(info.value)
    assert fragment in message and "accepted:" in message and "\n" not in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fourier": False}, "fourier=False"),
        ({"n_kv_heads": 2}, "n_kv_heads=2 < n_heads=4"),
        ({"rope_floor_freq_ratio": 1000.0}, "keeps no frequency"),
    ],
)
def test_olmo_settings_fope_does_not_implement_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        load_olmo_fope({**OLMO, **change}, olmo_state())


def test_olmo_shapes_that_disagree_with_the_config_are_rejected():
    assert (KEPT, OFFICIAL_DIM) == (9, 8)
    with pytest.raises(ValueError, match=r"\(4, 10, 8\).*\(4, 9, 8\).*K=9 of 16 frequencies kept"):
        load_olmo_fope(OLMO, olmo_state(kept=KEPT + 1))
    with pytest.raises(ValueError, match=r"d_out=8"):
        load_olmo_fope(OLMO, olmo_state(output_dim=OFFICIAL_DIM - 1))
    state = olmo_state()
    del state["transformer.blocks.1.pos_emb.sin_coef"]
    with pytest.raises(KeyError, match=r"blocks.1.pos_emb.sin_coef is missing"):
        load_olmo_fope(OLMO, state)
    with pytest.raises(ValueError, match=r"blocks \[0, 1\]; expected 0..2"):
        load_olmo_fope({**OLMO, "n_layers": 3}, olmo_state())
    with pytest.raises(KeyError, match="not an OLMo-fork FoPE checkpoint"):
        load_olmo_fope(OLMO, {"transformer.wte.weight": torch.zeros(1)})


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_never_executed(tmp_path):
    torch.save({"blocks.0.pos_emb.cos_coef": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        read_tensors(tmp_path / "evil.pt")


# The Intern stack: a transformers-style config with the FoPE keys in rope_scaling, one model-level coefficient set.
INTERN = {
    "hidden_size": HEADS * HEAD_DIM,
    "num_attention_heads": HEADS,
    "num_key_value_heads": 2,
    "head_dim": HEAD_DIM,
    "rope_theta": 500000.0,
    "max_position_embeddings": 1024,
    "rope_scaling": {"rope_type": "default", "fope_init_factor": 0.1, "fope_sep_head": True, "num_inv_freq": None},
}


def intern_kept(theta: float = 500000.0, max_positions: int = 1024) -> int:
    return sum(w > 2 * math.pi / max_positions for w in frequencies(HEAD_DIM, theta))


def intern_state(heads: int = 2, kept: int | None = None, prefix: str = "model.") -> dict[str, torch.Tensor]:
    kept = kept or intern_kept()
    shape = (heads, kept, kept) if heads else (kept, kept)
    return {
        f"{prefix}rotary_emb.cos_coef": random_coefficients(*shape, seed=1),
        f"{prefix}rotary_emb.sin_coef": random_coefficients(*shape, seed=2),
        f"{prefix}embed_tokens.weight": torch.zeros(4, 4),
    }


def test_intern_config_keys_map_to_fope_options():
    options = intern_fope_options(INTERN)
    assert options["num_inv_freq"] == intern_kept() == 7 and options["theta"] == 500000.0
    assert options["sigma"] == 0.1 and not options["share_heads"] and options["output_dim"] == "square"
    with_count = {**INTERN, "rope_scaling": {**INTERN["rope_scaling"], "num_inv_freq": 5}}
    assert intern_fope_options(with_count)["num_inv_freq"] == 5
    nested = {"text_config": INTERN, "vision_config": {"hidden_size": 8}}
    assert intern_fope_options(nested) == options
    v5_style = {key: value for key, value in INTERN.items() if key not in ("rope_theta", "rope_scaling")}
    v5_style["rope_parameters"] = {**INTERN["rope_scaling"], "rope_theta": 500000.0}
    assert intern_fope_options(v5_style) == options


def test_intern_coefficients_load_into_a_module_matching_the_formula(tmp_path):
    state = intern_state()
    module = load_intern_fope(INTERN, state)
    assert tuple(module.cos_coef.shape) == (2, 7, 7) and module.num_kv_heads == 2
    cos_coef, sin_coef = state["model.rotary_emb.cos_coef"], state["model.rotary_emb.sin_coef"]
    assert_matches_formula(module, cos_coef, sin_coef, q_heads=HEADS, kv_heads=2, theta=500000.0)
    save_file(state, tmp_path / "model-00001-of-00001.safetensors")
    assert torch.equal(load_intern_fope(INTERN, tmp_path).sin_coef, sin_coef)


def test_intern_shared_head_coefficients():
    config = {**INTERN, "rope_scaling": {**INTERN["rope_scaling"], "fope_sep_head": False}}
    state = intern_state(heads=0)
    module = load_intern_fope(config, state)
    assert module.num_coef_heads == 1
    assert_matches_formula(
        module,
        state["model.rotary_emb.cos_coef"],
        state["model.rotary_emb.sin_coef"],
        q_heads=HEADS,
        kv_heads=2,
        theta=500000.0,
    )


def test_intern_identity_zero_pad_is_a_switch():
    module = load_intern_fope(INTERN, intern_state(), zero_pad="identity")
    cos, sin = module.features(torch.arange(4))
    assert torch.all(cos[..., 7:] == 1) and torch.all(sin[..., 7:] == 0)


def test_intern_bad_shapes_and_settings_are_rejected():
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 7, 7\)"):
        load_intern_fope(INTERN, intern_state(kept=8))
    state = intern_state()
    del state["model.rotary_emb.sin_coef"]
    with pytest.raises(KeyError, match=r"rotary_emb\.sin_coef is missing"):
        load_intern_fope(INTERN, state)
    with pytest.raises(ValueError, match=r"several rotary_emb\.cos_coef"):
        load_intern_fope(INTERN, {**intern_state(), **intern_state(prefix="vision.")})
    with pytest.raises(ValueError, match="Intern FoPE keys"):
        load_intern_fope({**INTERN, "rope_scaling": {"rope_type": "default"}}, intern_state())
    yarn = {**INTERN["rope_scaling"], "rope_type": "yarn", "factor": 4.0}
    with pytest.raises(ValueError, match="plain RoPE frequencies only"):
        load_intern_fope({**INTERN, "rope_scaling": yarn}, intern_state())


@pytest.mark.parametrize("share_heads", [False, True])
def test_intern_export_round_trips_through_the_loader(tmp_path, share_heads):
    fope = FoPE(
        head_dim=HEAD_DIM,
        num_heads=HEADS,
        num_kv_heads=2,
        train_length=1024,
        theta=500000.0,
        output_dim="square",
        share_heads=share_heads,
        sigma=0.2,
        seed=0,
    )
    entries, tensors = export_intern(fope)
    assert entries == {"fope_init_factor": 0.2, "fope_sep_head": not share_heads, "num_inv_freq": fope.num_kept}
    kept = fope.num_kept
    shape = (kept, kept) if share_heads else (2, kept, kept)  # xtuner's shared buffer is 2-D
    assert all(tuple(tensor.shape) == shape for tensor in tensors.values())
    save_file(tensors, tmp_path / "model.safetensors")
    loaded = load_intern_fope({**INTERN, "rope_scaling": entries}, tmp_path / "model.safetensors")
    assert loaded.share_heads is share_heads
    q, k = torch.randn(1, HEADS, 6, HEAD_DIM), torch.randn(1, 2, 6, HEAD_DIM)
    positions = torch.tensor([0, 1, 5, 40, 300, 2000])
    for ours, theirs in zip(fope(q, k, positions), loaded(q, k, positions), strict=True):
        torch.testing.assert_close(theirs, ours, atol=0, rtol=0)
    assert_matches_formula(
        loaded,
        tensors["model.rotary_emb.cos_coef"],
        tensors["model.rotary_emb.sin_coef"],
        q_heads=HEADS,
        kv_heads=2,
        theta=500000.0,
    )


def test_intern_head_axis_must_match_fope_sep_head():
    shared = {**INTERN, "rope_scaling": {**INTERN["rope_scaling"], "fope_sep_head": False}}
    one_head = {name: tensor[:1] for name, tensor in intern_state().items()}  # (1, K, K): accepted for shared
    assert load_intern_fope(shared, one_head).cos_coef.shape == (1, 7, 7)
    with pytest.raises(ValueError, match=r"shape \(7, 7\).*\(2, 7, 7\)"):
        load_intern_fope(INTERN, intern_state(heads=0))  # 2-D only when heads share one set


def test_intern_partial_rotary_is_refused():
    for config in (
        {**INTERN, "partial_rotary_factor": 0.5},
        {**INTERN, "rope_scaling": {**INTERN["rope_scaling"], "partial_rotary_factor": 0.5}},
    ):
        with pytest.raises(ValueError, match=r"partial_rotary_factor=0\.5.*whole head.*1\.0 only"):
            load_intern_fope(config, intern_state())
    partial = FoPE(head_dim=32, num_heads=4, train_length=1024, rotary_dim=16, output_dim="square")
    with pytest.raises(ValueError, match=r"whole head.*rotary_dim=16"):
        export_intern(partial)


def test_intern_export_rejects_what_the_layout_cannot_hold():
    with pytest.raises(ValueError, match="square coefficients"):
        export_intern(FoPE(head_dim=32, num_heads=4, train_length=1024))  # K=9, d_out=8
    with pytest.raises(ValueError, match="c = s = 1"):
        export_intern(FoPE(head_dim=32, num_heads=4, train_length=64, output_dim="square", zero_pad="identity"))
    layers = torch.nn.ModuleList([FoPE(head_dim=32, num_heads=4, train_length=64) for _ in range(2)])
    with pytest.raises(ValueError, match="holds 2"):
        export_intern(layers)


def test_export_intern_reads_a_converted_transformers_model():
    transformers = pytest.importorskip("transformers")
    from fope.integrations.transformers import convert, fope_modules

    config = transformers.LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=64,
        max_position_embeddings=64,
    )
    model = convert(transformers.LlamaForCausalLM(config), 64, seed=0, share_layers=True, output_dim="square")
    entries, tensors = export_intern(model)
    (fope,) = fope_modules(model)
    assert entries["num_inv_freq"] == fope.num_kept and entries["fope_sep_head"] is True
    assert torch.equal(tensors["model.rotary_emb.cos_coef"], fope.cos_coef)
    assert tuple(tensors["model.rotary_emb.cos_coef"].shape) == (2, fope.num_kept, fope.num_kept)
