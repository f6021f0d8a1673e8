"""Experiment recipes: their plans (what each trains, dry runs), one recipe end to end on the tiny corpus, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fope.build import non_embedding_parameters
from fope.cli import main
from fope.config import RunConfig, flatten, to_dict
from fope.experiments import plan_experiment, run_experiment
from fope.experiments.ablation import ARMS as ABLATION_ARMS
from fope.experiments.baselines import ARMS as BASELINE_ARMS
from fope.positions import FoPE
from fope.presets import load_preset
from fope.runs import load_run

PRESET = load_preset("tiny/fope")
L, BATCH = PRESET.train.seq_len, PRESET.train.batch_size  # the tiny presets' training length and batch
KEPT = FoPE(head_dim=32, num_heads=4, train_length=L).num_kept  # frequencies the tiny FoPE keeps at L

#: What the recipes may change between the arms of one comparison.
POSITION_KEYS = {"name", "model.position", "model.position_options"}


def tiny_overrides(corpus: Path) -> list[str]:
    """``--set`` values that shrink every run to seconds on the tiny corpus fixture (no passkey examples at 32)."""
    return [
        f"data.source={corpus}",
        "data.vocab_size=300",
        "data.passkey_fraction=0.0",
        "model.d_model=32",
        "model.num_layers=2",
        "model.num_heads=2",
        "model.mlp_ratio=2.0",
        "train.seq_len=32",
        "train.batch_size=8",
        "train.log_every=1",
        "optim.warmup_steps=2",
    ]


def resolved(plan) -> dict[str, RunConfig]:
    return {run.name: run.config for run in plan.campaign.runs}


def flat(config: RunConfig) -> dict:
    return flatten(to_dict(config))


def differing(a: RunConfig, b: RunConfig) -> set[str]:
    x, y = flat(a), flat(b)
    return {key for key in set(x) | set(y) if x.get(key) != y.get(key)}


def test_ablation_plan_arms_differ_only_in_the_position_encoding(tmp_path):
    plan = plan_experiment("ablation", tmp_path)
    configs = resolved(plan)
    assert list(configs) == [f"{arm}-s{seed}" for seed in (0, 1, 2) for arm in ABLATION_ARMS]
    for name, config in configs.items():
        arm, seed = name.rsplit("-s", 1)
        assert config.name == arm and config.train.seed == int(seed) and config.train.max_steps == 600
        assert differing(config, configs[f"rope-s{seed}"]) <= POSITION_KEYS
        assert differing(config, configs[f"{arm}-s0"]) <= {"train.seed"}
    square = configs["fope-no-cf-square-s0"].model
    assert square.position == "fope-no-cf" and square.position_options["output_dim"] == "square"
    (report,) = plan.campaign.reports
    assert report.folder == "report-tiny" and set(report.runs) == set(configs)
    assert plan.campaign.passkey_trials == 100 and plan.campaign.max_spans == 24


def test_ablation_sizes_keep_head_dim_and_label_by_size(tmp_path):
    plan = plan_experiment("ablation", tmp_path, sizes=["tiny", "small"], seeds=[0])
    configs = resolved(plan)
    small = configs["fope-small-s0"]
    assert small.name == "fope-small" and small.model.d_model == 256 and small.model.num_heads == 8
    assert differing(small, configs["fope-s0"]) == {"name", "model.d_model", "model.num_heads"}
    assert [report.folder for report in plan.campaign.reports] == ["report-tiny", "report-small"]
    with pytest.raises(ValueError, match=r"--set \['model.d_model'\] would override what size 'small' sets"):
        plan_experiment("ablation", tmp_path, sizes=["tiny", "small"], overrides=["model.d_model=64"])
    with pytest.raises(ValueError, match="size 'huge' is not a tiny-scale size"):
        plan_experiment("ablation", tmp_path, sizes=["huge"])


def test_the_recipes_share_their_tiny_runs(tmp_path):
    """Same name and same resolved config: an experiment pointed at another's folder does not retrain rope or fope."""
    demo = resolved(plan_experiment("ablation", tmp_path, seeds=[0, 1]))
    for experiment in ("baselines", "extension", "sweep"):
        configs = resolved(plan_experiment(experiment, tmp_path, seeds=[0, 1]))
        for name in ("rope-s0", "fope-s1") if experiment != "sweep" else ("fope-s0", "fope-s1"):
            assert to_dict(configs[name]) == to_dict(demo[name]), (experiment, name)
    shorter = resolved(plan_experiment("ablation", tmp_path, seeds=[0], steps=300))
    assert differing(shorter["rope-s0"], demo["rope-s0"]) == {
        "train.max_steps",
        "train.checkpoint_every",
        "train.eval_every",
    }


