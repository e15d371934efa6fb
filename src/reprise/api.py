"""The public Python API: load a checkpoint, generate, score, prepare data, write samples.

Five lines from a trained run to music you can open::

    import reprise
    model, tokenizer = reprise.load("runs/bach")
    ids = reprise.generate(model, tokenizer, n_new=128, num_samples=2)
    reprise.write_samples(ids, tokenizer, "samples")
    print(reprise.score(model, tokenizer, "data/bach").per_token)

Every function here is a thin layer over the pipeline stage it names; the
command line calls the same stages. Nothing here changes matplotlib's backend,
so inline plots in a notebook keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import symusic
import torch

from reprise.audio import render_wav
from reprise.data.anticipation import Anticipated
from reprise.data.fill import FillTokenizer
from reprise.data.musicxml import write_musicxml
from reprise.data.pairs import PairedDataset
from reprise.data.prepare import prepare
from reprise.data.tokenizer import Tokenizer
from reprise.device import pick_device
from reprise.errors import RepriseError
from reprise.evaluation.conditional import nll_given
from reprise.evaluation.nll import NLL, nll_of
from reprise.generation.generate import generate as _generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint
from reprise.models.encoder_decoder import EncoderDecoderConfig
from reprise.training.splits import open_split
from reprise.visualization.pianoroll import plot_pianoroll

__all__ = ["load", "generate", "score", "prepare", "write_samples", "write_scores"]


def load(
    checkpoint: str | Path, device: str = "auto", transpositions: int | None = None
) -> tuple[torch.nn.Module, Tokenizer]:
    """The model (in eval mode) and tokenizer of a run (its ``best/``, else ``last/``), a checkpoint or model
    folder, or a model that ships with reprise, by name (``load("bach")``; see ``reprise models``).
    ``transpositions`` overrides the model's transposition ensemble (:mod:`reprise.models.transposition`)."""
    return load_checkpoint(checkpoint, pick_device(device), transpositions)


def generate(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    primer: np.ndarray | str | Path | None = None,
    n_new: int = 256,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """``(num_samples, primer + n_new)`` ids continuing ``primer``: ids (``BOS`` first), a MIDI file, or nothing."""
    if primer is None:
        primer = np.array([tokenizer.bos_id])
    elif isinstance(primer, (str, Path)):
        primer = tokenizer.encode_midi(Path(primer))
    return _generate(
        model, tokenizer, np.asarray(primer), n_new, num_samples, SamplingConfig(temperature, top_k, top_p), seed
    )


def score(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    data: str | Path | Iterable[np.ndarray],
    split: str = "valid",
    stride: int | None = None,
) -> NLL:
    """The NLL of a prepared dataset's ``split`` (a directory) or of pieces of ids (``BOS`` first) under ``model``.

    A dataset must have been tokenized as the model's training data was, or in a form the model's
    tokenizer can translate (a chorale grid without the soprano ahead, for a harmoniser). An
    encoder-decoder scores its task's targets given their sources (the dataset, or pair folder, it
    was trained on). Tokens a stream is given (a harmoniser's soprano) are not scored. A fill-in-the-middle
    model scores the middles of its streams: the bars that validation fills in each piece.
    """
    condition = None  # the features beside each piece's tokens, for a model conditioned on given music
    if isinstance(data, (str, Path)):
        directory = Path(data)
        stream = tokenizer if isinstance(tokenizer, Anticipated) else None
        dataset = open_split(directory, split, model.config, isinstance(tokenizer, FillTokenizer), stream)
        if isinstance(dataset, PairedDataset):
            if dataset.tokenizer.to_json() != tokenizer.to_json():
                raise RepriseError(f"{directory}: tokenized differently from the checkpoint's training data")
            return nll_given(model, dataset, stride)
        data, condition = [dataset.piece(i) for i in range(len(dataset))], getattr(dataset, "condition", None)
        if dataset.tokenizer.to_json() != tokenizer.to_json():  # e.g. a plain chorale grid for a harmoniser
            data = [tokenizer.translate(ids, dataset.tokenizer) for ids in data]
            if any(ids is None for ids in data):
                raise RepriseError(f"{directory}: tokenized differently from the checkpoint's training data")
    elif isinstance(model.config, EncoderDecoderConfig):
        raise RepriseError("an encoder-decoder scores targets given sources: give the prepared dataset's directory")
    scoring = {"scored": tokenizer.scored, "predicted": tokenizer.predicted, "condition": condition}
    return nll_of(model, data, model.config.context, stride, frame=tokenizer.frame, **scoring)


def write_samples(
    ids: np.ndarray,
    tokenizer: Tokenizer,
    out: str | Path,
    stem: str = "sample",
    wav: bool = False,
    musicxml: bool = False,
) -> list[Path]:
    """Save each row of ``ids`` as ``STEM-N.mid`` with a piano-roll ``STEM-N.png`` (and ``.wav``, ``.musicxml``)."""
    return write_scores([tokenizer.decode(row) for row in np.atleast_2d(ids)], out, stem, wav, musicxml)


def write_scores(
    scores: Sequence[symusic.Score],
    out: str | Path,
    stem: str = "sample",
    wav: bool = False,
    musicxml: bool = False,
    given: Sequence[int] = (),
    generated_span: tuple[float, float] | None = None,
) -> list[Path]:
    """:func:`write_samples` for scores (arrangements); the piano rolls draw the ``given`` tracks and the
    ``generated_span`` (in bars) apart from what the model wrote."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, piece in enumerate(scores, start=1):
        midi = out / f"{stem}-{i}.mid"
        piece.dump_midi(str(midi))
        roll = plot_pianoroll(
            piece, midi.with_suffix(".png"), title=midi.name, given=given, generated_span=generated_span
        )
        written += [midi, roll]
        if wav:
            written.append(render_wav(midi, midi.with_suffix(".wav")))
        if musicxml:
            written.append(write_musicxml(piece, midi.with_suffix(".musicxml")))
    return written
