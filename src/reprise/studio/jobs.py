"""The studio's jobs: one request to make music, run in a worker thread with progress and cancel.

A job names a model, a task and its settings. The task is a plain function in
:data:`TASKS` that receives a :class:`TaskInput` (the loaded model, its tokenizer,
the primer, the uploaded or dataset music, the sampling settings and a progress
callback) and returns what it :class:`Made`: one score per sample, and which part
of each the model was given. The job then writes each sample as MIDI with its
piano roll (the given part drawn apart, as ``reprise harmonize`` draws it) and
WAV. MusicXML and attention pages are written on first request, because they
take longer than the rest and most results never need them.

``continue`` (from nothing, an uploaded MIDI file or a dataset piece) runs the
decoder-only models. ``harmonize``, ``accompany`` and ``infill`` run an
encoder-decoder trained for that task, through the same functions as the
commands of the same names (:mod:`reprise.generation.conditional`), with the same
checks and messages. A model asked for a task it was not trained for says so.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import symusic
import torch

from reprise.api import write_scores
from reprise.data.dataset import TokenDataset
from reprise.data.given_melody import melody_line
from reprise.data.midi import midi_from_bytes, read_midi
from reprise.data.musicxml import write_musicxml
from reprise.data.pairs import STEPS_PER_BAR, Task
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError, named
from reprise.generation import conditional
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint
from reprise.models.encoder_decoder import EncoderDecoder
from reprise.models.pretrained import trained_task
from reprise.visualization.attention import note_attention
from reprise.visualization.attention_html import write_attention_html

MAX_NEW_TOKENS = 4096  # one job's new tokens per sample: minutes on a laptop CPU
MAX_SAMPLES = 8
ATTENTION_TOKENS = 512  # attention pages show at most this many tokens of a piece (from its start)
GENERATING = 0.85  # share of the progress bar for sampling; the rest is writing MIDI, piano rolls, WAV
SOURCES = {  # what each task can start from (the first is the page's default)
    "continue": ("nothing", "midi", "dataset"),
    "harmonize": ("midi", "dataset"),
    "accompany": ("midi",),
    "infill": ("midi", "dataset"),
}
NO_ATTENTION = (
    "No attention arcs for an encoder-decoder: its decoder also attends to the given part through "
    "cross-attention, which arcs drawn inside one piece cannot show"
)


class Cancelled(Exception):
    """Raised inside a job's progress callback when the user pressed cancel."""


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


@dataclass
class Job:
    """One request's state, as the page polls it."""

    id: str
    request: JobRequest
    folder: Path
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    stage: str = "waiting for the worker"
    error: str | None = None
    samples: int = 0
    attention: bool = False  # whether its samples have attention pages
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "stage": self.stage,
            "error": self.error,
            "samples": self.samples,
            "task": self.request.task,
            "model": self.request.model,
            "attention": None if self.attention else NO_ATTENTION,
        }


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


