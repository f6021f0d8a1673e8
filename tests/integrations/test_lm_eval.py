"""lm-eval's ``hf`` model on an exported tiny run: a local passkey task (fope's own prompts), offline, checked by hand.

lm-eval runs in a subprocess with HF_HOME in a temporary folder, the hub and datasets offline and outbound sockets
refused, so the test neither touches the user's caches nor the network; its numbers are then recomputed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("lm_eval")
pytest.importorskip("accelerate", reason="lm-eval's hf model imports accelerate: pip install 'lm-eval[hf]'")

from fope.evaluate.passkey import build_passkey_prompt, min_prompt_tokens, score_answer
from fope.integrations.export import export_run
from fope.runs import load_run

MAX_LENGTH = 512  # lm-eval truncates prompts to max_length; the tiny run trained at 32 tokens, the prompts are longer
MAX_NEW_TOKENS = 8
STOP = "\n"

GENERATE_TASK = """\
task: fope_passkey
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: {max_new_tokens}
  do_sample: false
filter_list:
  - name: first_integer
    filter:
      - function: regex
        regex_pattern: "(\\\\d+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

LOGLIKELIHOOD_TASK = """\
task: fope_passkey_loglikelihood
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{prompt}}}}"
doc_to_target: " {{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

# Runs lm-eval and, for comparison, the exported model itself (plain transformers) on the first prompt.
RUNNER = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"this test runs offline; something tried to connect to {address}")
        return original_connect(self, address, *args, **kwargs)

    original_connect = socket.socket.connect
    socket.socket.connect = refuse

    import lm_eval
    import lm_eval.tasks
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, task_dir, out, max_length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},trust_remote_code=True,max_length={max_length},dtype=float32",
        tasks=["fope_passkey", "fope_passkey_loglikelihood"],
        task_manager=lm_eval.tasks.TaskManager(include_path=task_dir, include_defaults=False),
        device="cpu",
        batch_size=2,
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = {
        task: [
            {"doc": s["doc"], "resps": s["resps"], "filtered_resps": s["filtered_resps"], "metrics": s["metrics"],
             **{name: s[name] for name in s["metrics"]}}
            for s in task_samples
        ]
        for task, task_samples in results["samples"].items()
    }
    first = samples["fope_passkey_loglikelihood"][0]["doc"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    context = tokenizer(first["prompt"], add_special_tokens=False)["input_ids"]
    whole = tokenizer(first["prompt"] + " " + first["answer"], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole]), use_cache=False).logits.float()
    log_probs = logits[0, len(context) - 1 : -1].log_softmax(-1)
    direct = float(log_probs.gather(-1, torch.tensor(whole[len(context):]).unsqueeze(-1)).sum())
    report = {"results": results["results"], "samples": samples, "direct_loglikelihood": direct}
    json.dump(report, open(out, "w"), default=float)
    """
)


@pytest.fixture(scope="module")
def evaluated(tiny_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-eval")
    run = load_run(tiny_runs["fope"])
    model_dir = export_run(tiny_runs["fope"], root / "model")
    encode = run.tokenizer.encode
    shortest = min_prompt_tokens(encode)
    rng = np.random.default_rng(0)
    prompts = [build_passkey_prompt(encode, shortest + extra, rng) for extra in (8, 8, 160, 160)]
    assert all(prompt.num_tokens + MAX_NEW_TOKENS < MAX_LENGTH for prompt in prompts)
    task_dir = root / "tasks"
    task_dir.mkdir()
    data = task_dir / "passkey.jsonl"
    data.write_text("".join(json.dumps({"prompt": p.text, "answer": str(p.key)}) + "\n" for p in prompts))
    (task_dir / "fope_passkey.yaml").write_text(GENERATE_TASK.format(data=data, max_new_tokens=MAX_NEW_TOKENS))
    (task_dir / "fope_passkey_loglikelihood.yaml").write_text(LOGLIKELIHOOD_TASK.format(data=data))
    (root / "runner.py").write_text(RUNNER)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_HOME=str(root / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="0",
    )
    out = root / "report.json"
    completed = subprocess.run(
        [sys.executable, str(root / "runner.py"), str(model_dir), str(task_dir), str(out), str(MAX_LENGTH)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return {"run": run, "prompts": prompts, "report": json.loads(out.read_text())}


def lab_loglikelihood(run, prompt: str, continuation: str) -> float:
    """Sum of the lab model's log-probabilities of ``continuation`` after ``prompt`` (fope's own tokenizer)."""
    context, whole = run.tokenizer.encode(prompt), run.tokenizer.encode(prompt + continuation)
    assert whole[: len(context)] == context
    with torch.no_grad():
        logits = run.model(torch.tensor([whole])).logits.float()
    log_probs = logits[0, len(context) - 1 : -1].log_softmax(-1)
    return float(log_probs.gather(-1, torch.tensor(whole[len(context) :]).unsqueeze(-1)).sum())


def lab_answer(run, prompt) -> str:
    """The lab model's greedy continuation, cut where lm-eval's generate_until cuts it (the stop string or EOS)."""
    generated = run.model.generate(torch.tensor([prompt.token_ids]), MAX_NEW_TOKENS)
    text = run.tokenizer.decode(generated[0, prompt.num_tokens :].tolist())
    for stop in (STOP, run.tokenizer.eos_token):
        text = text.split(stop)[0]
    return text


def test_the_run_completes_with_an_accuracy_over_every_prompt(evaluated):
    report, count = evaluated["report"], len(evaluated["prompts"])
    for task, metric in (("fope_passkey", "exact_match,first_integer"), ("fope_passkey_loglikelihood", "acc,none")):
        accuracy = report["results"][task][metric]
        assert isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0
        assert len(report["samples"][task]) == count
        assert report["results"][task]["sample_len"] == count
    docs = [sample["doc"] for sample in report["samples"]["fope_passkey"]]
    assert sorted(doc["answer"] for doc in docs) == sorted(str(p.key) for p in evaluated["prompts"])


def test_lm_evals_loglikelihood_is_the_models(evaluated):
    report, run = evaluated["report"], evaluated["run"]
    sample = report["samples"]["fope_passkey_loglikelihood"][0]
    loglikelihood, is_greedy = sample["filtered_resps"][0]
    doc = sample["doc"]
    assert loglikelihood == pytest.approx(report["direct_loglikelihood"], abs=1e-4)
    assert loglikelihood == pytest.approx(lab_loglikelihood(run, doc["prompt"], " " + doc["answer"]), abs=1e-4)
    assert loglikelihood < 0 and isinstance(is_greedy, bool)


def test_lm_evals_greedy_answers_are_the_lab_models(evaluated):
    run, prompts = evaluated["run"], {p.text: p for p in evaluated["prompts"]}
    samples = evaluated["report"]["samples"]["fope_passkey"]
    right = []
    for sample in samples:
        prompt = prompts[sample["doc"]["prompt"]]
        expected = lab_answer(run, prompt)
        assert sample["resps"][0][0] == expected
        right.append(score_answer(expected, prompt.key))
        assert sample["exact_match"] == float(right[-1])
    accuracy = evaluated["report"]["results"]["fope_passkey"]["exact_match,first_integer"]
    assert accuracy == pytest.approx(sum(right) / len(right))
