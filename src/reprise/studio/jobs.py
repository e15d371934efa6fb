"""The studio's jobs: one request to make music, run in a worker thread with progress and cancel.

A job runs a request's task (:mod:`reprise.studio.tasks`), then writes each sample as
MIDI with its piano roll (the given part drawn apart, as ``reprise harmonize`` draws
it) and WAV. MusicXML and attention pages are written on first request, because they
take longer than the rest and most results never need them.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reprise.api import write_scores
from reprise.data.dataset import TokenDataset
from reprise.data.midi import read_midi
from reprise.data.musicxml import write_musicxml
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError
from reprise.models.checkpoint import load_checkpoint
from reprise.studio.tasks import TASKS, JobRequest, TaskInput, tokens_for
from reprise.visualization.attention import note_attention
from reprise.visualization.attention_html import write_attention_html

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
