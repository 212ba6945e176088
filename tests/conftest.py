"""Shared fixtures: a small text corpus, so that tests never need Penn Treebank's size."""

import numpy as np
import pytest

from gateskip.golden.corpus import load_corpus


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    """A deterministic, somewhat predictable English-like text of ~30k characters."""
    rng = np.random.default_rng(1)
    words = ("the cat sat on a mat while dogs ran by and birds sang in old trees near the "
             "river bank where children play games every day").split()
    text = "\n".join(" ".join(rng.choice(words, size=12)) for _ in range(500)) + "\n"
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus(text_file):
    return load_corpus(text_file, "char")


@pytest.fixture(scope="session")
def tiny_trace(corpus, tmp_path_factory):
    """A real training trace of a tiny model, replayed by the hardware tests."""
    from gateskip.golden.trace import record_small_trace
    path = tmp_path_factory.mktemp("trace") / "tiny.npz"
    record_small_trace(path, corpus)
    return path
