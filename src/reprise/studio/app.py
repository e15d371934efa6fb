"""The studio's web server: a FastAPI app serving one page and a small JSON API over the job runner.

    GET  /                               the page (static/index.html, studio.js, studio.css)
    GET  /api/models                     shipped models and the user's runs
    GET  /api/datasets                   prepared datasets given with --data, with their pieces
    POST /api/jobs                       start a job (a form, with an optional MIDI upload) -> {"id"}
    GET  /api/jobs/{id}                  its status and progress
    POST /api/jobs/{id}/cancel           stop it
    GET  /api/jobs/{id}/samples/{n}/{kind}   mid | wav | png | musicxml | attention (?download=1 to save)

Mistakes in a request (a bad upload, an impossible setting) answer 400 with a
one-line ``detail`` the page shows; nothing a user sends stops the server.
Everything served comes from the package: no network is needed or used.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from reprise.data.dataset import read_manifest
from reprise.data.tokenizer import tokenizer_from_json
from reprise.errors import RepriseError
from reprise.models.checkpoint import resolve
from reprise.models.pretrained import ModelCard, read_model_config, shipped_models
from reprise.studio.jobs import JobRunner, result_file
from reprise.studio.tasks import JobRequest

MAX_UPLOAD = 4 * 2**20  # bytes; a long piano performance is well under 1 MB of MIDI
STATIC = Path(str(resources.files("reprise.studio") / "static"))
MEDIA = {
    "mid": "audio/midi",
    "wav": "audio/wav",
    "png": "image/png",
    "attention": "text/html",
    "musicxml": "application/vnd.recordare.musicxml+xml",
}


def create_app(runs: Path | None = None, data: list[Path] | None = None, out: Path | None = None) -> FastAPI:
    """The studio for the shipped models, the runs under ``runs`` and the datasets ``data``; results go to ``out``."""
    catalog = model_catalog(runs)
    datasets = {Path(d).name: Path(d) for d in data or []}
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="reprise-studio-"))
    runner = JobRunner(out, {key: entry["path"] for key, entry in catalog.items()}, datasets)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()  # stop the worker when the server stops

    app = FastAPI(title="reprise studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runner = runner
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RepriseError)
    async def user_error(request: Request, err: RepriseError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_field(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in err.errors())
        return JSONResponse({"detail": f"bad request ({problems})"}, status_code=400)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/models")
    def models() -> list[dict[str, Any]]:
        return [{k: v for k, v in entry.items() if k != "path"} | {"key": key} for key, entry in catalog.items()]

    @app.get("/api/datasets")
    def list_datasets() -> list[dict[str, Any]]:
        return [{"key": key, "pieces": valid_pieces(path)} for key, path in datasets.items()]

    @app.post("/api/jobs")
    async def start(
        model: Annotated[str, Form()],
        task: Annotated[str, Form()] = "continue",
        source: Annotated[str, Form()] = "nothing",
        dataset: Annotated[str | None, Form()] = None,
        piece: Annotated[int, Form()] = 0,
        primer: Annotated[int, Form()] = 2,
        length: Annotated[int, Form()] = 8,
        unit: Annotated[str, Form()] = "bars",
        bars: Annotated[str, Form()] = "",
        temperature: Annotated[float, Form()] = 1.0,
        top_k: Annotated[int, Form()] = 0,
        top_p: Annotated[float, Form()] = 1.0,
        seed: Annotated[int, Form()] = 0,
        samples: Annotated[int, Form()] = 1,
        melody_track: Annotated[str, Form()] = "",
        quantize: Annotated[bool, Form()] = False,
        transpose: Annotated[int, Form()] = 0,
        midi: Annotated[UploadFile | None, File()] = None,
    ) -> dict[str, str]:
        upload = await save_upload(midi, out / "uploads") if midi is not None and midi.filename else None
        request = JobRequest(
            model,
            task,
            source,
            upload,
            dataset,
            piece,
            primer,
            length,
            unit,
            bars,
            temperature,
            top_k,
            top_p,
            seed,
            samples,
            midi_name=Path(midi.filename).name if upload else "",
            melody_track=melody_track.strip(),
            quantize=quantize,
            transpose=transpose,
        )
        return {"id": runner.submit(request).id}

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        return runner.get(job_id).to_json()

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        job = runner.get(job_id)
        job.cancel.set()
        return job.to_json()

    @app.get("/api/jobs/{job_id}/samples/{sample}/{kind}")
    def sample_file(job_id: str, sample: int, kind: str, download: bool = False) -> FileResponse:
        if kind not in MEDIA:
            raise RepriseError(f"unknown kind {kind!r}; choose one of {', '.join(MEDIA)}")
        path = result_file(runner.get(job_id), sample, kind, runner)
        name = f"reprise-{job_id}-{sample}{path.suffix if kind != 'attention' else '.attention.html'}"
        return FileResponse(
            path,
            media_type=MEDIA[kind],
            filename=name if download else None,
            content_disposition_type="attachment" if download else "inline",
        )

    return app


async def save_upload(upload: UploadFile, folder: Path) -> Path:
    """Check that ``upload`` is a MIDI file of reasonable size and save it; a clear error if not."""
    name = Path(upload.filename or "upload.mid").name
    data = await upload.read(MAX_UPLOAD + 1)
    if not data:
        raise RepriseError(f"{name}: the file is empty")
    if len(data) > MAX_UPLOAD:
        raise RepriseError(f"{name}: too large for a MIDI file (over {MAX_UPLOAD // 2**20} MB)")
    if not data.startswith(b"MThd"):
        raise RepriseError(f"{name}: not a MIDI file (a .mid file starts with 'MThd')")
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkstemp(suffix=".mid", prefix=Path(name).stem[:40] + "-", dir=folder)[1])
    path.write_bytes(data)
    return path


def model_catalog(runs: Path | None) -> dict[str, dict[str, Any]]:
    """The models the page offers: ``model:NAME`` for shipped ones, ``run:NAME`` for checkpoints under ``runs``."""
    catalog = {}
    for m in shipped_models():
        catalog[f"model:{m.name}"] = describe(m.path, m.name, "shipped")
    for folder in sorted(Path(runs).iterdir()) if runs and Path(runs).is_dir() else []:
        try:
            catalog[f"run:{folder.name}"] = describe(folder, folder.name, "run")
        except RepriseError:
            continue  # not a run or model folder
    return catalog


def describe(path: Path, name: str, kind: str) -> dict[str, Any]:
    """What the page shows of a model before loading it: its tokenizer, whether bars make sense, its NLL."""
    directory = resolve(path)
    if (directory / "tokenizer.json").is_file():
        tokenizer_json = json.loads((directory / "tokenizer.json").read_text())
        training = directory / "training.json"
        nll = json.loads(training.read_text()).get("best_val_nll") if training.is_file() else None
        config = json.loads((directory / "model.json").read_text())["config"]
        task = config.get("task", "continue")  # a conditional model's config names its task
        card = {"summary": f"your run {name}", "task": task, "valid_nll": nll, "test_nll": None}
    else:
        meta = read_model_config(directory)
        found = ModelCard.from_json(meta.get("card", {}))
        tokenizer_json = meta["tokenizer"]
        card = {
            "summary": found.summary or name,
            "task": found.task,
            "valid_nll": found.valid_nll,
            "test_nll": found.test_nll,
        }
    tokenizer = tokenizer_from_json(tokenizer_json)
    return {
        "name": name,
        "kind": kind,
        "path": path,
        "tokenizer": tokenizer.name,
        "tokens_per_bar": tokenizer.tokens_per_bar(),
        **card,
    }


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a thread while the ``with`` block runs and yield its base URL (port 0: any free one).

    For tests, screenshots and notebooks; ``reprise studio`` serves in the foreground.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="reprise-studio", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RepriseError(f"the studio could not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def valid_pieces(directory: Path) -> list[str]:
    """The names of a prepared dataset's validation pieces, in the order of its valid split."""
    return [p["name"] for p in read_manifest(directory)["pieces"] if p["split"] == "valid"]
