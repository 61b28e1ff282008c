"""bp.data's text helpers: characters to codes and back, sliding windows."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp


def test_codes_round_trip_and_are_sorted():
    vocab = bp.data.CharVocabulary("hello, world")
    assert vocab.chars == " ,dehlorw" and len(vocab) == vocab.size == 9
    codes = vocab.encode("hello, world")
    assert codes.dtype == np.int64 and codes.tolist()[:5] == [4, 3, 5, 5, 6]
    assert vocab.decode(codes) == "hello, world" and vocab.decode([]) == ""
    assert repr(vocab) == "CharVocabulary(9 characters)"


@pytest.mark.parametrize("call, error, message", [
    (lambda v: v.encode("hex!"), ValueError, r"character '!' at position 3 is not in the vocabulary of 4"),
    (lambda v: v.decode([0, 4]), ValueError, r"codes must lie in \[0, 4\), got values from 0 to 4"),
    (lambda v: v.decode([[0]]), ValueError, "1-D sequence of ints"),
    (lambda v: v.decode([0.5]), ValueError, "1-D sequence of ints"),
    (lambda v: v.encode(b"he"), TypeError, "text must be a str"),
])
def test_bad_calls_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(bp.data.CharVocabulary("hex "))


def test_an_empty_text_has_no_vocabulary():
    with pytest.raises(ValueError, match="the text is empty"):
        bp.data.CharVocabulary("")


def test_sliding_windows():
    codes = np.arange(10)
    windows = bp.data.sliding_windows(codes, 4, step=3)
    np.testing.assert_array_equal(windows, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    windows[0, 0] = 99
    assert codes[0] == 0                                  # a copy, not a view
    assert bp.data.sliding_windows(codes, 10).shape == (1, 10)
    assert bp.data.sliding_windows(list(range(5)), 2).shape == (4, 2)
    X, y = bp.data.sliding_windows(codes, 5, step=4)[:, :-1], bp.data.sliding_windows(codes, 5, step=4)[:, 1:]
    np.testing.assert_array_equal(y, X + 1)               # the next-token targets


@pytest.mark.parametrize("args, message", [
    ((np.arange(3), 4), "a sequence of 3 entries holds no window of 4"),
    ((np.zeros((2, 5)), 2), "sequence must be 1-D"),
    ((np.arange(5), 0), "length must be a positive int"),
    ((np.arange(5), 2, 0), "step must be a positive int"),
])
def test_sliding_windows_refuses(args, message):
    with pytest.raises(ValueError, match=message):
        bp.data.sliding_windows(*args)
