"""Text for sequence models (re-exported as ``bp.data.CharVocabulary`` and ``bp.data.sliding_windows``):
characters to integer codes and back, and fixed-length windows over a long sequence. Host NumPy
only, nothing downloaded.

    vocab = bp.data.CharVocabulary(text)          # one code per distinct character, sorted
    codes = vocab.encode(text)                    # int64 (len(text),)
    windows = bp.data.sliding_windows(codes, 65, step=64)    # (n, 65)
    X, y = windows[:, :-1], windows[:, 1:]        # inputs and next-character targets, (n, 64) each
    vocab.decode(codes[:20])                      # back to a str
"""
from __future__ import annotations

import numpy as np

from ._checks import check_int


class CharVocabulary:
    """The distinct characters of a text, each with an integer code (0 .. size - 1, in sorted order).

    Attributes:
        chars: the characters, as a str, code i being ``chars[i]``. size: how many (``len(vocab)``).
    """

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"CharVocabulary: text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharVocabulary: the text is empty; there are no characters to number")
        self.chars = "".join(sorted(set(text)))
        self._code = {char: code for code, char in enumerate(self.chars)}

    @property
    def size(self) -> int:
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """The codes of ``text``'s characters: an int64 array of len(text).

        Raises:
            ValueError: a character is not in the vocabulary (named, with its position).
        """
        if not isinstance(text, str):
            raise TypeError(f"CharVocabulary.encode: text must be a str, got {type(text).__name__}")
        try:
            return np.fromiter((self._code[char] for char in text), dtype=np.int64, count=len(text))
        except KeyError as error:
            position = next(i for i, char in enumerate(text) if char not in self._code)
            raise ValueError(f"CharVocabulary.encode: character {error.args[0]!r} at position {position} is not "
                             f"in the vocabulary of {self.size} characters") from None

    def decode(self, codes) -> str:
        """The text of integer ``codes`` (a sequence or a 1-D array of ints in [0, size)).

        Raises:
            ValueError: not 1-D, not integers, or a code out of range.
        """
        codes = np.asarray(codes)
        if codes.ndim != 1 or (codes.size and codes.dtype.kind not in "iu"):
            raise ValueError(f"CharVocabulary.decode: codes must be a 1-D sequence of ints, got shape "
                             f"{codes.shape} and dtype {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.size):
            raise ValueError(f"CharVocabulary.decode: codes must lie in [0, {self.size}), got values from "
                             f"{codes.min()} to {codes.max()}")
        return "".join(self.chars[code] for code in codes.tolist())

    def __repr__(self):
        return f"CharVocabulary({self.size} characters)"


def sliding_windows(sequence, length: int, step: int = 1) -> np.ndarray:
    """Windows of ``length`` consecutive entries of a 1-D ``sequence``, starting every ``step``:
    row i is ``sequence[i * step : i * step + length]``. A host NumPy array (n, length) of the
    sequence's dtype, n = (len - length) // step + 1; a copy, so changing it leaves the sequence be.

    For next-token training take windows one longer than the context and split them:
    ``w = sliding_windows(codes, T + 1, step=T); X, y = w[:, :-1], w[:, 1:]``.

    Raises:
        ValueError: the sequence is not 1-D, or shorter than one window; length or step not positive ints.
    """
    length = check_int("sliding_windows", "length", length)
    step = check_int("sliding_windows", "step", step)
    sequence = np.asarray(sequence)
    if sequence.ndim != 1:
        raise ValueError(f"sliding_windows: sequence must be 1-D, got shape {sequence.shape}")
    if sequence.shape[0] < length:
        raise ValueError(f"sliding_windows: a sequence of {sequence.shape[0]} entries holds no window of {length}")
    view = np.lib.stride_tricks.sliding_window_view(sequence, length)[::step]
    return np.array(view, copy=True)