def test_sweep_plan_values_reference_and_shapes_at_one_budget(tmp_path):
    plan = plan_experiment("sweep", tmp_path, seeds=[0])
    assert plan.options["values"] == {
        "sigma": [0.0, 0.1, 0.3, 0.5, 1.0],
        "output_dim": sorted({1, 3, KEPT, 16}),
        "num_inv_freq": sorted({3, KEPT, 11, 16}),
    }
    configs = resolved(plan)
    reference = configs["fope-s0"]
    reports = {report.folder: report.runs for report in plan.campaign.reports}
    assert all("fope-s0" in runs for runs in reports.values())  # the FoPE preset is every sweep's reference point
    assert configs["fope-sigma0.5-s0"].model.position_options == {"sigma": 0.5}
    assert configs["fope-dout16-s0"].model.position_options == {"sigma": 0.3, "output_dim": 16}
    assert configs["fope-freqs11-s0"].model.position_options == {"sigma": 0.3, "num_inv_freq": 11}
    for name in reports["report-sigma"] + reports["report-output_dim"] + reports["report-num_inv_freq"]:
        assert differing(configs[name], reference) <= {"name", "model.position_options"}
    shapes = {name: configs[name] for name in reports["report-shape"]}
    assert list(shapes) == ["fope-s0", "fope-hd64-s0", "fope-heads8-s0", "fope-layers8-s0"]
    budget = non_embedding_parameters(reference)
    for name, config in shapes.items():
        model = config.model_config(vocab_size=1024)
        assert non_embedding_parameters(config) == pytest.approx(budget, rel=0.03), name
        assert model.num_heads * model.head_size == model.d_model
    depth = {name: (c.model_config(1024).num_layers, c.model_config(1024).head_size) for name, c in shapes.items()}
    assert depth == {"fope-s0": (4, 32), "fope-hd64-s0": (4, 64), "fope-heads8-s0": (4, 16), "fope-layers8-s0": (8, 32)}


def test_extension_arms_have_equal_token_budgets_and_start_from_the_base_runs(tmp_path):
    plan = plan_experiment("extension", tmp_path, seeds=[0, 1])
    configs = resolved(plan)
    extended = {run.name: run for run in plan.campaign.runs if run.after}
    arms = [f"{start}-to-{method}" for start in ("rope", "fope") for method in ("yarn", "fope")] + [
        "fope-to-fope-expand"
    ]
    assert sorted(extended) == sorted(f"{arm}-s{seed}" for seed in (0, 1) for arm in arms)
    budgets = set()
    for name, spec in extended.items():
        config = configs[name]
        start, seed = name.split("-to-")[0], int(name.rsplit("-s", 1)[1])
        assert spec.after == (f"{start}-s{seed}",)
        assert config.train.init_from == str((tmp_path / "runs" / f"{start}-s{seed}").resolve())
        assert config.train.seq_len == 2 * L and config.train.seed == seed and config.optim.warmup_steps == 15
        budgets.add(config.train.max_steps * config.train.batch_size * config.train.seq_len)
        assert config.train.init_positions == ("expand" if "-expand" in name else "fresh")
        if "-to-yarn" in name:
            assert config.model.position == "yarn"
            assert config.model.position_options == {"factor": 2.0, "original_max_position": L}
        else:
            assert config.model.position == "fope" and config.model.position_options == {"sigma": 0.3}
    assert budgets == {150 * BATCH * 2 * L}
    (report,) = plan.campaign.reports
    assert set(report.runs) == set(extended)


