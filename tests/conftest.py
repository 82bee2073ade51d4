"""Offline environment, a tiny base model built once per run, small datasets, a temp MLflow store."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any HF import: a stray download fails fast
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)

import pytest  # noqa: E402

from paft_core import paths  # noqa: E402
from tests import tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Folder of a 2-layer random Llama with a tokenizer trained on the demo data."""
    corpus = tiny.corpus_from(paths.DEMO_DATA / "sft.jsonl", paths.DEMO_DATA / "preference.jsonl")
    return tiny.build_model(tmp_path_factory.mktemp("tiny-llama"), corpus)


@pytest.fixture
def paft_home(tmp_path, monkeypatch):
    """A fresh PAFT_HOME (stage folders, model cache, MLflow store) for one test."""
    monkeypatch.setenv("PAFT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path / "home"
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # a flow run in this process set it for its stage processes
