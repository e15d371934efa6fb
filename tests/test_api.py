"""The public Python API: the README's notebook example runs, and importing reprise has no side effects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reprise
from reprise.data.dataset import TokenDataset
from reprise.models.attention import ATTENTION_KINDS
from reprise.models.cache import Cache
from reprise.models.config import ModelConfig
from reprise.models.lstm import LSTMConfig, LSTMLanguageModel
from reprise.models.markov import MarkovChain, MarkovConfig
from reprise.models.transformer import MusicTransformer
from reprise.training.config import TrainConfig
from reprise.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(context=32, d_model=16, n_layers=1, n_heads=2)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"<!-- example: tests/test_api.py runs this block -->\n```python\n(.*?)```", text, re.S)[1]


def test_the_readme_example_loads_generates_writes_and_scores(small_chorales, tmp_path, monkeypatch, capsys):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    train(
        tmp_path / "runs" / "bach",
        small_chorales,
        ModelConfig(vocab_size=vocab, **TINY),
        TrainConfig(steps=2, batch_size=2, eval_every=2, device="cpu"),
        quiet=True,
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bach").symlink_to(small_chorales)
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "sample-1.mid",
        "sample-1.png",
        "sample-2.mid",
        "sample-2.png",
    ]
    assert 0 < float(printed[-1]) < 6


def test_score_refuses_data_tokenized_differently(small_chorales, tmp_path):
    model = MusicTransformer(ModelConfig(vocab_size=100, **TINY))
    from reprise.data.chorale_grid import ChoraleGrid

    with pytest.raises(reprise.RepriseError, match="tokenized differently"):
        reprise.score(model, ChoraleGrid(pitch_min=30), small_chorales)


def test_generate_leaves_the_model_in_the_mode_it_found():
    from reprise.data.chorale_grid import ChoraleGrid

    tokenizer = ChoraleGrid()
    model = MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, **TINY)).train()
    ids = reprise.generate(model, tokenizer, n_new=8, num_samples=2)
    assert ids.shape == (2, 9) and model.training
    model.eval()
    reprise.generate(model, tokenizer, n_new=4)
    assert not model.training


def test_importing_reprise_leaves_matplotlibs_backend_alone():
    code = (
        "import sys, matplotlib; import reprise.api, reprise.visualization.attention, reprise.visualization.curves;"
        "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend();"
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    env = {**os.environ, "MPLBACKEND": "pdf", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_importing_a_data_module_does_not_load_the_api():
    code = (
        "import sys, reprise.data.windows; "
        "assert not [m for m in sys.modules if m.split('.')[:2] in (['reprise', 'api'], ['reprise', 'training'])]"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", sorted(ATTENTION_KINDS) + ["lstm", "markov"])
def test_every_decoding_cache_counts_the_tokens_it_has_seen(kind):
    if kind == "lstm":
        model = LSTMLanguageModel(LSTMConfig(vocab_size=20, context=32, hidden=8, d_embed=8))
    elif kind == "markov":
        model = MarkovChain(MarkovConfig(vocab_size=20, order=2))
        model.fit([np.arange(1, 20)])
    else:
        model = MusicTransformer(ModelConfig(vocab_size=20, attention=kind, block_size=8, **TINY))
    caches = model.new_caches(1, 32)
    with torch.no_grad():
        model(torch.tensor([[1, 5, 6]]), caches)
        model(torch.tensor([[7]]), caches)
    assert all(isinstance(cache, Cache) and cache.length == 4 for cache in caches)


def test_a_progress_bar_in_a_log_file_is_not_redrawn_every_step(small_chorales, tmp_path, capsys):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    train(
        tmp_path / "run",
        small_chorales,
        ModelConfig(vocab_size=vocab, **TINY),
        TrainConfig(steps=10, batch_size=1, eval_every=10, device="cpu"),
    )
    err = capsys.readouterr().err  # not a terminal
    assert "10/10" in err and err.count("train:") <= 4  # first, after the validation line, last
