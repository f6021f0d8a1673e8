"""Campaigns and the results folder: a run whose stored results match is neither trained nor evaluated, stored
results with other settings stop the campaign, starts of stored runs are not trained, evaluations are stored as they
finish (small files, stored numbers never replaced), and a campaign continues on another machine from the JSON alone."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from fope.config import load_config, to_dict
from fope.errors import CampaignError
from fope.evaluate.passkey import evaluate_run_passkey
from fope.evaluate.perplexity import evaluate_run_perplexity
from fope.experiments import format_experiment, plan_experiment, run_experiment
from fope.experiments.campaign import (
    Campaign,
    PlannedRun,
    Report,
    format_plan,
    run_campaign,
    worker_evaluations,
)
from fope.experiments.stored import checked_store, store_run
from fope.report.store import portable, read_json, read_run, write_json
from tests.conftest import tiny_run_config
from tests.report.fakes import stored_run
from tests.test_experiments import tiny_overrides


def no_work(*args, **kwargs):
    raise AssertionError("nothing should be trained, evaluated or prepared")


def campaign_of(corpus, results, *changes: str, **settings) -> Campaign:
    run = PlannedRun("rope-s0", load_config(base=tiny_run_config(corpus), overrides=list(changes)))
    return Campaign((run,), (Report("report", "stored", ("rope-s0",)),), results=results, name="demo", **settings)


def store_rope(results, out, corpus, *changes: str) -> dict:
    config = load_config(base=tiny_run_config(corpus), overrides=list(changes))
    losses, accuracy = {32: 3.0, 512: 4.5}, {32: 0.75, 64: 0.25}
    return stored_run(results, "rope-s0", "rope", 0, losses, accuracy=accuracy, config=portable(to_dict(config), out))


def test_a_stored_run_is_neither_trained_nor_evaluated(tmp_path, tiny_corpus, monkeypatch):
    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus)
    monkeypatch.setattr("fope.executor.subprocess.Popen", no_work)
    monkeypatch.setattr("fope.build.prepare_run_data", no_work)
    printed = []
    outcome = run_campaign(campaign_of(tiny_corpus, results), out, log=printed.append)
    group = outcome["report"]["groups"]["rope"]
    assert [row["loss"]["mean"] for row in group["perplexity"]["by_length"]] == [3.0, 4.5]
    assert [row["accuracy"]["mean"] for row in group["passkey"]["by_length"]] == [0.75, 0.25]
    assert not (out / "runs" / "rope-s0").exists() and (out / "report" / "report.md").is_file()
    assert "using the stored results of 1 run(s)" in printed[0]
    recipe = read_json(results / "demo.json", "recipe")
    assert recipe["reports"][0]["runs"] == ["rope-s0"] and recipe["reports"][0]["evaluation"] == "perplexity"


def test_a_run_stored_before_a_config_key_existed_matches_when_the_key_keeps_its_default(
    tmp_path, tiny_corpus, monkeypatch
):
    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus)
    record = json.loads((results / "runs" / "rope-s0.json").read_text())
    del record["config"]["train"]["init_positions"]  # stored by a fope without the option
    (results / "runs" / "rope-s0.json").write_text(json.dumps(record))
    monkeypatch.setattr("fope.executor.subprocess.Popen", no_work)
    monkeypatch.setattr("fope.build.prepare_run_data", no_work)
    outcome = run_campaign(campaign_of(tiny_corpus, results), out, log=lambda _: None)
    assert outcome["report"]["groups"]["rope"]["n"] == 1
    with pytest.raises(CampaignError, match=r"train\.init_positions: 'fresh' there, 'expand' here"):
        run_campaign(campaign_of(tiny_corpus, results, "train.init_positions=expand"), out, log=lambda _: None)


def test_a_run_stored_with_other_checkpoint_steps_matches(tmp_path, tiny_corpus, monkeypatch):
    """Where a run saved its checkpoints does not change its numbers: results stored by a campaign that checkpointed
    only at the end are reused by one that checkpoints every 500 steps; the run length still has to match."""
    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus, "train.checkpoint_every=8")
    monkeypatch.setattr("fope.executor.subprocess.Popen", no_work)
    monkeypatch.setattr("fope.build.prepare_run_data", no_work)
    campaign = campaign_of(tiny_corpus, results, "train.checkpoint_every=2")
    assert run_campaign(campaign, out, log=lambda _: None)["report"]["groups"]["rope"]["n"] == 1
    with pytest.raises(CampaignError, match=r"train\.max_steps: 8 there, 16 here"):
        run_campaign(campaign_of(tiny_corpus, results, "train.max_steps=16"), out, log=lambda _: None)


def test_stored_results_with_other_settings_stop_the_campaign_before_anything_runs(tmp_path, tiny_corpus, monkeypatch):
    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus, "optim.lr=0.1")
    monkeypatch.setattr("fope.executor.subprocess.Popen", no_work)
    with pytest.raises(CampaignError, match=r"rope-s0\.json: optim\.lr: 0\.1 there, 0\.003 here"):
        run_campaign(campaign_of(tiny_corpus, results), out, log=lambda _: None)
    assert not out.exists()
    store_rope(results, out, tiny_corpus)
    with pytest.raises(CampaignError, match=r"perplexity max_spans: 24 there, 4 here"):
        run_campaign(campaign_of(tiny_corpus, results, max_spans=4), out, log=lambda _: None)
    with pytest.raises(CampaignError, match=r"passkey trials: 100 there, 20 here"):
        run_campaign(campaign_of(tiny_corpus, results, passkey_trials=20), out, log=lambda _: None)
    text = format_plan(campaign_of(tiny_corpus, results, max_spans=4), out)
    assert "holds other settings, the campaign would stop: perplexity max_spans: 24 there, 4 here" in text


def test_the_dry_run_shows_which_runs_come_from_stored_results(tmp_path, tiny_corpus):
    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus)
    text = format_plan(campaign_of(tiny_corpus, results), out)
    assert re.search(r"rope-s0\s+rope\s+stored", text)
    assert "(1 of 1 runs come from stored results" in text and "worker train" not in text
    assert "worker evaluate" not in text
    perplexity_only = format_plan(campaign_of(tiny_corpus, results, passkey_trials=None), out)
    assert "(1 of 1 runs come" in perplexity_only
    (results / "runs" / "rope-s0.json").unlink()
    text = format_plan(campaign_of(tiny_corpus, results), out)
    assert re.search(r"rope-s0\s+rope\s+new", text) and "(0 of 1 runs come" in text and "worker train" in text


def test_a_campaign_continues_elsewhere_from_the_stored_extension_runs(tmp_path):
    """Extension runs start from runs in OUT (train.init_from): stored under $OUT, they match in another OUT, and
    their start runs need no training; without one stored arm, its start is trained again."""
    here, there, results = tmp_path / "here", tmp_path / "there", tmp_path / "results"
    plan = plan_experiment("extension", here, results, seeds=[0])
    arms = [run for run in plan.campaign.runs if run.after]
    for run in arms:
        assert to_dict(run.config)["train"]["init_from"].startswith(str(here.resolve()))
        config = portable(to_dict(run.config), here)
        stored_run(results, run.name, run.config.name, 0, {256: 3.0, 4096: 4.0}, accuracy={256: 1.0}, config=config)
    elsewhere = plan_experiment("extension", there, results, seeds=[0])
    assert checked_store(elsewhere.campaign, there) == {run.name for run in elsewhere.campaign.runs}
    assert "(7 of 7 runs come from stored results" in format_experiment(elsewhere)
    (results / "runs" / "rope-to-yarn-s0.json").unlink()
    assert checked_store(elsewhere.campaign, there) == {
        "fope-s0",
        "fope-to-yarn-s0",
        "fope-to-fope-s0",
        "fope-to-fope-expand-s0",
        "rope-to-fope-s0",
    }


def test_evaluations_are_stored_small_and_stored_numbers_are_never_replaced(tmp_path, tiny_runs, tiny_corpus):
    out, results = tmp_path / "out", tmp_path / "results"
    run_dir = shutil.copytree(tiny_runs["rope"], out / "runs" / "rope-s0")
    evaluate_run_perplexity(run_dir, max_spans=2, device="cpu", progress=False)  # as the campaign's worker does
    evaluate_run_passkey(run_dir, trials=3, device="cpu", progress=False)
    campaign = campaign_of(tiny_corpus, results, max_spans=2, passkey_trials=3)
    assert worker_evaluations(campaign, "rope-s0", run_dir) is None  # nothing pending: the campaign stores it
    store_run(campaign, "rope-s0", out)
    path = results / "runs" / "rope-s0.json"
    assert path.stat().st_size < 50_000
    record = read_run(results, "rope-s0")
    assert record["config"] == portable(to_dict(campaign.runs[0].config), out) and "path" not in record["summary"]
    assert record["summary"]["seed"] == 0 and record["summary"]["position"] == "rope"
    perplexity, passkey = record["evaluations"]["perplexity"], record["evaluations"]["passkey"]
    assert perplexity["settings"] == {"data": None, "max_spans": 2} and passkey["settings"] == {"trials": 3}
    assert "trials" not in passkey["result"] and passkey["result"]["trials_per_length"] == 3
    assert [row["length"] for row in perplexity["result"]["results"]] == [32, 64, 128, 256, 512]
    assert perplexity["checkpoint"]["step"] == 8 and re.fullmatch(r"[0-9a-f]{64}", perplexity["checkpoint"]["sha256"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", perplexity["evaluated"]) and perplexity["fope_version"]
    before = path.read_bytes()
    eval_file = run_dir / "eval" / "perplexity.json"
    changed = json.loads(eval_file.read_text())
    changed["results"][0]["loss"] = 99.0
    eval_file.write_text(json.dumps(changed))
    store_run(campaign, "rope-s0", out)
    assert path.read_bytes() == before
    # A record stored before the model section was typed (only the keys that were set) keeps that form when an
    # evaluation is added to it: the same config, so the same config hash in docs/results.md.
    sparse = portable(tiny_run_config(tiny_corpus), out)
    assert "vocab_size" not in sparse["model"] and to_dict(load_config(base=sparse)) == record["config"]
    write_json(path, {**record, "config": sparse, "evaluations": {"perplexity": perplexity}})
    store_run(campaign, "rope-s0", out)
    again = read_run(results, "rope-s0")
    assert again["config"] == sparse and again["evaluations"]["passkey"]["settings"] == {"trials": 3}
    # An evaluation of one length with the campaign's settings merges into the file: nothing is pending...
    evaluate_run_passkey(run_dir, lengths=[256], trials=3, device="cpu", progress=False)
    assert worker_evaluations(campaign, "rope-s0", run_dir) is None
    # ...one with other settings (fope passkey --lengths 256 --seed 1) replaces it: not the campaign's, pending again.
    evaluate_run_passkey(run_dir, lengths=[256], trials=3, seed=1, device="cpu", progress=False)
    assert worker_evaluations(campaign, "rope-s0", run_dir) == {"perplexity": [], "max_spans": 2, "trials": 3}
    evaluate_run_perplexity(run_dir, lengths=[32, 64], max_spans=2, device="cpu", progress=False)  # merged by length
    assert worker_evaluations(campaign, "rope-s0", run_dir)["perplexity"] == []
    (run_dir / "eval" / "perplexity.json").unlink()
    evaluate_run_perplexity(run_dir, lengths=[32, 64], max_spans=2, device="cpu", progress=False)  # 1x, 2x only
    assert worker_evaluations(campaign, "rope-s0", run_dir)["perplexity"] == [None]
    for garbage in ("{not json", "[]", "null"):  # an eval file that does not read is evaluated again, not a traceback
        (run_dir / "eval" / "passkey.json").write_text(garbage)
        assert worker_evaluations(campaign, "rope-s0", run_dir)["trials"] == 3


def test_each_run_is_evaluated_and_stored_as_soon_as_its_training_ends(tmp_path, tiny_corpus, monkeypatch):
    """One worker, two runs: the first run's results reach the results folder before the second run trains."""
    import subprocess

    out, results = tmp_path / "out", tmp_path / "results"
    runs = tuple(
        PlannedRun(f"{position}-s0", load_config(base=tiny_run_config(tiny_corpus, position, max_steps=4)))
        for position in ("rope", "fope")
    )
    report = Report("report", "as they come", tuple(run.name for run in runs))
    campaign = Campaign(runs, (report,), max_spans=2, passkey_trials=None, jobs=1, results=results, name="demo")
    started, real = [], subprocess.Popen

    def recording(command, *args, **kwargs):
        if "fope.worker" in command:  # not git, which provenance asks through the same module
            action = command[command.index("fope.worker") + 1]
            run = command[-2] if action == "evaluate" else command[-1]
            stored = sorted(path.name for path in (results / "runs").glob("*.json"))
            started.append((action, run.rsplit("/", 1)[-1], stored))
        return real(command, *args, **kwargs)

    monkeypatch.setattr("fope.executor.subprocess.Popen", recording)
    outcome = run_campaign(campaign, out, log=lambda _: None)
    assert started == [
        ("train", "rope-s0", []),
        ("evaluate", "rope-s0", []),
        ("train", "fope-s0", ["rope-s0.json"]),
        ("evaluate", "fope-s0", ["rope-s0.json"]),
    ]
    assert sorted(path.name for path in (results / "runs").iterdir()) == ["fope-s0.json", "rope-s0.json"]
    assert set(outcome["report"]["groups"]) == {"rope", "fope"}


