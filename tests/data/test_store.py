import json

import numpy as np
import pytest

from fope.data.store import TokenStore, TokenStoreError, token_dtype

DOCUMENTS = [("first", [5, 6, 7], 11), ("empty", [], 0), ("third", np.array([9, 1], dtype=np.int64), 4)]


@pytest.fixture
def store(tmp_path) -> TokenStore:
    return TokenStore.write(tmp_path / "store", DOCUMENTS, vocab_size=10, eos_id=0)


def test_documents_are_back_to_back_with_eos(store):
    assert store.tokens.tolist() == [5, 6, 7, 0, 0, 9, 1, 0]
    assert (store.num_tokens, store.num_documents) == (8, 3)
    assert (store.vocab_size, store.eos_id, store.num_bytes) == (10, 0, 15)


def test_document_views(store):
    for i, (name, ids, num_bytes) in enumerate(DOCUMENTS):
        document = store.document(i)
        assert document.tolist() == list(ids)
        assert not document.flags.writeable
        assert store.document_name(i) == name
        assert store.document_bytes(i) == num_bytes
    assert store.document_lengths.tolist() == [3, 0, 2]


def test_open_reads_the_same_store(store):
    reopened = TokenStore.open(store.path)
    assert reopened.tokens.tolist() == store.tokens.tolist()
    assert [reopened.document_name(i) for i in range(3)] == ["first", "empty", "third"]
    reopened.verify()


@pytest.mark.parametrize("index", [3, -1, 1.0, True])
def test_document_index_out_of_range(store, index):
    with pytest.raises(IndexError, match=r"document index must be an int in \[0, 3\)"):
        store.document(index)


@pytest.mark.parametrize(
    ("vocab_size", "dtype", "itemsize"), [(257, "uint16", 2), (65536, "uint16", 2), (65537, "uint32", 4)]
)
def test_dtype_follows_vocab_size(tmp_path, vocab_size, dtype, itemsize):
    assert token_dtype(vocab_size) == dtype
    top = vocab_size - 1
    store = TokenStore.write(tmp_path / "s", [("d", [top, 1], 2)], vocab_size=vocab_size, eos_id=0)
    assert store.meta["dtype"] == dtype
    assert (store.path / "tokens.bin").stat().st_size == 3 * itemsize
    assert store.document(0).tolist() == [top, 1]


@pytest.mark.parametrize("bad", [10, -1])
def test_out_of_range_ids_are_an_error_and_leave_nothing(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"document 'second' has token id {bad}, outside \[0, vocab_size=10\)"):
        TokenStore.write(tmp_path / "s", [("first", [1], 1), ("second", [2, bad], 2)], vocab_size=10, eos_id=0)
    assert list(tmp_path.iterdir()) == []


def test_write_errors(tmp_path, store):
    with pytest.raises(FileExistsError, match="already exists"):
        TokenStore.write(store.path, DOCUMENTS, vocab_size=10, eos_id=0)
    with pytest.raises(ValueError, match="at least one document"):
        TokenStore.write(tmp_path / "none", [], vocab_size=10, eos_id=0)
    with pytest.raises(ValueError, match=r"eos_id must be an int in \[0, vocab_size=10\); got 10"):
        TokenStore.write(tmp_path / "eos", DOCUMENTS, vocab_size=10, eos_id=10)
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        TokenStore.write(tmp_path / "floats", [("f", [1.5], 1)], vocab_size=10, eos_id=0)


def test_truncated_tokens_fail_on_open(store):
    tokens = store.path / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    with pytest.raises(TokenStoreError, match=r"tokens.bin has 14 bytes but meta.json says 8 uint16 tokens.*truncated"):
        TokenStore(store.path)


def test_corrupt_tokens_fail_verify(store):
    tokens = store.path / "tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[0] ^= 1
    tokens.write_bytes(bytes(data))
    reopened = TokenStore(store.path)  # same size: only the checksum can tell
    with pytest.raises(TokenStoreError, match=r"tokens.bin has sha256 .* but meta.json records"):
        reopened.verify()


def test_corrupt_index_and_meta_fail_on_open(store):
    np.save(store.path / "index.npy", np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TokenStoreError, match=r"index has int64 \(2, 3\), expected int64 \(3, 3\)"):
        TokenStore(store.path)
    np.save(store.path / "index.npy", np.array([[0, 3, 11], [3, 0, 0], [5, 2, 4]], dtype=np.int64))
    with pytest.raises(TokenStoreError, match="not back to back"):
        TokenStore(store.path)
    (store.path / "meta.json").write_text("{", encoding="utf-8")
    with pytest.raises(TokenStoreError, match=r"meta.json is not valid JSON"):
        TokenStore(store.path)


def test_not_a_store(tmp_path, store):
    with pytest.raises(TokenStoreError, match="is not a token store"):
        TokenStore(tmp_path / "nothing")
    meta = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**meta, "version": 99}), encoding="utf-8")
    with pytest.raises(TokenStoreError, match="not a fope-token-store version 1"):
        TokenStore(store.path)
