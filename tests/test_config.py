"""Config loading: types, unknown keys, nested sections, overrides."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from fope.config import (
    ConfigError,
    apply_overrides,
    check_expansion,
    from_dict,
    load_config,
    load_yaml,
    parse_yaml,
    to_dict,
)


@dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    name: Literal["adamw", "sgd"] = "adamw"


@dataclass
class Outer:
    steps: int
    inner: Inner = field(default_factory=Inner)
    options: dict[str, object] = field(default_factory=dict)
    note: str | None = None
    flag: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")


def test_round_trip_and_int_as_float():
    config = from_dict(Outer, {"steps": 3, "inner": {"lr": 1, "betas": [0.8, 0.9]}, "options": {"a": 1}})
    assert config.inner.lr == 1.0 and isinstance(config.inner.lr, float)
    assert config.inner.betas == (0.8, 0.9)
    assert from_dict(Outer, to_dict(config)) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": 3, "stpes": 4}, "unknown config key stpes"),
        ({"steps": 3, "inner": {"learning_rate": 1}}, "unknown config key inner.learning_rate"),
        ({"steps": "3"}, "steps must be an integer; got '3'"),
        ({"steps": 3.0}, "steps must be an integer; got 3.0"),
        ({"steps": True}, "steps must be an integer; got True"),
        ({"steps": 3, "inner": {"lr": "fast"}}, "inner.lr must be a number; got 'fast'"),
        ({"steps": 3, "inner": {"name": "adam"}}, "inner.name must be one of ['adamw', 'sgd']; got 'adam'"),
        ({"steps": 3, "inner": {"betas": [0.9]}}, "inner.betas must be a list of 2 items"),
        ({"steps": 3, "flag": "yes"}, "flag must be true or false"),
        ({"steps": 3, "note": 5}, "note must be str | null; got 5"),
        ({"steps": 3, "inner": 5}, "inner must be a mapping of Inner fields"),
        ({}, "missing config key steps"),
        ({"steps": 0}, "steps must be >= 1; got 0"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data)
    assert message in str(info.value)


def test_overrides():
    data = {"steps": 3, "inner": {"lr": 0.1}}
    out = apply_overrides(data, ["inner.lr=2e-3", "flag=true", "options.theta=500000", "note=hello"])
    assert out == {"steps": 3, "inner": {"lr": 2e-3}, "flag": True, "options": {"theta": 500000}, "note": "hello"}
    assert data["inner"]["lr"] == 0.1  # the input is not modified
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(data, ["inner.lr"])
    with pytest.raises(ConfigError, match="steps is not a section"):
        apply_overrides(data, ["steps.x=1"])


def billion_laughs(levels: int = 9) -> str:
    """A YAML alias bomb: each level lists the previous one 9 times, so ``levels`` levels expand to 9**levels values."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 1024
    start = time.perf_counter()
    for load in (load_yaml, load_config):
        with pytest.raises(ConfigError, match=r"bomb.yaml is not valid YAML: its aliases expand to more than 100000"):
            load(bomb)
    assert time.perf_counter() - start < 5  # expanded, the 387 million values took minutes and gigabytes
    with pytest.raises(ConfigError, match="line 1 refers to the value that holds it"):
        bomb.write_text("a: &a [1, *a]\n")
        load_yaml(bomb)
    with pytest.raises(ConfigError, match="more than 100000"):
        apply_overrides({}, ["model.position_options=" + billion_laughs().replace("\n", ", ").join("{}")])


def test_aliases_count_every_value_they_stand_for():
    text = "a: &x [1, 2]\nb: *x\n"  # mapping, key a, list of 2, key b, the same list again: 1 + 1 + 3 + 1 + 3
    assert check_expansion(yaml.compose(text, Loader=yaml.SafeLoader)) == 9
    assert parse_yaml(text) == {"a": [1, 2], "b": [1, 2]}
    # level i is a list of 1 + 9 + 81 + ... + 9**(i + 1) values, (9**(i + 2) - 1) / 8; plus 5 keys and the mapping
    levels = sum((9 ** (level + 2) - 1) // 8 for level in range(5))
    assert check_expansion(yaml.compose(billion_laughs(5), Loader=yaml.SafeLoader)) == levels + 5 + 1
    with pytest.raises(yaml.YAMLError, match="more than 10 values"):
        check_expansion(yaml.compose(billion_laughs(2), Loader=yaml.SafeLoader), limit=10)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_yaml(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_yaml(latin)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_yaml(listing)


def test_an_empty_config_file_is_an_error_naming_the_file(tmp_path):
    for text in ("", "# only a comment\n"):
        empty = tmp_path / "config.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match=rf"{tmp_path}/config\.yaml is empty"):
            load_yaml(empty)


#: YAML with a key written twice, and what the error says about it.
TWICE = {
    "train:\n  seq_len: 64\n  seq_len: 32\n": r"key train\.seq_len appears twice, on line 2 and on line 3",
    "model: {position: rope}\nname: x\nmodel: {position: fope}\n": "key model appears twice, on line 1 and on line 3",
    "runs:\n  - {a: 1}\n  - {b: 1,\n     b: 2}\n": r"key runs\[1\]\.b appears twice, on line 3 and on line 4",
}


@pytest.mark.parametrize(("text", "message"), TWICE.items())
def test_a_key_written_twice_is_an_error_naming_the_key_and_lines(tmp_path, text, message):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"twice\.yaml is not valid YAML: {message}; write each key once"):
        load_yaml(path)


def test_a_merge_key_may_be_overridden_and_aliases_are_not_duplicates(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {lr: 1, eps: 2}\noptim:\n  <<: *base\n  lr: 3\nagain: *base\n")
    assert load_yaml(path) == {"base": {"lr": 1, "eps": 2}, "optim": {"lr": 3, "eps": 2}, "again": {"lr": 1, "eps": 2}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.threads=0", "train: threads must be >= 1 (or null: torch's default); got 0"),
        ("optim.betas=[2,3]", "optim: betas must be two numbers in [0, 1) (AdamW's); got [2.0, 3.0]"),
        ("optim.betas=[0.9,1]", "optim: betas must be two numbers in [0, 1)"),
        ("optim.eps=-1", "optim: eps must be >= 0; got -1.0"),
        ("optim.weight_decay=-0.1", "optim: weight_decay must be >= 0; got -0.1"),
        ("optim.grad_clip=0", "optim: grad_clip must be > 0 (the largest global gradient norm); got 0.0"),
    ],
)
def test_values_torch_would_refuse_mid_run_are_refused_with_the_config(override, message):
    """What torch.set_num_threads or AdamW would raise at the first step is a one-line ConfigError up front."""
    from fope.presets import load_preset

    with pytest.raises(ConfigError) as info:
        load_preset("tiny/fope", [override])
    assert message in str(info.value)
