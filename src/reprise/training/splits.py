"""Which data a model reads: the split of a dataset or pair folder, in the stream its kind of model learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reprise.data.anticipation import Anticipated, AnticipatedPairs, is_pair_folder
from reprise.data.dataset import TokenDataset
from reprise.data.fill import FillDataset
from reprise.data.melody_condition import MelodyPairs
from reprise.data.pairs import PairedDataset
from reprise.errors import RepriseError
from reprise.models.encoder_decoder import EncoderDecoderConfig


def open_split(
    data_dir: Path,
    split: str,
    model_config: Any,
    infill: bool = False,
    stream: Anticipated | None = None,
    scored_only: bool = False,
) -> TokenDataset | PairedDataset | FillDataset:
    """A split of the data a model trains on: token windows (from a pair folder: accompaniments beside their
    melody's features for a conditioned model, else anticipated streams of ``stream``'s kind; fill-in-the-middle
    streams, with ``infill``), or (encoder-decoder) the pairs of its task. ``scored_only`` (token windows
    only) leaves what an NLL does not score out of the targets."""
    if infill:
        return FillDataset(data_dir, split, getattr(model_config, "context", None))
    if not isinstance(model_config, EncoderDecoderConfig):
        if not is_pair_folder(data_dir):
            return _token_windows(data_dir, split, scored_only)
        if scored_only:
            raise RepriseError(f"{data_dir}: --scored-only is for a prepared dataset, not a pair folder")
        return (
            MelodyPairs(data_dir, split)
            if getattr(model_config, "condition", 0)
            else AnticipatedPairs(data_dir, split, stream)
        )
    pairs = PairedDataset(data_dir, split, model_config.task, model_config.source_context, model_config.source_offset)
    if model_config.source_vocab_size != pairs.task.source_vocab_size:
        raise RepriseError(
            f"model source vocab {model_config.source_vocab_size} != the {model_config.task} task's "
            f"{pairs.task.source_vocab_size} for {data_dir}"
        )
    return pairs


def _token_windows(data_dir: Path, split: str, scored_only: bool) -> TokenDataset:
    """A prepared dataset's split; with ``scored_only``, an error unless its tokenizer gives some of the music."""
    dataset = TokenDataset(data_dir, split, scored_only)
    if scored_only and dataset.tokenizer.scored(np.zeros(1, dtype=np.int64)) is None:
        raise RepriseError(
            f"{data_dir}: --scored-only needs a stream with given music (prepare --soprano-ahead); "
            f"this {dataset.tokenizer.name} scores every token"
        )
    return dataset