class JobRunner:
    """Runs jobs one at a time in a worker thread, keeping loaded models for the next job."""

    def __init__(self, folder: Path, models: dict[str, str | Path], datasets: dict[str, Path]):
        self.folder, self.models, self.datasets = Path(folder), models, datasets
        self.jobs: dict[str, Job] = {}
        self._loaded: dict[str, tuple[torch.nn.Module, Tokenizer]] = {}
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reprise-job")

    def submit(self, request: JobRequest) -> Job:
        """Queue ``request``; it is checked now, so that a bad one fails at once with a clear message."""
        if request.model not in self.models:
            raise RepriseError(f"unknown model {request.model!r}")
        if request.task not in TASKS:
            raise RepriseError(f"unknown task {request.task!r}; choose one of {', '.join(TASKS)}")
        if not 1 <= request.samples <= MAX_SAMPLES:
            raise RepriseError(f"samples: choose 1 to {MAX_SAMPLES}")
        if request.source not in SOURCES[request.task]:
            choices = " or ".join(
                {"nothing": "nothing", "midi": "a MIDI file", "dataset": "a dataset piece"}[s]
                for s in SOURCES[request.task]
            )
            raise RepriseError(f"{request.task} starts from {choices}, not {request.source!r}")
        if request.source == "dataset" and request.dataset not in self.datasets:
            raise RepriseError(f"unknown dataset {request.dataset!r}")
        if request.source == "midi" and request.midi is None:
            raise RepriseError(f"{request.task} from a MIDI file needs an uploaded file")
        job_id = uuid.uuid4().hex[:12]
        job = Job(job_id, request, self.folder / job_id)
        job.folder.mkdir(parents=True, exist_ok=True)
        self.jobs[job_id] = job
        self._worker.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise RepriseError(f"no job {job_id!r} (the studio forgets jobs when it restarts)")
        return self.jobs[job_id]

    def load(self, key: str) -> tuple[torch.nn.Module, Tokenizer]:
        """The model listed under ``key``, loaded once."""
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_checkpoint(self.models[key])
            return self._loaded[key]

    def shutdown(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            job.status, job.stage = "cancelled", "cancelled before it started"
            return
        job.status, job.stage = "running", "loading the model"

        def progress(fraction: float, stage: str) -> None:
            if job.cancel.is_set():
                raise Cancelled
            job.progress, job.stage = GENERATING * fraction, stage

        try:
            request = job.request
            model, tokenizer = self.load(request.model)
            primer = lambda: self._primer(request, tokenizer)  # noqa: E731  (read once the task accepts the model)
            piece = lambda: self._dataset_piece(request, tokenizer)  # noqa: E731
            made = TASKS[request.task](TaskInput(request, model, tokenizer, primer, progress, piece))
            progress(1.0, "writing MIDI, piano rolls and audio")
            write_scores(
                made.scores, job.folder, "sample", wav=True, given=made.given, generated_span=made.generated_span
            )
            for i, row in enumerate(made.ids if made.ids is not None else [], start=1):
                np.save(job.folder / f"sample-{i}.npy", row)
            job.attention = made.ids is not None
            job.samples, job.progress, job.status, job.stage = len(made.scores), 1.0, "done", "done"
        except Cancelled:
            job.status, job.stage = "cancelled", "cancelled"
        except RepriseError as err:
            job.status, job.stage, job.error = "failed", "failed", str(err)
        except Exception as err:  # noqa: BLE001  (a bug: say so in the page and keep serving)
            job.status, job.stage, job.error = "failed", "failed", f"internal error: {type(err).__name__}: {err}"

    def _primer(self, request: JobRequest, tokenizer: Tokenizer) -> np.ndarray:
        """The primer ids: ``BOS`` alone, or the start of the uploaded file or dataset piece."""
        if request.source == "nothing":
            return np.array([tokenizer.bos_id])
        if request.source == "midi":
            ids = tokenizer.encode_midi(request.midi)
        else:
            ids = self._dataset_piece(request, tokenizer)
        body = ids[ids > tokenizer.eos_id][: tokens_for(request.primer, request.unit, tokenizer)]
        if not len(body):
            raise RepriseError("the primer has no notes this model can read")
        return np.concatenate([[tokenizer.bos_id], body])

    def _dataset_piece(self, request: JobRequest, tokenizer: Tokenizer) -> np.ndarray:
        """Piece ``request.piece`` of the dataset's valid split, in the model's tokens."""
        dataset = TokenDataset(self.datasets[request.dataset], "valid")
        if not 0 <= request.piece < len(dataset):
            raise RepriseError(f"{request.dataset}: its valid split has {len(dataset)} pieces, not {request.piece + 1}")
        ids = dataset.piece(request.piece)
        if dataset.tokenizer.to_json() == tokenizer.to_json():
            return ids
        return tokenizer.compress(tokenizer.encode_score(dataset.tokenizer.decode(ids)))


def result_file(job: Job, sample: int, kind: str, runner: JobRunner) -> Path:
    """The file ``kind`` (mid, wav, png, musicxml, attention) of one sample, written now if it is made on demand."""
    if job.status != "done" or not 1 <= sample <= job.samples:
        raise RepriseError(f"job {job.id} has no sample {sample}")
    stem = job.folder / f"sample-{sample}"
    if kind in ("mid", "wav", "png"):
        return stem.with_suffix(f".{kind}")
    if kind == "musicxml":
        out = stem.with_suffix(".musicxml")
        return out if out.is_file() else write_musicxml(read_midi(stem.with_suffix(".mid")), out)
    if kind == "attention":
        if not job.attention:
            raise RepriseError(NO_ATTENTION)
        out = stem.with_suffix(".attention.html")
        model, tokenizer = runner.load(job.request.model)
        ids = np.load(stem.with_suffix(".npy"))
        return out if out.is_file() else attention_page(model, tokenizer, ids, out, f"sample {sample}")
    raise RepriseError(f"unknown result kind {kind!r}")


def attention_page(model: torch.nn.Module, tokenizer: Tokenizer, ids: np.ndarray, out: Path, title: str) -> Path:
    """The interactive attention page of ``ids``, cut to its first ``ATTENTION_TOKENS`` tokens (whole frames)."""
    if not hasattr(model, "blocks"):
        raise RepriseError("this model has no attention to show (a baseline, not a transformer)")
    limit = ATTENTION_TOKENS - (ATTENTION_TOKENS - 1) % tokenizer.frame  # BOS + whole frames
    shown = ids[:limit]
    note = "" if len(ids) <= limit else f" (first {limit} of {len(ids)} tokens: longer pieces are cut to a window)"
    return write_attention_html(note_attention(model, tokenizer, shown), out, title + note)
