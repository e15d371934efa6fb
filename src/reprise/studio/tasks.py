"""The studio's tasks: what a page's request asks for, and the function that makes it.

A request (:class:`JobRequest`) names a model, a task and its settings. The task is a
plain function in :data:`TASKS` that receives a :class:`TaskInput` (the loaded model,
its tokenizer, the primer, the uploaded or dataset music, the sampling settings and a
progress callback) and returns what it :class:`Made`: one score per sample, and which
part of each the model was given. :mod:`reprise.studio.jobs` runs them.

``continue`` (from nothing, an uploaded MIDI file or a dataset piece) runs the
decoder-only models. ``harmonize``, ``accompany`` and ``infill`` run a model trained
for that task, through the same functions as the commands of the same names
(:mod:`reprise.generation.conditional`), with the same checks and messages. A model
asked for a task it was not trained for says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import symusic
import torch

from reprise.data.given_melody import melody_line
from reprise.data.midi import midi_from_bytes
from reprise.data.pairs import STEPS_PER_BAR, Task
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError, named
from reprise.generation import conditional
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.encoder_decoder import EncoderDecoder
from reprise.models.pretrained import trained_task

MAX_NEW_TOKENS = 4096  # one job's new tokens per sample: minutes on a laptop CPU


@dataclass
class JobRequest:
    """What the page asks for. ``length`` and ``primer`` count bars when ``unit`` is ``bars``, else tokens."""

    model: str  # a key of ModelCatalog
    task: str = "continue"
    source: str = "nothing"  # nothing | midi | dataset
    midi: Path | None = None  # the uploaded primer or melody, already saved by the server
    dataset: str | None = None  # a key of the studio's datasets
    piece: int = 0
    primer: int = 2
    length: int = 8
    unit: str = "bars"
    bars: str = ""  # infill: which bars, e.g. "5-8"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    samples: int = 1
    midi_name: str = ""  # the upload's own file name, for messages
    melody_track: str = ""  # harmonize, accompany: the melody's track (name or program) [the only one with notes]
    quantize: bool = False  # harmonize: round notes to the 16th grid instead of refusing them
    transpose: int = 0  # harmonize: semitones to move the melody by

    @property
    def given_name(self) -> str:
        """How messages name the music the job was given."""
        return self.midi_name if self.source == "midi" else f"{self.dataset} piece {self.piece}"


@dataclass
class TaskInput:
    """Everything a task function gets."""

    request: JobRequest
    model: torch.nn.Module
    tokenizer: Tokenizer
    primer: Callable[[], np.ndarray]  # continue: ids, BOS first (just BOS when starting from nothing)
    progress: Callable[[float, str], None]  # (fraction of the task done, what is happening)
    piece: Callable[[], np.ndarray]  # the dataset piece, in the model's tokens

    def upload(self) -> symusic.Score:
        """The uploaded MIDI file's score (tasks name the upload in its errors: ``request.given_name``)."""
        assert self.request.midi is not None  # JobRunner.submit checks it
        return midi_from_bytes(self.request.midi.read_bytes())

    def sampling(self, n_tokens: int) -> dict[str, Any]:
        """The sampling options of ``generate`` and of :mod:`reprise.generation.conditional`, reporting
        progress out of ``n_tokens`` tokens."""
        r = self.request

        def on_token(done: int) -> None:
            self.progress(done / n_tokens, f"generating: {done} of {n_tokens} tokens")

        self.progress(0.0, f"generating {r.samples} x {n_tokens} tokens")
        return {
            "num_samples": r.samples,
            "seed": r.seed,
            "sampling": SamplingConfig(r.temperature, r.top_k, r.top_p),
            "on_token": on_token,
        }


@dataclass
class Made:
    """A task's result: one score per sample, with what the piano rolls draw apart as given."""

    scores: list[symusic.Score]
    ids: np.ndarray | None = None  # continue: the samples' ids, for attention pages
    given: tuple[int, ...] = ()  # tracks the model was given
    generated_span: tuple[float, float] | None = None  # bars the model wrote, where the rest was given


def tokens_for(amount: int, unit: str, tokenizer: Tokenizer) -> int:
    """``amount`` bars or tokens as tokens; bars only for tokenizers with a fixed bar length."""
    if unit == "tokens":
        return amount
    per_bar = tokenizer.tokens_per_bar()
    if per_bar is None:
        raise RepriseError(f"this model's tokenizer ({tokenizer.name}) has no fixed bar length: give tokens")
    return amount * per_bar


