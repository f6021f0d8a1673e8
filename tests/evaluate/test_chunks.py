"""Span selection for perplexity: inside documents, spread over the set, honest fallback."""

from __future__ import annotations

import numpy as np
import pytest

from fope.evaluate.chunks import position_buckets, select_spans, windows


def test_spans_stay_inside_single_documents():
    lengths = np.array([50, 300, 1000, 20, 610])
    selection = select_spans(lengths, span_tokens=100, max_spans=100, seed=0)
    assert not selection.cross_document
    assert selection.eligible_documents == 3
    assert len(selection.spans) == 3 + 10 + 6  # every slot of every long-enough document
    for span in selection.spans:
        assert span.document in (1, 2, 4)
        assert span.start >= 0 and span.start + span.length <= lengths[span.document]
    starts = {(s.document, s.start) for s in selection.spans}
    assert len(starts) == len(selection.spans)  # non-overlapping: distinct slots of span_tokens


def test_spans_are_drawn_across_the_whole_set_and_seeded():
    lengths = np.full(100, 1000)
    a = select_spans(lengths, 500, max_spans=20, seed=1)
    b = select_spans(lengths, 500, max_spans=20, seed=1)
    c = select_spans(lengths, 500, max_spans=20, seed=2)
    assert a == b and a != c
    documents = [s.document for s in a.spans]
    assert max(documents) > 50 and min(documents) < 50  # not just the first documents


def test_falls_back_to_the_stream_when_no_document_is_long_enough():
    selection = select_spans(np.array([30, 40, 50]), span_tokens=60, max_spans=5)
    assert selection.cross_document and selection.eligible_documents == 0
    assert [s.document for s in selection.spans] == [-1, -1]  # 123 stream tokens hold two spans of 60
    with pytest.raises(ValueError, match="fewer than one span of 500"):
        select_spans(np.array([30, 40]), span_tokens=500, max_spans=5)


def test_windows_are_non_overlapping_and_drop_the_remainder():
    tokens = np.arange(23)
    cut = windows(tokens, 4)
    assert cut.shape == (4, 5)
    assert cut[1].tolist() == [5, 6, 7, 8, 9]


def test_position_buckets_cover_every_position():
    assert position_buckets(10, 4) == [(0, 4), (4, 8), (8, 10)]