def test_cross_domain_trains_on_shakespeare_and_evaluates_on_exported_bible(tmp_path, tiny_corpus):
    plan = plan_experiment("cross-domain", tmp_path, seeds=[0])
    configs = resolved(plan)
    assert list(configs) == ["rope-shakespeare-s0", "fope-shakespeare-s0", "alibi-shakespeare-s0"]
    assert all(config.data.sources == ["shakespeare"] for config in configs.values())
    bible = str((tmp_path / "eval-data" / "bible").resolve())
    assert plan.prepare is not None and any(str(tmp_path / "eval-data" / "bible") in note for note in plan.notes)
    assert [(r.folder, r.data) for r in plan.campaign.reports] == [("report-in-domain", None), ("report-bible", bible)]
    assert plan.campaign.passkey_trials is None
    # Titles name the data, not where this machine keeps it: the page is shared across machines.
    titles = [report.title for report in plan.campaign.reports]
    assert titles[1].endswith("evaluated on the King James Bible (bible source)")
    assert not any(str(tmp_path) in title for title in titles)
    (tmp_path / "psalms.txt").write_text("text", encoding="utf-8")
    own = plan_experiment("cross-domain", tmp_path, seeds=[0], eval_data=str(tmp_path / "psalms.txt"))
    assert own.campaign.reports[1].title.endswith("evaluated on the text at psalms.txt")
    with pytest.raises(ValueError, match="needs --eval-data"):
        plan_experiment("cross-domain", tmp_path, overrides=[f"data.source={tiny_corpus}"])


def test_baselines_plan(tmp_path):
    configs = resolved(plan_experiment("baselines", tmp_path, seeds=[3]))
    assert list(configs) == [f"{arm}-s3" for arm in BASELINE_ARMS]
    assert configs["p-rope-s3"].model.position_options == {"drop_fraction": 0.25}
    contrasts = plan_experiment("baselines", tmp_path, seeds=[3]).campaign.reports[0].contrasts
    assert [(a, b) for a, b, _ in contrasts] == [
        ("fope", arm) for arm in ("rope", "p-rope", "hope", "cope", "alibi")
    ] + [("hope", "cope")]
    for config in configs.values():
        assert differing(config, configs["rope-s3"]) <= POSITION_KEYS


def test_the_demo_is_the_retrieval_recipe_with_fewer_steps(tmp_path):
    from fope.experiments import demo, retrieval

    runs = resolved(plan_experiment("demo", tmp_path, seeds=[0, 1]))
    recipe = resolved(plan_experiment("retrieval", tmp_path, seeds=[0, 1]))
    assert list(runs) == [f"{arm}-demo-s{seed}" for seed in (0, 1) for arm in ("rope", "fope", "alibi")]
    for name, config in runs.items():
        other = recipe[name.replace("-demo", "-retrieval")]
        assert differing(config, other) == {"name", "train.max_steps", "train.eval_every"}
        assert config.train.max_steps == demo.STEPS < retrieval.STEPS
    assert (demo.ROWS, demo.SIGMA) == (retrieval.ROWS, retrieval.SIGMA)