def test_an_extended_run_is_evaluated_after_its_new_training_ends(tmp_path, tiny_corpus, monkeypatch):
    """Two workers: a run trained for 2 steps, then extended to 4, stores the evaluation of step 4, and no
    evaluation starts before its run's training has exited."""
    import subprocess

    out, results = tmp_path / "out", tmp_path / "results"

    def runs(steps: int) -> tuple[PlannedRun, ...]:
        configs = [tiny_run_config(tiny_corpus, p, max_steps=steps, checkpoint_every=2) for p in ("rope", "fope")]
        return tuple(PlannedRun(f"{c['name']}-s0", load_config(base=c)) for c in configs)

    report = Report("report", "extended", ("rope-s0", "fope-s0"))
    run_campaign(Campaign(runs(2), (report,), max_spans=2, passkey_trials=None), out, log=lambda _: None)
    training, real, early = {}, subprocess.Popen, []

    def recording(command, *args, **kwargs):
        process = real(command, *args, **kwargs)
        if "fope.worker" in command:
            action = command[command.index("fope.worker") + 1]
            run = (command[-2] if action == "evaluate" else command[-1]).rsplit("/", 1)[-1]
            if action == "train":
                training[run] = process
            elif run not in training or training[run].poll() is None:
                early.append(run)
        return process

    monkeypatch.setattr("fope.executor.subprocess.Popen", recording)
    campaign = Campaign(runs(4), (report,), max_spans=2, passkey_trials=None, jobs=2, results=results, name="demo")
    run_campaign(campaign, out, log=lambda _: None)
    assert set(training) == {"rope-s0", "fope-s0"} and early == []
    for name in ("rope-s0", "fope-s0"):
        assert read_run(results, name)["evaluations"]["perplexity"]["checkpoint"]["step"] == 4


