"""Perplexity against length: numbers against a direct computation, spans and windows, bits per byte, the CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from fope.data.corpus import Document
from fope.data.tokenizer import train_bpe
from fope.evaluate import perplexity as perplexity_module
from fope.evaluate.chunks import select_spans, windows
from fope.evaluate.perplexity import (
    RECORD_KEYS,
    byte_counter,
    default_lengths,
    evaluate_perplexity,
    read_documents,
    span_ids,
    token_byte_counts,
)
from fope.model import ModelConfig, TransformerLM
from fope.runs import load_run


def test_default_lengths_are_one_to_sixteen_times_the_training_length():
    assert default_lengths(128) == [128, 256, 512, 1024, 2048]
    with pytest.raises(ValueError, match="train_length must be an int >= 1; got 0"):
        default_lengths(0)


def test_numbers_match_a_direct_computation(tiny_runs):
    run = load_run(tiny_runs["rope"])
    store = run.val_store()
    lengths, max_spans, seed = [32, 64, 128], 3, 5
    # batch_tokens=100 splits the 32-token windows into batches of 3: batching must not change the numbers
    results = evaluate_perplexity(
        run.model, store, run.tokenizer, lengths=lengths, train_length=32, max_spans=max_spans, seed=seed,
        batch_tokens=100, progress=False,
    )  # fmt: skip
    selection = select_spans(store.document_lengths, 129, max_spans, seed)
    spans = [
        np.asarray(store.document(s.document)[s.start : s.start + s.length], dtype=np.int64) for s in selection.spans
    ]
    assert results["spans"]["count"] == 3 and not results["spans"]["cross_document"]
    for record, length in zip(results["results"], lengths, strict=True):
        cut = torch.as_tensor(np.concatenate([windows(span, length) for span in spans]))
        with torch.no_grad():
            logits = run.model(cut[:, :-1]).logits
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), cut[:, 1:], reduction="none").double()
        expected_bytes = sum(len(run.tokenizer.decode(row.tolist()).encode()) for row in cut[:, 1:])  # ASCII text
        assert record["length"] == length and record["windows"] == len(cut)
        assert record["tokens"] == cut[:, 1:].numel() and record["bytes"] == expected_bytes
        assert record["loss"] == pytest.approx(losses.mean().item(), rel=1e-5)
        assert record["perplexity"] == pytest.approx(math.exp(losses.mean().item()), rel=1e-5)
        assert record["bits_per_byte"] == pytest.approx(losses.sum().item() / math.log(2) / expected_bytes, rel=1e-5)
        buckets = record["position_buckets"]
        assert [(b["start"], b["end"]) for b in buckets] == [(s, s + 32) for s in range(0, length, 32)]
        for bucket in buckets:
            expected = losses[:, bucket["start"] : bucket["end"]].mean().item()
            assert bucket["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["fope", "alibi", "nope"])
def test_every_position_encoding_evaluates_with_the_default_lengths(tiny_runs, name):
    run = load_run(tiny_runs[name])
    results = evaluate_perplexity(
        run.model, run.val_store(), run.tokenizer, train_length=32, max_spans=1, progress=False
    )
    assert results["lengths"] == [32, 64, 128, 256, 512]
    longest = results["results"][-1]
    assert longest["windows"] == 1 and len(longest["position_buckets"]) == 16
    for record in results["results"]:
        assert 0 < record["loss"] < 2 * math.log(300)  # finite and not absurd for a vocabulary of 300
        assert record["seconds"] >= 0


def _recorded_windows(monkeypatch):
    seen = []
    original = perplexity_module.token_losses

    def spy(model, inputs, targets):
        seen.append(torch.cat([inputs, targets[:, -1:]], dim=1).cpu().numpy())
        return original(model, inputs, targets)

    monkeypatch.setattr(perplexity_module, "token_losses", spy)
    return seen


def _inside_one(row, documents):
    for ids in documents:
        if len(ids) >= len(row):
            view = np.lib.stride_tricks.sliding_window_view(ids, len(row))
            if (view == row).all(axis=1).any():
                return True
    return False


def test_windows_stay_inside_documents_when_documents_are_long_enough(tiny_runs, monkeypatch):
    run = load_run(tiny_runs["rope"])
    texts = [" ".join(f"{word}{i}" for i in range(n)) for word, n in (("alpha", 30), ("beta", 400), ("gamma", 300))]
    documents = [Document(f"doc{i}", text, "test") for i, text in enumerate(texts)]
    ids = [np.asarray(run.tokenizer.encode(text)) for text in texts]
    assert len(ids[0]) < 257 <= min(len(ids[1]), len(ids[2]))
    seen = _recorded_windows(monkeypatch)
    results = evaluate_perplexity(
        run.model, documents, run.tokenizer, lengths=[64, 256], train_length=32, max_spans=50, progress=False
    )
    spans = results["spans"]
    assert not spans["cross_document"] and spans["eligible_documents"] == 2 and spans["documents"] == 3
    assert "2 of 3 documents" in spans["note"]
    rows = [row for batch in seen for row in batch]
    assert len(rows) == spans["count"] * (257 // 65 + 1)
    assert all(_inside_one(row, ids) for row in rows)


def test_short_documents_fall_back_to_the_stream_and_say_so(tiny_runs, monkeypatch):
    run = load_run(tiny_runs["rope"])
    documents = [Document(f"doc{i}", f"Short document number {i}, the end.", "test") for i in range(40)]
    seen = _recorded_windows(monkeypatch)
    results = evaluate_perplexity(
        run.model, documents, run.tokenizer, lengths=[32, 64], train_length=32, max_spans=4, progress=False
    )
    assert results["spans"]["cross_document"] and results["spans"]["eligible_documents"] == 0
    assert "windows cross document boundaries" in results["spans"]["note"]
    assert any(run.tokenizer.eos_id in batch for batch in seen)  # separators are inside the windows


def test_span_ids_of_the_stream_insert_separators():
    documents = [np.array([1, 2]), np.array([3, 4, 5]), np.array([6])]
    span = select_spans(np.array([2, 3, 1]), span_tokens=4, max_spans=1).spans[0]  # cross-document
    stream = [1, 2, 0, 3, 4, 5, 0, 6, 0]
    assert span.document == -1
    assert span_ids(documents, span, eos_id=0).tolist() == stream[span.start : span.start + 4]
    whole = type(span)(-1, 1, 7)
    assert span_ids(documents, whole, eos_id=0).tolist() == stream[1:8]


def test_bits_per_byte_is_loss_over_ln2_when_every_token_is_one_byte():
    text = "Æterna ü naïve café — 東京 and plain words. " * 20  # multi-byte characters cut by windows
    tokenizer = train_bpe([text], vocab_size=257)  # bytes only: every token is one byte
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=257, d_model=16, num_layers=1, num_heads=2, train_length=16))
    results = evaluate_perplexity(
        model, [Document("d", text, "t")], tokenizer, lengths=[16, 48], train_length=16, max_spans=4, progress=False
    )
    assert results["bytes_counted_by"] == "token table"
    for record in results["results"]:
        assert record["bytes"] == record["tokens"]
        assert record["bits_per_byte"] == pytest.approx(record["loss"] / math.log(2), rel=1e-12)


def test_byte_counting_of_byte_level_bpe_and_of_other_tokenizers(tiny_runs):
    tokenizer = load_run(tiny_runs["rope"]).tokenizer
    counts = token_byte_counts(tokenizer)
    ids = tokenizer.encode("The pass key is 4321. Æ")
    assert counts[tokenizer.eos_id] == 0
    assert counts[ids].sum() == len("The pass key is 4321. Æ".encode())

    class Words:
        """A tokenizer that is not byte-level BPE: one id per character, decoded by lookup."""

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    method, count = byte_counter(Words())
    assert method == "decoding windows"
    assert count(np.array([[ord("a"), ord("é")], [ord("b"), ord("c")]])) == 5


def test_read_documents(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("first")
    (tmp_path / "folder" / "b.txt").write_text("second")
    (tmp_path / "one.txt").write_text("only")
    (tmp_path / "lines.jsonl").write_text('{"body": "x"}\n{"body": "y"}\n')
    assert [d.text for d in read_documents(tmp_path / "folder")] == ["first", "second"]
    assert [d.text for d in read_documents(tmp_path / "one.txt")] == ["only"]
    assert [d.text for d in read_documents(tmp_path / "lines.jsonl", text_field="body")] == ["x", "y"]
    (tmp_path / "table.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"folder of \.txt files, a \.txt or a \.jsonl file; got .*table\.csv"):
        read_documents(tmp_path / "table.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_documents(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="'/dev/null' is not a folder or a regular file"):
        read_documents("/dev/null")  # it exists: "does not exist" would send the user looking for a typo


def test_argument_errors(tiny_runs):
    run = load_run(tiny_runs["rope"])
    store = run.val_store()
    with pytest.raises(ValueError, match="each length must be an int >= 1; got 0"):
        evaluate_perplexity(run.model, store, run.tokenizer, lengths=[0, 32], train_length=32, progress=False)
    with pytest.raises(ValueError, match="max_spans must be an int >= 1; got 0"):
        evaluate_perplexity(run.model, store, run.tokenizer, train_length=32, max_spans=0, progress=False)
    with pytest.raises(ValueError, match="fewer than one span of 100001"):
        evaluate_perplexity(run.model, store, run.tokenizer, lengths=[100000], train_length=1024, progress=False)


def test_a_length_past_the_limit_is_refused_before_any_work(tiny_runs, monkeypatch):
    """256 x the training length at most (eval, passkey and retrieval share the check): a far longer one was a hang."""
    run = load_run(tiny_runs["rope"])

    def no_work(*args, **kwargs):
        raise AssertionError("the documents were read for a length that is refused")

    monkeypatch.setattr("fope.evaluate.perplexity.document_tokens", no_work)
    message = r"lengths \[8193\] are more than 256 x the training length 32 = 8192 tokens; use lengths <= 8192"
    with pytest.raises(ValueError, match=message):
        evaluate_perplexity(run.model, run.val_store(), run.tokenizer, lengths=[64, 8193], train_length=32)


def test_cli_json_prints_only_the_records_and_saves_the_results(tiny_runs, tmp_path, capsys):
    from fope.cli import main

    run_dir = shutil.copytree(tiny_runs["rope"], tmp_path / "run")
    argv = ["eval", str(run_dir), "--lengths", "32,64", "--max-spans", "2", "--no-progress", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [record["length"] for record in printed] == [32, 64]
    assert all(tuple(record) == RECORD_KEYS for record in printed)
    saved = json.loads((run_dir / "eval" / "perplexity.json").read_text())
    assert saved["run"]["label"] == "rope" and saved["run"]["step"] == 8
    assert saved["data"] == "held-out split" and saved["spans"]["max_spans"] == 2
    assert [r["loss"] for r in saved["results"]] == [r["loss"] for r in printed]

    (tmp_path / "other.jsonl").write_text("".join(json.dumps({"text": "words " * 200}) + "\n" for _ in range(3)))
    assert (
        main(["eval", str(run_dir), "--data", str(tmp_path / "other.jsonl"), "--lengths", "32", "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    assert "perplexity" in out and "perplexity-other.json" in out
    assert json.loads((run_dir / "eval" / "perplexity-other.json").read_text())["data"].endswith("other.jsonl")

    assert main(["eval", str(run_dir), "--lengths", "0", "--no-progress"]) == 2
    assert "each length must be an int >= 1; got 0" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2


def test_arguments_of_the_wrong_kind_are_refused_by_name(tiny_runs):
    run = load_run(tiny_runs["rope"])
    store = run.val_store()
    common = {"train_length": 32, "max_spans": 1, "progress": False}
    for data in ("some text", ["some text"]):  # were AttributeError: 'str' object has no attribute 'text'
        with pytest.raises(TypeError, match="data must be a TokenStore or a list of Documents"):
            evaluate_perplexity(run.model, data, run.tokenizer, lengths=[32], **common)
    with pytest.raises(ValueError, match="lengths must be a non-empty list of ints"):  # was 'int' is not iterable
        evaluate_perplexity(run.model, store, run.tokenizer, lengths=32, **common)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):  # was numpy's "expected non-negative integer"
        evaluate_perplexity(run.model, store, run.tokenizer, lengths=[32], seed=-1, **common)
    documents = iter([Document("a", "the grass is green. " * 40, "test")])  # any iterable of Documents still works
    result = evaluate_perplexity(run.model, documents, run.tokenizer, lengths=[32], **common)
    assert result["results"][0]["length"] == 32