def test_retrieval_plan_trains_the_demo_presets_longer_and_keeps_quick_defaults(tmp_path):
    from fope.experiments import retrieval

    plan = plan_experiment("retrieval", tmp_path)
    configs = resolved(plan)
    assert list(configs) == [f"{arm}-retrieval-s{seed}" for seed in (0, 1, 2) for arm in ("rope", "fope", "alibi")]
    demo = resolved(plan_experiment("baselines", tmp_path, seeds=[0, 1, 2]))
    for name, config in configs.items():  # the recipes' shared run with more steps (and FoPE with the recipe's sigma)
        demo_config = demo[name.replace("-retrieval", "")]
        sigma = {"model.position_options"} if name.startswith("fope-") else set()
        assert (
            differing(config, demo_config)
            == {
                "name",
                "train.max_steps",
                "train.eval_every",
                "data.passkey_fraction",
            }
            | sigma
        )
        if sigma:
            options, demo_options = config.model.position_options, demo_config.model.position_options
            assert options == {**demo_options, "sigma": retrieval.SIGMA} != demo_options
        assert config.train.checkpoint_every == 500  # a stopped campaign loses at most 500 steps of a run
    assert {config.train.max_steps for config in configs.values()} == {retrieval.STEPS} and retrieval.STEPS > 600
    assert {config.data.passkey_fraction for config in configs.values()} == {retrieval.ROWS} != {0.5}
    assert {config.data.passkey_fraction for config in demo.values()} == {0.5}
    assert plan.options["rows"] == retrieval.ROWS
    half = resolved(plan_experiment("retrieval", tmp_path, rows=0.5))
    assert {config.data.passkey_fraction for config in half.values()} == {0.5}
    with pytest.raises(ValueError, match="--rows must be in"):
        plan_experiment("retrieval", tmp_path, rows=1.5)
    with pytest.raises(ValueError, match="use --rows"):
        plan_experiment("retrieval", tmp_path, overrides=["data.passkey_fraction=0.3"])
    assert plan.options["sigma"] == retrieval.SIGMA
    arms = ("fope", "fope-no-cf-square", "rope")
    chosen = resolved(plan_experiment("retrieval", tmp_path, sigma=0.2, encodings=arms))
    assert [c.model.position_options.get("sigma") for c in chosen.values()][:3] == [0.2, 0.2, None]
    assert chosen["fope-no-cf-square-retrieval-s0"].model.position_options["output_dim"] == "square"
    for bad in (0.0, -0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="--sigma must be finite and > 0"):
            plan_experiment("retrieval", tmp_path, sigma=bad)
    with pytest.raises(ValueError, match="use --sigma"):
        plan_experiment("retrieval", tmp_path, overrides=["model.position_options.sigma=0.2"])
    cope = plan_experiment(
        "retrieval", tmp_path, encodings=("cope",), overrides=["model.position_options.num_clipped=4"]
    )
    assert {c.model.position_options["num_clipped"] for c in resolved(cope).values()} == {4}
    assert plan.campaign.passkey_trials == 100
    quick = plan_experiment("retrieval", tmp_path, quick=True)
    assert {config.train.max_steps for config in resolved(quick).values()} == {60}
    assert quick.campaign.passkey_trials == 4
    assert {c.train.max_steps for c in resolved(plan_experiment("retrieval", tmp_path, steps=7)).values()} == {7}
    with pytest.raises(ValueError, match="tiny scale"):
        plan_experiment("retrieval", tmp_path, scale="paper")


def test_retrieval_at_size_small_has_its_own_runs_and_report(tmp_path):
    tiny = plan_experiment("retrieval", tmp_path, seeds=[0])
    small = plan_experiment("retrieval", tmp_path, seeds=[0], size="small")
    assert [report.folder for report in tiny.campaign.reports] == ["report"]  # the committed results keep their names
    assert list(resolved(tiny)) == ["rope-retrieval-s0", "fope-retrieval-s0", "alibi-retrieval-s0"]
    assert list(resolved(small)) == ["rope-retrieval-small-s0", "fope-retrieval-small-s0", "alibi-retrieval-small-s0"]
    assert [report.folder for report in small.campaign.reports] == ["report-small"]
    assert small.campaign.reports[0].title.endswith(", size small") and small.options["size"] == "small"
    for name, config in resolved(small).items():
        twin = resolved(tiny)[name.replace("-small", "")]  # the size comes last, as in every recipe
        assert (config.model.d_model, config.model.num_heads) == (256, 8)
        assert flat(config) | {"model.d_model": 128, "model.num_heads": 4, "name": twin.name} == flat(twin)
    contrasts = small.campaign.reports[0].contrasts
    assert contrasts[0][:2] == ("fope-retrieval-small", "rope-retrieval-small")
    with pytest.raises(ValueError, match=r"size 'huge' is not a tiny-scale size; choose from \['tiny', 'small'\]"):
        plan_experiment("retrieval", tmp_path, size="huge")