@pytest.mark.slow
def test_a_campaign_stops_and_continues_on_another_machine_from_the_json_alone(tmp_path, tiny_corpus, monkeypatch):
    options = {
        "seeds": [0],
        "steps": 4,
        "overrides": tiny_overrides(tiny_corpus),
        "passkey_trials": 0,
        "max_spans": 2,
        "encodings": ["rope", "fope"],
    }
    results = tmp_path / "results"
    first = run_experiment(plan_experiment("baselines", tmp_path / "a", results, **options), log=lambda _: None)
    assert sorted(path.name for path in (results / "runs").iterdir()) == ["fope-s0.json", "rope-s0.json"]
    monkeypatch.setattr("fope.executor.subprocess.Popen", no_work)
    monkeypatch.setattr("fope.build.prepare_run_data", no_work)
    again = run_experiment(plan_experiment("baselines", tmp_path / "b", results, **options), log=lambda _: None)
    assert not (tmp_path / "b" / "runs").exists()
    numbers = [
        {label: group["perplexity"]["by_length"] for label, group in outcome["results"]["report"]["groups"].items()}
        for outcome in (first, again)
    ]
    assert numbers[0] == numbers[1] and set(numbers[0]) == {"rope", "fope"}


def test_reports_of_stored_runs_use_a_finished_local_run_folder_for_model_sections(tmp_path, tiny_runs, tiny_corpus):
    from fope.experiments.campaign import write_reports

    out, results = tmp_path / "out", tmp_path / "results"
    store_rope(results, out, tiny_corpus)
    run = campaign_of(tiny_corpus, results).runs[0]
    campaign = Campaign((run,), (Report("report", "t", ("rope-s0",), attention=True),), results=results)
    run_dirs = {"rope-s0": out / "runs" / "rope-s0"}
    alone = write_reports(campaign, run_dirs, tmp_path / "alone", skip={"rope-s0"})["report"]
    assert alone["sections"] == {} and any("without a run folder" in note for note in alone["notes"])
    assert alone["groups"]["rope"]["runs"][0]["path"] == str(results / "runs" / "rope-s0.json")
    shutil.copytree(tiny_runs["rope"], run_dirs["rope-s0"])
    local = write_reports(campaign, run_dirs, tmp_path / "local", skip={"rope-s0"})["report"]
    assert "Attention past the training length" in local["sections"]
    assert local["groups"]["rope"]["perplexity"]["by_length"][1]["loss"]["mean"] == 4.5  # the stored numbers


