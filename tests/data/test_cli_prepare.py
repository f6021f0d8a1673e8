import re

from fope.cli import main
from tests.data import fakes


def test_prepare_command_on_a_text_folder(tmp_path, capsys):
    corpus = fakes.text_corpus(tmp_path / "corpus", {"books": 4})
    argv = ["prepare", "--source", str(corpus), "--out", str(tmp_path / "out"), "--vocab-size", "300", "--seed", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"prepared data in {tmp_path / 'out'}" in printed
    assert "tokenizer: 300 tokens" in printed
    assert "train: 3 documents" in printed and "val: 1 documents" in printed
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"reused data in {tmp_path / 'out'}")


def test_prepare_with_fope_cache_on_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "cache"
    a_file.write_text("not a folder")
    monkeypatch.setenv("FOPE_CACHE", str(a_file))
    corpus = fakes.text_corpus(tmp_path / "corpus", {"books": 4})
    assert main(["prepare", "--source", str(corpus), "--vocab-size", "300"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"fope prepare: error: FOPE_CACHE must be a folder (existing or new); got {str(a_file)!r}: it is a file; point "
        "it at a folder, or unset it for ~/.cache/fope"
    ]


def test_prepare_warns_when_the_held_out_share_is_far_from_val_fraction(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "huge.txt").write_text(" ".join(fakes.english_like(seed).replace("\n", " ") for seed in range(40)))
    (corpus / "small.txt").write_text(fakes.english_like(999))
    assert main(["prepare", "--source", str(corpus), "--out", str(tmp_path / "out"), "--vocab-size", "300"]) == 0
    lines = re.split(r"[\r\n]", capsys.readouterr().err)  # progress bars rewrite their line with \r
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "the held-out split has " in warnings[0]
    assert "against val_fraction 0.1: the split holds out whole documents" in warnings[0]


def test_prepare_command_keeps_only_the_given_sources(tmp_path, capsys):
    corpus = fakes.text_corpus(tmp_path / "corpus", {"books": 4, "letters": 3})
    argv = ["prepare", "--source", str(corpus), "--out", str(tmp_path / "out"), "--vocab-size", "300"]
    assert main([*argv, "--sources", "letters"]) == 0
    assert "train: 2 documents" in capsys.readouterr().out
