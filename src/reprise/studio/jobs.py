"""The studio's jobs: one request to make music, run in a worker thread with progress and cancel.

A job names a model, a task and its settings. The task is a plain function in
:data:`TASKS` that receives a :class:`TaskInput` (the loaded model, its tokenizer,
the primer or uploaded melody, the sampling settings and a progress callback) and
returns the generated ids, one row per sample; the job then writes each sample as
MIDI with its piano roll and WAV (``write_samples``, as ``reprise generate --wav``
does). MusicXML and attention pages are written on first request, because they
take longer than the rest and most results never need them.

``continue`` (from nothing, an uploaded MIDI file or a dataset piece) is built in.
``harmonize``, ``accompany`` and ``infill`` need a conditional (encoder-decoder)
model trained for that task; until one is loaded they fail with a message that
says so. A conditional task plugs in with ``TASKS[name] = function``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reprise.api import write_samples
from reprise.data.dataset import TokenDataset
from reprise.data.musicxml import write_musicxml
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint
from reprise.visualization.attention import note_attention
from reprise.visualization.attention_html import write_attention_html

MAX_NEW_TOKENS = 4096  # one job's new tokens per sample: minutes on a laptop CPU
MAX_SAMPLES = 8
ATTENTION_TOKENS = 512  # attention pages show at most this many tokens of a piece (from its start)
GENERATING = 0.85  # share of the progress bar for sampling; the rest is writing MIDI, piano rolls, WAV


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


@dataclass
class TaskInput:
    """Everything a task function gets."""

    request: JobRequest
    model: torch.nn.Module
    tokenizer: Tokenizer
    primer: np.ndarray  # ids, BOS first (just BOS when starting from nothing)
    progress: Callable[[float, str], None]  # (fraction of the task done, what is happening)


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
        }


def tokens_for(amount: int, unit: str, tokenizer: Tokenizer) -> int:
    """``amount`` bars or tokens as tokens; bars only for tokenizers with a fixed bar length."""
    if unit == "tokens":
        return amount
    per_bar = tokenizer.tokens_per_bar()
    if per_bar is None:
        raise RepriseError(f"this model's tokenizer ({tokenizer.name}) has no fixed bar length: give tokens")
    return amount * per_bar


def continue_music(job: TaskInput) -> np.ndarray:
    """Sample continuations of the primer (just ``BOS`` when starting from nothing)."""
    r = job.request
    n_new = tokens_for(r.length, r.unit, job.tokenizer)
    if not 1 <= n_new <= MAX_NEW_TOKENS:
        raise RepriseError(f"length: {n_new} new tokens; choose 1 to {MAX_NEW_TOKENS}")
    job.progress(0.0, f"generating {r.samples} x {n_new} tokens")

    def on_token(done: int) -> None:
        job.progress(done / n_new, f"generating: {done} of {n_new} tokens")

    return generate(
        job.model,
        job.tokenizer,
        job.primer,
        n_new,
        r.samples,
        SamplingConfig(r.temperature, r.top_k, r.top_p),
        r.seed,
        on_token=on_token,
    )


def model_task(model: torch.nn.Module) -> str:
    """What a loaded model does: a conditional model's config names its task; every other model continues."""
    return getattr(model.config, "task", None) or "continue"


def needs_conditional_model(task: str) -> Callable[[TaskInput], np.ndarray]:
    """The stand-in for ``task`` until a conditional model for it is registered: a clear refusal."""

    def refuse(job: TaskInput) -> np.ndarray:
        trained = model_task(job.model)
        does = "continues music from left to right" if trained == "continue" else f"was trained to {trained}"
        raise RepriseError(
            f"this model cannot {task}: it {does}. {task.capitalize()} needs a conditional model trained for "
            f"it (reprise train --model encoder-decoder --task {task}); pick one in the model list."
        )

    return refuse


TASKS: dict[str, Callable[[TaskInput], np.ndarray]] = {
    "continue": continue_music,
    "harmonize": needs_conditional_model("harmonize"),
    "accompany": needs_conditional_model("accompany"),
    "infill": needs_conditional_model("infill"),
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
        if request.source == "dataset" and request.dataset not in self.datasets:
            raise RepriseError(f"unknown dataset {request.dataset!r}")
        if request.source == "midi" and request.midi is None:
            raise RepriseError("starting from a MIDI file needs an uploaded file")
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
            model, tokenizer = self.load(job.request.model)
            primer = self._primer(job.request, tokenizer)
            ids = TASKS[job.request.task](TaskInput(job.request, model, tokenizer, primer, progress))
            progress(1.0, "writing MIDI, piano rolls and audio")
            write_samples(ids, tokenizer, job.folder, "sample", wav=True)
            for i, row in enumerate(ids, start=1):
                np.save(job.folder / f"sample-{i}.npy", row)
            job.samples, job.progress, job.status, job.stage = len(ids), 1.0, "done", "done"
        except Cancelled:
            job.status, job.stage = "cancelled", "cancelled"
        except RepriseError as err:
            job.status, job.stage, job.error = "failed", "failed", str(err)
        except Exception as err:  # noqa: BLE001  (a bug: say so in the page and keep serving)
            job.status, job.stage, job.error = "failed", "failed", f"internal error: {type(err).__name__}: {err}"

    def _primer(self, request: JobRequest, tokenizer: Tokenizer) -> np.ndarray:
        """The primer ids: ``BOS`` alone, or the start of the uploaded file or dataset piece."""
        if request.source == "nothing" or request.task != "continue":
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
    model, tokenizer = runner.load(job.request.model)
    ids = np.load(stem.with_suffix(".npy"))
    if kind == "musicxml":
        out = stem.with_suffix(".musicxml")
        return out if out.is_file() else write_musicxml(tokenizer.decode(ids), out)
    if kind == "attention":
        out = stem.with_suffix(".attention.html")
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