def test_evaluation_text_is_not_prepared_when_every_run_comes_from_stored_results(tmp_path, monkeypatch):
    from fope.experiments.common import prepare_unless_stored
    from fope.report.store import evaluation_entry, run_record, write_json
    from tests.report.fakes import perplexity_result, summary

    exported = []
    monkeypatch.setattr("fope.experiments.cross_domain.export_source", lambda *args: exported.append(args) or "done")
    out, results = tmp_path / "out", tmp_path / "results"
    plan = plan_experiment("cross-domain", out, results, seeds=[0])
    bible = {"data": "$OUT/eval-data/bible", "max_spans": 24}
    for run in plan.campaign.runs:
        entries = {
            key: evaluation_entry(perplexity_result({128: 3.0}), settings, out)
            for key, settings in (("perplexity", {"data": None, "max_spans": 24}), ("perplexity-bible", bible))
        }
        record = run_record(run.name, portable(to_dict(run.config), out), summary(run.config.name, 0), entries)
        write_json(results / "runs" / f"{run.name}.json", record)
    assert prepare_unless_stored(plan) == "every run comes from stored results: nothing to prepare" and exported == []
    (results / "runs" / "rope-shakespeare-s0.json").unlink()
    assert prepare_unless_stored(plan) == "done" and len(exported) == 1
