"""Which data a model reads: the split of a dataset or pair folder, in the stream its kind of model learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reprise.data.anticipation import Anticipated, AnticipatedPairs, is_pair_folder
from reprise.data.dataset import TokenDataset
from reprise.data.fill import FillDataset
from reprise.data.melody_condition import MelodyPairs
from reprise.data.pairs import PairedDataset
from reprise.errors import RepriseError
from reprise.models.encoder_decoder import EncoderDecoderConfig


def open_split(
    data_dir: Path, split: str, model_config: Any, infill: bool = False, stream: Anticipated | None = None
) -> TokenDataset | PairedDataset | FillDataset:
    """A split of the data a model trains on: token windows (from a pair folder: accompaniments beside their
    melody's features for a conditioned model, else anticipated streams of ``stream``'s kind; fill-in-the-middle
    streams, with ``infill``), or (encoder-decoder) the pairs of its task."""
    if infill:
        return FillDataset(data_dir, split, getattr(model_config, "context", None))
    if not isinstance(model_config, EncoderDecoderConfig):
        if not is_pair_folder(data_dir):
            return TokenDataset(data_dir, split)
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