def test_paper_scale_dry_run_lists_the_paper_presets(capsys):
    argv = ["experiment", "ablation", "--scale", "paper", "--sizes", "60m,180m", "--seeds", "0", "--dry-run"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "10 runs, 1 at a time" in printed and "rope-60m-s0" in printed and "fope-180m" in printed
    assert "rope-60m-s0: paper/60m + model.position=rope, model.position_options={theta: 10000.0}" in printed
    assert "fope-180m-s0: paper/180m\n" in printed  # FoPE at 180M is the preset itself (sigma 0.4)
    assert "fope-no-cf-180m-s0: paper/180m + model.position=fope-no-cf, name=fope-no-cf-180m" in printed
    assert "-m fope.worker train experiments/runs/rope-60m-s0" in printed
    assert "9,999,745,024" in printed and "33,563,136" in printed  # 10B tokens, 60M non-embedding parameters
    argv = ["experiment", "extension", "--scale", "paper", "--gpus-per-run", "4", "--seeds", "0", "--dry-run"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "torch.distributed.run --standalone --nproc_per_node 4 -m fope.worker train" in printed
    assert "factor: 16.0, original_max_position: 512" in printed and "1,048,576,000" in printed


def test_help_lists_every_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in ("ablation", "sweep", "extension", "cross-domain", "baselines", "retrieval"))
    # one whole sentence per recipe (the first line of a docstring cut "HoPE-style clipping (= HardClip of the")
    assert "next to the other ways to remove low frequencies, NoPE and ALiBi" in " ".join(printed.split())
    with pytest.raises(SystemExit):
        main(["experiment", "baselines", "--help"])
    description = " ".join(capsys.readouterr().out.split())
    assert "(lowest 25% of frequencies dropped)" in description and "%%" not in description


def test_options_and_overrides_are_checked(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--set train\.seed is set by the recipe"):
        plan_experiment("ablation", tmp_path, overrides=["train.seed=3"])
    with pytest.raises(ValueError, match=r"experiment 'baselines' has no option \['sizes'\]"):
        plan_experiment("baselines", tmp_path, sizes=["tiny"])
    with pytest.raises(ValueError, match="unknown sweeps"):
        plan_experiment("sweep", tmp_path, sweeps=["theta"])
    assert main(["experiment", "baselines", "--encodings", "rope,nonsense", "--dry-run"]) == 2
    assert "no tiny preset 'nonsense'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["experiment", "ablation"], "--seeds"),
        (["experiment", "sweep"], "--sweeps"),
        (["experiment", "cross-domain"], "--train-sources"),
        (["demo"], "--encodings"),
        (["demo"], "--seeds"),
    ],
)
def test_an_empty_list_option_is_refused_not_taken_as_the_default(tmp_path, capsys, command, flag):
    for empty in ("", " , "):
        assert main([*command, flag, empty, "--out", str(tmp_path), "--dry-run"]) == 2
        assert capsys.readouterr().err == (
            f"fope {command[0]}: error: {flag} must list one or more comma-separated values (leave {flag} out for the "
            "default); got none\n"
        )
    with pytest.raises(ValueError, match="--encodings must list one or more"):
        plan_experiment("baselines", tmp_path, encodings=())


def test_seeds_beyond_what_torch_takes_are_one_line(tmp_path, capsys):
    argv = ["experiment", "ablation", "--out", str(tmp_path), "--dry-run", "--seeds"]
    assert main([*argv, "0,99999999999999999999"]) == 2
    assert capsys.readouterr().err == (
        "fope experiment: error: --seeds: each seed must be an int from 0 to 18446744073709551615 (2**64 - 1, the "
        "largest seed torch takes); got 99999999999999999999\n"
    )
    assert main([*argv, str(2**63)]) == 0  # beyond int64, within torch's unsigned 64-bit seeds
    assert f"seeds [{2**63}]" in capsys.readouterr().out


