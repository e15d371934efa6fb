"""Training: the loss really falls, and an interrupted run resumes exactly where it stopped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reprise.api import score
from reprise.cli.main import main
from reprise.data.dataset import TokenDataset
from reprise.data.tokenizer import tokenizer_from_json
from reprise.device import uses_bf16
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.models.checkpoint import load_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.encoder_decoder import EncoderDecoderConfig
from reprise.training import trainer
from reprise.training.config import TrainConfig


def small_config(vocab_size: int, dropout: float = 0.0) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, context=64, d_model=64, n_layers=2, n_heads=4, dropout=dropout)


def unigram_entropy(ids: np.ndarray) -> float:
    counts = np.bincount(ids)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_tiny_model_learns_far_below_the_unigram_entropy(small_chorales, tmp_path):
    train_set = TokenDataset(small_chorales, "train")
    config = small_config(train_set.tokenizer.vocab_size)
    result = trainer.train(
        tmp_path / "run",
        small_chorales,
        config,
        TrainConfig(steps=150, batch_size=8, lr=3e-3, warmup=10, eval_every=150, augment=False, device="cpu"),
        quiet=True,
    )
    model, _ = load_checkpoint(tmp_path / "run" / "last")
    pieces = [train_set.piece(i) for i in range(len(train_set))]
    nll = nll_of(model, pieces, config.context).per_token
    entropy = unigram_entropy(np.concatenate([p[1:] for p in pieces]))
    assert nll < 0.5 * entropy, (nll, entropy)
    assert result.best_val_nll < entropy
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


@pytest.mark.parametrize("architecture, ema_decay", [("decoder", 0.0), ("decoder", 0.9), ("encoder-decoder", 0.9)])
def test_resume_continues_with_the_same_step_schedule_and_data(
    small_chorales, tmp_path, monkeypatch, architecture, ema_decay
):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    config = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup=2, eval_every=3, device="cpu", ema_decay=ema_decay)
    model = small_config(vocab, dropout=0.2)
    if architecture == "encoder-decoder":  # harmonisation pairs: random windows and transpositions of pairs
        model = EncoderDecoderConfig(
            vocab_size=vocab,
            source_vocab_size=vocab,
            context=64,
            source_context=32,
            d_model=64,
            n_layers=2,
            encoder_layers=1,
            n_heads=4,
            dropout=0.2,
        )
    trainer.train(tmp_path / "straight", small_chorales, model, config, quiet=True)

    real_step = trainer._Loop.gradients

    def interrupt_at_four(self, train_set, step):
        if step == 4:
            raise KeyboardInterrupt
        return real_step(self, train_set, step)

    monkeypatch.setattr(trainer._Loop, "gradients", interrupt_at_four)
    with pytest.raises(
        RepriseError, match="interrupted at step 4, saved in last/; continue with: reprise train --resume"
    ):
        trainer.train(tmp_path / "cut", small_chorales, model, config, quiet=True)
    monkeypatch.setattr(trainer._Loop, "gradients", real_step)
    assert json.loads((tmp_path / "cut" / "last" / "training.json").read_text())["step"] == 4
    result = trainer.train(tmp_path / "cut", resume=True, quiet=True)

    assert result.step == 6
    for file in ["model.safetensors"] + ["average.safetensors"] * bool(ema_decay):
        straight = load_file(str(tmp_path / "straight" / "last" / file))
        resumed = load_file(str(tmp_path / "cut" / "last" / file))
        assert straight.keys() == resumed.keys()
        for name, tensor in straight.items():
            torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
    lrs = lambda run: [r["lr"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").open()) if "lr" in r]  # noqa: E731
    assert lrs("cut") == lrs("straight")


def test_weight_average_is_what_gets_validated_and_saved_as_best(small_chorales, tmp_path):
    valid = TokenDataset(small_chorales, "valid")
    config = small_config(valid.tokenizer.vocab_size)
    result = trainer.train(
        tmp_path / "run",
        small_chorales,
        config,
        TrainConfig(
            steps=40, batch_size=4, lr=3e-3, warmup=5, eval_every=40, augment=False, device="cpu", ema_decay=0.8
        ),
        quiet=True,
    )
    best, _ = load_checkpoint(tmp_path / "run" / "best")
    raw, _ = load_checkpoint(tmp_path / "run" / "last")
    pieces = [valid.piece(i) for i in range(len(valid))]
    frame = valid.tokenizer.frame
    assert nll_of(best, pieces, config.context, frame=frame).per_token == pytest.approx(result.best_val_nll, abs=1e-6)
    assert nll_of(raw, pieces, config.context, frame=frame).per_token != pytest.approx(result.best_val_nll, abs=1e-4)


def test_checkpoints_hold_no_pickles(small_chorales, tmp_path):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    trainer.train(
        tmp_path / "run",
        small_chorales,
        small_config(vocab),
        TrainConfig(steps=2, batch_size=2, eval_every=2, device="cpu"),
        quiet=True,
    )
    for name in ("best", "last"):
        files = sorted(p.name for p in (tmp_path / "run" / name).iterdir())
        assert files == ["model.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json", "training.json"]


def test_batches_start_on_frame_boundaries(small_chorales):
    dataset = TokenDataset(small_chorales, "train")
    inputs, targets = dataset.batch(np.random.default_rng(0), 64, 32)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    pieces = [dataset.piece(i) for i in range(len(dataset))]
    for row in inputs:
        # a window starts at BOS or after a whole step, so position i predicts voice i mod 4;
        # the last window of a piece may run past its end and is padded
        row = row[row != dataset.tokenizer.pad_id]
        starts = [s for p in pieces for s in range(len(p)) if np.array_equal(p[s : s + len(row)], row)]
        assert any(s % 4 == 0 for s in starts), starts


def test_bf16_precision_autocasts_on_cpu_and_keeps_float32_weights(small_chorales, tmp_path):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    first_loss = {}
    for precision in ("fp32", "bf16"):
        trainer.train(
            tmp_path / precision,
            small_chorales,
            small_config(vocab),
            TrainConfig(steps=1, batch_size=4, eval_every=1, device="cpu", precision=precision),
            quiet=True,
        )
        first_loss[precision] = json.loads((tmp_path / precision / "metrics.jsonl").open().readline())["loss"]
        weights = load_file(str(tmp_path / precision / "last" / "model.safetensors"))
        assert {t.dtype for t in weights.values()} == {torch.float32}
        # validation scores as `reprise evaluate` does (float32), so best/ is chosen on the number reported
        model, tokenizer = load_checkpoint(tmp_path / precision / "best")
        best = json.loads((tmp_path / precision / "best" / "training.json").read_text())["best_val_nll"]
        assert score(model, tokenizer, small_chorales, "valid").per_token == pytest.approx(best, rel=1e-9)
    # the same batch and weights: bfloat16 matmuls move the loss a little, and only a little
    assert first_loss["bf16"] != first_loss["fp32"]
    assert first_loss["bf16"] == pytest.approx(first_loss["fp32"], abs=0.02)
    assert not uses_bf16("auto", torch.device("cpu")) and uses_bf16("auto", torch.device("cuda"))
    with pytest.raises(RepriseError, match="unknown precision 'fp8'"):
        uses_bf16("fp8", torch.device("cpu"))


def test_max_transpose_widens_augmentation_and_stays_out_of_the_tokenizer(small_chorales, tmp_path):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    config = TrainConfig(steps=1, batch_size=2, eval_every=1, device="cpu", max_transpose=6)
    trainer.train(tmp_path / "run", small_chorales, small_config(vocab), config, quiet=True)
    _, tokenizer = load_checkpoint(tmp_path / "run" / "best")
    dataset = TokenDataset(small_chorales, "train")
    assert tokenizer.to_json() == dataset.tokenizer.to_json()  # a training choice, not part of the encoding
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train"]["max_transpose"] == 6
    shifts = set()
    for seed in range(200):  # the same window, plain and augmented
        plain, _ = dataset.batch(np.random.default_rng(seed), 1, 64)
        moved, _ = dataset.batch(np.random.default_rng(seed), 1, 64, augment=config.augmentation())
        pitched = plain > dataset.tokenizer.silence_id
        shifts |= set(np.unique(moved[pitched] - plain[pitched]).tolist())
    assert max(map(abs, shifts)) in (4, 5, 6)  # beyond the default 3, within 6


def test_old_tokenizer_files_with_max_transpose_still_load(small_chorales):
    data = json.loads((small_chorales / "tokenizer.json").read_text())
    old = tokenizer_from_json({**data, "max_transpose": 6})
    assert old.to_json() == tokenizer_from_json(data).to_json() and "max_transpose" not in old.to_json()


def test_frame_positions_must_match_the_tokenizers_frame(small_chorales, tmp_path):
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    config = ModelConfig(vocab_size=vocab, context=32, d_model=32, n_layers=1, n_heads=2, positions="frame", frame=3)
    with pytest.raises(RepriseError, match="model frame 3 != the chorale-grid tokenizer's frame 4"):
        trainer.train(tmp_path / "run", small_chorales, config, TrainConfig(steps=1, device="cpu"), quiet=True)


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


def _without(key: str):
    return lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != key})


@pytest.mark.parametrize(
    "name, damage",
    [
        ("tokenizer.json", _truncated),
        ("tokenizer.json", _without("name")),
        ("manifest.json", _truncated),
        ("manifest.json", _without("counts")),
    ],
    ids=["tokenizer-truncated", "tokenizer-no-name", "manifest-truncated", "manifest-no-counts"],
)
def test_a_damaged_dataset_file_is_one_line_naming_it_for_train_and_evaluate(
    small_chorales, tiny_run, tmp_path, capsys, name, damage
):
    data = tmp_path / "data"
    shutil.copytree(small_chorales, data)
    (data / name).write_text(damage((data / name).read_text()))
    commands = [
        ["train", "--data", data, "--run", tmp_path / "run", "--steps", "1", "--device", "cpu"],
        ["evaluate", "--checkpoint", tiny_run / "last", "--data", data, "--device", "cpu"],
    ]
    for command in commands:
        assert main([str(arg) for arg in command]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"reprise: error: {data / name}: "), err
