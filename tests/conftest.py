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
    """A training trace of a tiny model (H 8, X 4, T 6, 2 sequences, 2 records) at a threshold
    that zeroes a good part of dnet: the hardware tests replay it."""
    from gateskip.golden.trace import save_trace
    from gateskip.golden.train import TrainConfig, train
    config = TrainConfig(hidden=8, embed=4, seq_len=6, batch=4, iterations=6, threshold=2e-4,
                         eval_symbols=200, corr_every=0, trace_iterations=(0, 5), trace_batch=2)
    path = tmp_path_factory.mktemp("trace") / "tiny.npz"
    save_trace(path, train(config, corpus).traces)
    return path