@pytest.mark.slow
def test_recipe_end_to_end_then_reused(tmp_path, tiny_corpus, monkeypatch):
    options = {
        "seeds": [0, 1],
        "steps": 4,
        "quick": True,
        "overrides": tiny_overrides(tiny_corpus),
        "passkey_trials": 0,
        "max_spans": 2,
        "encodings": ["rope", "fope"],
    }
    plan = plan_experiment("baselines", tmp_path, **options)
    printed = []
    outcome = run_experiment(plan, log=printed.append)
    runs = [tmp_path / "runs" / f"{arm}-s{seed}" for seed in (0, 1) for arm in ("rope", "fope")]
    assert all(load_run(run).step == 4 for run in runs)
    report = tmp_path / "baselines" / "report"
    assert (report / "report.md").is_file() and (report / "perplexity.png").is_file()
    groups = outcome["results"]["report"]["groups"]
    assert {label: group["n"] for label, group in groups.items()} == {"rope": 2, "fope": 2}
    summary = (tmp_path / "baselines" / "summary.md").read_text()
    assert summary == outcome["summary"] and summary in printed
    assert "rope vs fope at 512 (16x)" in summary and "(n 2/2)" in summary and " ± " in summary
    record = json.loads((tmp_path / "baselines" / "experiment.json").read_text())
    assert record["runs"] == [run.name for run in runs] and record["settings"]["seeds"] == [0, 1]

    def no_subprocess(*args, **kwargs):
        raise AssertionError("finished runs and evaluations must be reused")

    monkeypatch.setattr("fope.executor.subprocess.Popen", no_subprocess)
    again = run_experiment(plan_experiment("baselines", tmp_path, **options), log=printed.append)
    assert again["summary"] == outcome["summary"]
    assert any("using the stored results of 4 run(s)" in line for line in printed)


@pytest.mark.slow
def test_extension_end_to_end(tmp_path, tiny_corpus):
    plan = plan_experiment(
        "extension",
        tmp_path,
        seeds=[0],
        steps=4,
        extension_steps=2,
        overrides=tiny_overrides(tiny_corpus),
        passkey_trials=0,
        max_spans=2,
    )
    outcome = run_experiment(plan, log=lambda _: None)
    groups = outcome["results"]["report"]["groups"]
    assert set(groups) == {"rope-to-yarn", "rope-to-fope", "fope-to-yarn", "fope-to-fope", "fope-to-fope-expand"}
    assert all(group["perplexity"]["train_lengths"] == [64] for group in groups.values())
    run = load_run(tmp_path / "runs" / "rope-to-fope-s0")
    assert run.step == 2 and run.model.config.position == "fope" and run.train_length == 64
    first = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["init_from"].startswith(str((tmp_path / "runs" / "rope-s0").resolve()))
    assert "extension from rope (YaRN vs FoPE)" in outcome["summary"]
    assert "FoPE from fope: fresh vs expanded coefficients" in outcome["summary"]
    expanded = json.loads((tmp_path / "runs" / "fope-to-fope-expand-s0" / "metrics.jsonl").read_text().splitlines()[0])
    assert expanded["expanded_position_tensors"] > 0  # 64 tokens keep more frequencies than 32: the shapes grew


def fake_results(losses: dict[str, tuple[float, float]], train_length: int = L, n: int = 3) -> dict:
    """``results.json``-like numbers: per label, mean loss (std 0.01) at 1x and 16x the training length."""

    def spread(mean: float, std: float = 0.01) -> dict:
        return {"n": n, "mean": mean, "std": std, "min": mean, "max": mean}

    def row(length: int, loss: float) -> dict:
        return {
            "length": length,
            "multiple": length / train_length,
            "loss": spread(loss),
            "perplexity": spread(2.718281828**loss, 0.1),
            "bits_per_byte": spread(loss / 2.5),
            "ratio": spread(1.0),
        }

    groups = {
        label: {
            "n": n,
            "runs": [],
            "perplexity": {
                "train_lengths": [train_length],
                "by_length": [row(train_length, short), row(16 * train_length, long)],
            },
            "passkey": None,
            "notes": [],
        }
        for label, (short, long) in losses.items()
    }
    return {"groups": groups}