def new_tokens(request: JobRequest, tokenizer: Tokenizer) -> int:
    """How many tokens ``request.length`` asks for, checked against :data:`MAX_NEW_TOKENS`."""
    n_new = tokens_for(request.length, request.unit, tokenizer)
    if not 1 <= n_new <= MAX_NEW_TOKENS:
        raise RepriseError(f"length: {n_new} new tokens; choose 1 to {MAX_NEW_TOKENS}")
    return n_new


def for_task(task: str) -> Callable[[Callable[[TaskInput], Made]], Callable[[TaskInput], Made]]:
    """Decorator: run the task only on a model trained for it; any other model is refused, saying what it does."""

    def wrap(function: Callable[[TaskInput], Made]) -> Callable[[TaskInput], Made]:
        def run(job: TaskInput) -> Made:
            trained = trained_task(job.model, job.tokenizer)
            if trained == task:
                return function(job)
            does = "continues music from left to right" if trained == "continue" else f"was trained to {trained}"
            fix = (
                f"Choose '{trained}' for it, or pick a decoder-only model"
                if task == "continue"
                else f"{task.capitalize()} needs a conditional model trained for it "
                f"(reprise train --model encoder-decoder --task {task}); pick one in the model list"
            )
            raise RepriseError(f"this model cannot {task}: it {does}. {fix}.")

        run.__doc__ = function.__doc__
        return run

    return wrap


@for_task("continue")
def continue_music(job: TaskInput) -> Made:
    """Sample continuations of the primer (just ``BOS`` when starting from nothing)."""
    n_new = new_tokens(job.request, job.tokenizer)
    ids = generate(job.model, job.tokenizer, job.primer(), n_new, **job.sampling(n_new))
    return Made([job.tokenizer.decode(row) for row in ids], ids=ids)


@for_task("harmonize")
def harmonize_melody(job: TaskInput) -> Made:
    """Four-part chorales whose soprano is the given melody (``reprise harmonize``)."""
    r, tokenizer = job.request, job.tokenizer
    if r.source == "dataset":
        steps = tokenizer.decode_grid(job.piece())[:, 0]
    else:
        steps = named(
            r.given_name, lambda: melody_line(conditional.melody_track(job.upload(), r.melody_track), r.quantize)
        )
    soprano = named(r.given_name, lambda: conditional.fitted_soprano(steps, tokenizer, r.transpose))
    decoder_only = not isinstance(job.model, EncoderDecoder)  # it writes the soprano's tokens too (forced)
    tokens = 4 * (len(soprano) + tokenizer.soprano_ahead) + 1 if decoder_only else 3 * len(soprano)
    chorales = conditional.harmonize(job.model, tokenizer, soprano, **job.sampling(tokens))
    return Made([tokenizer.decode(ids) for ids in chorales], given=(0,))


@for_task("accompany")
def accompany_melody(job: TaskInput) -> Made:
    """A song of two tracks, the given melody and an accompaniment of at most ``length`` events."""
    r, tokenizer = job.request, job.tokenizer
    melody = named(r.given_name, lambda: conditional.melody_events(job.upload(), r.melody_track))
    n_max = new_tokens(r, tokenizer)
    parts = conditional.accompany(job.model, Task("accompany", tokenizer), melody, n_max, **job.sampling(n_max))
    return Made([conditional.accompanied(melody, part) for part in parts], given=(0,))


@for_task("infill")
def infill_bars(job: TaskInput) -> Made:
    """The given piece with ``bars`` written anew, joined at both ends (``reprise infill``)."""
    r, tokenizer = job.request, job.tokenizer
    task = Task("infill", tokenizer)
    ids = job.piece() if r.source == "dataset" else named(r.given_name, lambda: tokenizer.encode_score(job.upload()))
    span = named(r.given_name, lambda: conditional.bar_span(r.bars, task, ids))
    n_tokens = (span[1] - span[0]) * tokenizer.frame
    pieces = conditional.infill(job.model, task, ids, span, **job.sampling(n_tokens))
    bars = (span[0] / STEPS_PER_BAR, span[1] / STEPS_PER_BAR)
    return Made([tokenizer.decode(p) for p in pieces], generated_span=bars)


TASKS: dict[str, Callable[[TaskInput], Made]] = {
    "continue": continue_music,
    "harmonize": harmonize_melody,
    "accompany": accompany_melody,
    "infill": infill_bars,
}
