"""Frame-aligned windows: every token scored exactly once for any stride, crops and slides on frame boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprise.data.windows import crop_start, reading_windows, scoring_windows, slide_start
from reprise.evaluation.nll import nll_of
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer


@pytest.mark.parametrize("frame", [1, 4])
@pytest.mark.parametrize("stride", [16, 61, 63, 64, 65, 200])
def test_windows_score_every_token_exactly_once(frame, stride):
    for length in (5, 64, 65, 66, 200, 1001):
        scored = []
        for start, end, first in scoring_windows(length, context=64, stride=stride, frame=frame):
            assert end - start - 1 <= 64 and first > start and start % frame == 0
            # each scored token sees >= context - stride tokens, less the frame alignment
            assert first - start - 1 >= min(max(0, 64 - stride - (frame - 1)), first - 1)
            scored += range(first, end)
        assert scored == list(range(1, length))


@pytest.mark.parametrize("stride", [31, 32, 100])
def test_strides_up_to_and_past_the_context_score_like_the_default(stride):
    """The regression: ``reprise evaluate --stride`` above the context, or context - 1 with 4-token frames, crashed."""
    torch.manual_seed(0)
    model = MusicTransformer(
        ModelConfig(vocab_size=20, context=32, d_model=16, n_layers=1, n_heads=2, positions="frame", frame=4)
    ).eval()
    piece = np.r_[1, np.random.default_rng(0).integers(3, 20, 4 * 30)]
    default, strided = nll_of(model, [piece], 32, frame=4), nll_of(model, [piece], 32, stride, frame=4)
    assert strided.tokens == default.tokens == len(piece) - 1
    assert strided.per_token == pytest.approx(default.per_token, rel=0.2)


def test_training_crops_start_at_bos_or_a_frame_and_cover_the_end():
    rng = np.random.default_rng(0)
    starts = {crop_start(41, 16, 4, rng) for _ in range(500)}
    assert starts == {0, 4, 8, 12, 16, 20, 24}  # 24 + 16 + 1 = 41: the last crop reaches the end
    assert {crop_start(10, 16, 4, rng) for _ in range(20)} == {0}


def test_generation_slides_to_the_last_half_context_on_a_frame():
    assert slide_start(32, 32, 4) == 0
    for length in range(33, 200):
        start = slide_start(length, 32, 4)
        assert start % 4 == 0 and length - 19 <= start <= length - 16


def test_attention_reads_each_query_in_one_window_that_holds_it():
    windows = reading_windows(150, 32, 4)
    queries = np.concatenate([rows for _, _, rows in windows])
    assert sorted(queries.tolist()) == list(range(150))
    for start, stop, rows in windows:
        assert start % 4 == 0 and stop - start <= 32 and rows.min() >= start and rows.max() < stop
