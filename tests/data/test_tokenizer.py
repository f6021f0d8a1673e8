import json

import pytest
import torch

from fope.data.tokenizer import EOS_TOKEN, Tokenizer, TokenizerFileError, train_bpe
from fope.errors import FopeError
from tests.data import fakes

TEXTS = [fakes.english_like(seed, num_words=2000) for seed in range(4)]
UNSEEN = [
    "Ünïcödé: naïve café, straße, Ελληνικά, русский, 日本語のテキスト, 한국어, emoji 🙂👍🏽, combining é",
    "  leading spaces,\ttabs, trailing spaces  \n\n\r\n windows line ends and a NUL \x00 byte",
    "a literal <|endoftext|> inside a document is text, not EOS",
    "",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_bpe(TEXTS, vocab_size=320)


def test_vocab_size_and_eos(tokenizer):
    assert tokenizer.vocab_size == 320
    assert tokenizer.eos_id == tokenizer.backend.token_to_id(EOS_TOKEN)
    assert tokenizer.decode([tokenizer.eos_id]) == EOS_TOKEN


@pytest.mark.parametrize("text", UNSEEN + TEXTS[:1])
def test_round_trip_any_text(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < tokenizer.vocab_size for i in ids)


def test_special_token_string_is_not_eos(tokenizer):
    assert tokenizer.eos_id not in tokenizer.encode(UNSEEN[2])


def test_merges_compress_training_text(tokenizer):
    assert len(tokenizer.encode(TEXTS[0])) < 0.6 * len(TEXTS[0].encode())


def test_encode_batch_matches_encode(tokenizer):
    assert tokenizer.encode_batch(UNSEEN) == [tokenizer.encode(text) for text in UNSEEN]


def test_257_is_pure_bytes():
    tokenizer = train_bpe(TEXTS, vocab_size=257)
    assert tokenizer.vocab_size == 257
    for text in UNSEEN:
        ids = tokenizer.encode(text)
        assert len(ids) == len(text.encode("utf-8"))
        assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("vocab_size", [256, 0, 1000.0, True])
def test_vocab_size_below_257_is_an_error(vocab_size):
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 257 \(256 bytes \+ the EOS token\)"):
        train_bpe(TEXTS, vocab_size=vocab_size)


def test_training_is_deterministic(tokenizer):
    assert train_bpe(TEXTS, vocab_size=320).backend.to_str() == tokenizer.backend.to_str()


def test_save_and_load_file_and_folder(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    for source in (path, path.parent):
        loaded = Tokenizer.load(source)
        assert (loaded.vocab_size, loaded.eos_id) == (tokenizer.vocab_size, tokenizer.eos_id)
        assert loaded.encode_batch(UNSEEN) == tokenizer.encode_batch(UNSEEN)


def test_load_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer path must be a tokenizer.json file"):
        Tokenizer.load(tmp_path / "missing")
    path = tokenizer.save(tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="no token '</s>'"):
        Tokenizer.load(path, eos_token="</s>")


@pytest.mark.parametrize("text", ["this is not a tokenizer {", '{"not": "a tokenizer"}', ""])
def test_a_file_that_does_not_parse_is_one_line_naming_it(tmp_path, text):
    garbage = tmp_path / "folder" / "tokenizer.json"
    garbage.parent.mkdir()
    garbage.write_text(text)
    for source in (garbage, garbage.parent):
        with pytest.raises(TokenizerFileError, match="cannot read the tokenizer file") as caught:
            Tokenizer.load(source)
        assert isinstance(caught.value, FopeError) and str(garbage) in str(caught.value)
        assert "\n" not in str(caught.value)


def test_load_transformers_folder(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token=EOS_TOKEN)
    fast.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer_config.json").is_file()
    loaded = Tokenizer.load(tmp_path)
    assert loaded.eos_id == tokenizer.eos_id
    assert loaded.encode_batch(UNSEEN) == tokenizer.encode_batch(UNSEEN)
    assert loaded.decode(loaded.encode(UNSEEN[0])) == UNSEEN[0]


def test_load_transformers_folder_uses_its_eos(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token="<eos>")
    fast.add_special_tokens({"eos_token": "<eos>"})
    fast.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["eos_token"] == "<eos>"
    loaded = Tokenizer.load(tmp_path)
    assert loaded.eos_token == "<eos>"
    assert loaded.eos_id == tokenizer.vocab_size  # the added token comes after the trained vocabulary


def test_digits_are_one_token_each_even_where_the_corpus_repeats_numbers():
    numbers = ["2024 12345 99 100000 3.14159"] * 200  # frequent enough that BPE would merge digit pairs
    tokenizer = train_bpe([*numbers, "the pass key is 48213."] * 5, 400)
    for text in ["48213", " 2024", "x100000y", "3.14159"]:
        pieces = [tokenizer.decode([token]) for token in tokenizer.encode(text)]
        assert "".join(pieces) == text
        assert all(len(piece) == 1 for piece in pieces if any(ch.isdigit() for ch in piece)), pieces
    assert len(tokenizer.encode("12345")) == 5


def test_bad_inputs_to_train_and_decode_are_refused(tokenizer):
    with pytest.raises(TypeError, match="not one string"):  # a str trained on its single characters
        train_bpe("some text", 300)
    with pytest.raises(ValueError, match="min_frequency must be an int >= 0"):
        train_bpe(["some text"], 300, min_frequency=-1)
    for ids in ([-1], [1.7]):  # were an OverflowError and id 1
        with pytest.raises(ValueError, match="decode takes token ids, ints >= 0"):
            tokenizer.decode(ids)
    assert tokenizer.decode(torch.tensor(tokenizer.encode("the grass"))) == "the grass"
    # a model's vocabulary may be larger than the tokenizer's: what it generates there has no text
    assert tokenizer.decode([*tokenizer.encode("the"), tokenizer.vocab_size + 5]) == "the"