def test_ablation_summary_answers_which_part_does_the_work(tmp_path):
    plan = plan_experiment("ablation", tmp_path, sizes=["tiny", "small"])
    losses = {"rope": (2.0, 3.0), "fope": (2.0, 2.2), "fope-no-fs": (2.0, 2.21), "fope-no-cf": (2.0, 2.9)}
    losses["fope-no-cf-square"] = (2.0, 3.1)
    results = {
        "report-tiny": fake_results(losses),
        "report-small": fake_results({f"{label}-small": value for label, value in losses.items()}),
    }
    summary = plan.summarize(results)
    assert "without the Fourier series, size tiny: log-ppl +0.010 ± 0.008: within the 95% interval" in summary
    assert "without the floor clipping, size small: log-ppl +0.700 ± 0.008: fope-small is lower" in summary
    assert f"clipping alone (RoPE vs clipping only) at {16 * L} (16x)" in summary


def test_sweep_cross_domain_and_extension_summaries(tmp_path, tiny_corpus):
    sweep = plan_experiment("sweep", tmp_path, sweeps=["sigma", "shape"], seeds=[0])
    sigma = {"fope-sigma0": (2.0, 2.5), "fope-sigma0.1": (2.0, 2.3), "fope": (2.0, 2.2), "fope-sigma0.5": (2.0, 2.21)}
    shape = {"fope": (2.0, 2.2), "fope-hd64": (1.9, 2.0), "fope-heads8": (2.1, 2.6), "fope-layers8": (2.0, 2.3)}
    summary = sweep.summarize({"report-sigma": fake_results(sigma), "report-shape": fake_results(shape)})
    assert "0.3 (preset)" in summary and "1,070,688" in summary
    assert f"lowest at the longest length: fope at {16 * L} (16x): fope-sigma0.5" in summary
    assert f"lowest at the longest length: fope-hd64 at {16 * L} (16x): fope 9.0 ± 0.1 vs fope-hd64" in summary

    cross = plan_experiment(
        "cross-domain",
        tmp_path,
        overrides=[f"data.source={tiny_corpus}"],
        train_sources=["plays"],
        eval_data=tiny_corpus / "verse",
    )
    labels = {"rope-plays": (2.0, 3.0), "fope-plays": (2.0, 2.2), "alibi-plays": (2.0, 2.1)}
    summary = cross.summarize({"report-in-domain": fake_results(labels), "report-verse": fake_results(labels)})
    assert "alibi-plays < fope-plays < rope-plays (the same ordering" in summary
    assert f"fope vs rope on the other text at {16 * L} (16x)" in summary

    extension = plan_experiment("extension", tmp_path, seeds=[0])
    arms = {
        "rope-to-yarn": (2.0, 2.6),
        "rope-to-fope": (2.0, 2.3),
        "fope-to-yarn": (2.0, 2.5),
        "fope-to-fope": (2.0, 2.2),
    }
    summary = extension.summarize({"report": fake_results(arms, train_length=2 * L)})
    assert f"150 steps x {BATCH} sequences x {2 * L} tokens = {150 * BATCH * 2 * L:,} tokens" in summary
    assert f"extension from rope (YaRN vs FoPE) at {32 * L} (16x)" in summary and "rope-to-fope is lower" in summary


def test_every_recipe_is_a_recipe():
    import dataclasses as dc
    import inspect
    import typing

    from fope.experiments import EXPERIMENTS
    from fope.experiments.recipes import RECIPES, Recipe

    # What the Protocol declares, read from it: a member added there is checked here too.
    attributes = typing.get_type_hints(Recipe)
    methods = {
        name: [p for p in inspect.signature(member).parameters if p != "self"]
        for name, member in vars(Recipe).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert set(attributes) == {"NAME", "Options"} and set(methods) == {"build"}  # the Protocol as documented
    assert set(RECIPES) == {*EXPERIMENTS, "demo"}
    for name, module in RECIPES.items():
        for attribute, kind in attributes.items():
            value = getattr(module, attribute)
            assert isinstance(value, type) if kind is type else isinstance(value, kind), (name, attribute)
        for method, parameters in methods.items():
            assert list(inspect.signature(getattr(module, method)).parameters) == parameters, (name, method)
        assert name == module.NAME and dc.is_dataclass(module.Options)
