"""``reprise models`` (the models that ship with reprise), ``reprise export`` (a run as a model folder),
and the ``--checkpoint``/``--model`` pair that every command that loads a model takes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from reprise.errors import RepriseError
from reprise.models.pretrained import DTYPES, TASKS, trained_task

_MODEL_HELP = "A model that ships with reprise, by name (see `reprise models`), instead of --checkpoint."


def model_options(command: Callable) -> Callable:
    """Add ``--checkpoint RUN`` and ``--model NAME`` (give one) to a command; pass both to :func:`chosen_model`."""
    command = click.option("--model", "model_name", metavar="NAME", help=_MODEL_HELP)(command)
    return click.option(
        "--checkpoint", type=click.Path(path_type=Path), help="Run or checkpoint directory (or a model folder)."
    )(command)


def transpositions_option(command: Callable) -> Callable:
    """Add ``--transpositions K``, which overrides the model's transposition ensemble (0: the one network)."""
    return click.option(
        "--transpositions",
        type=click.IntRange(0),
        metavar="K",
        help="Average the model's predictions over the piece moved by up to K semitones each way (a transposition "
        "ensemble, 2K+1 times the compute); 0 = the one network  [default: the model's own, as its card says]",
    )(command)


def chosen_model(checkpoint: Path | None, model_name: str | None) -> str | Path:
    """What ``load_checkpoint`` should load: the shipped model's name, or the checkpoint path."""
    if (checkpoint is None) == (model_name is None):
        raise click.UsageError("give --checkpoint RUN or --model NAME (one of them)")
    return model_name if model_name is not None else checkpoint_or_name(checkpoint)


def checkpoint_or_name(checkpoint: Path) -> str | Path:
    """``--checkpoint``'s value as ``load_checkpoint`` should read it: a bare name that is no file or
    folder here (``bach``) names a shipped model, anything else is a path."""
    if len(checkpoint.parts) == 1 and not checkpoint.exists():
        return str(checkpoint)
    return checkpoint


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the model cards as JSON instead of a table.")
def models(as_json: bool) -> None:
    """The trained models that ship with reprise: what each does and how well it predicts held-out music."""
    from dataclasses import asdict

    from reprise.models.pretrained import shipped_models

    found = shipped_models()
    if as_json:
        click.echo(
            json.dumps(
                [{"name": m.name, "megabytes": round(m.megabytes, 2), **asdict(m.card)} for m in found], indent=1
            )
        )
        return
    if not found:
        click.echo("no trained models ship with this install (see docs/models.md; `reprise export` makes one)")
        return
    click.echo(f"{'name':<12} {'task':<10} {'valid NLL':>9} {'test NLL':>9} {'MB':>5}  what it does")
    for m in found:
        valid, test = (f"{x:.4f}" if x is not None else "-" for x in (m.card.valid_nll, m.card.test_nll))
        click.echo(f"{m.name:<12} {m.card.task:<10} {valid:>9} {test:>9} {m.megabytes:>5.1f}  {m.card.summary}")
    click.echo("use one with --model NAME, e.g. `reprise generate --model " + found[0].name + "`")


@click.command()
@click.argument("run", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Model folder to write, e.g. src/reprise/pretrained/bach to ship it.",
)
@click.option(
    "--summary",
    help="What the model does, in one line (shown by `reprise models`) [required, unless RUN is a model folder, "
    "whose card then gives the defaults of the card's options].",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    help="What the model is for [default: an encoder-decoder's trained task, else continue].",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="Prepared dataset whose valid and test splits are scored [default: the run's data].",
)
@click.option("--data-source", default="", help="For the card: the data it was trained on, and its licence.")
@click.option("--command", "train_command", default="", help="For the card: the exact commands that trained it.")
@click.option("--hardware", default="", help="For the card: where it trained, e.g. 'CPU, 2 cores' or '1 H100'.")
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPES)),
    default="float16",
    show_default=True,
    help="Stored weights (loading upcasts them to float32).",
)
@transpositions_option
@click.option("--device", default="auto", show_default=True, help="Where to score: auto, cpu, cuda, mps.")
def export(
    run: Path,
    out: Path,
    summary: str | None,
    task: str | None,
    data: Path | None,
    data_source: str,
    train_command: str,
    hardware: str,
    dtype: str,
    transpositions: int | None,
    device: str,
) -> None:
    """Write RUN's best checkpoint as a model folder (config.json, model.safetensors, README.md card).

    The card's validation and test NLL are measured on the stored (rounded) weights,
    read back from the folder just written. A model folder (e.g. src/reprise/pretrained/bach) exported
    again, e.g. as a transposition ensemble, keeps its card's facts unless options replace them.
    """
    from reprise.models.checkpoint import load_checkpoint, resolve
    from reprise.models.pretrained import ModelCard, write_model_folder

    before = _card_of(run)
    summary = summary or before.summary
    if not summary:
        raise click.UsageError(f"--summary is required: {run} is not a model folder with a card to keep")
    if before.command and not train_command:
        again = f"reprise export {run} --out {out.name}" + (
            "" if transpositions is None else f" --transpositions {transpositions}"
        )
        train_command = f"{before.command} && {again}"

    model, tokenizer = load_checkpoint(run, transpositions=0)  # the one network's weights are what is stored
    if transpositions is not None:
        model.config.transpositions = transpositions
    task = _task(run, model, tokenizer, task)
    training_path = resolve(run) / "training.json"
    training = json.loads(training_path.read_text()) if training_path.is_file() else {}
    data = data or _run_data(run)
    card = ModelCard(
        summary,
        task,
        data_source or before.data,
        train_command,
        hardware or before.hardware,
        training.get("step", before.steps),
        round(training["elapsed"] / 60, 1) if "elapsed" in training else before.minutes,
        dtype=dtype,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # staged beside OUT and swapped in at the end, so that OUT is never a folder whose card lacks the NLL
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        write_model_folder(staged, model, tokenizer, card)  # first without NLL: scoring reads the stored weights
        if data is not None:
            valid, test = (_nll(staged, data, split, device) for split in ("valid", "test"))
            card = ModelCard(**{**card.to_json(), "valid_nll": valid, "test_nll": test})
            write_model_folder(staged, model, tokenizer, card)
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    size = (out / "model.safetensors").stat().st_size / 2**20
    click.echo(f"wrote {out} ({size:.2f} MB of {dtype} weights; valid NLL {card.valid_nll}, test NLL {card.test_nll})")


def _task(run: Path, model, tokenizer, task: str | None) -> str:
    """The card's task: what the model was trained for (an encoder-decoder's config names it); a
    ``--task`` that says otherwise is refused, because the studio and `reprise models` go by the card."""
    trained = trained_task(model, tokenizer)
    if task is not None and task != trained:
        raise RepriseError(f"{run}: --task {task}, but the model was trained to {trained}")
    return trained


def _card_of(run: Path):
    """The card of the model folder ``run`` (one ``reprise export`` wrote), or an empty card for a run."""
    from reprise.models.checkpoint import resolve
    from reprise.models.pretrained import ModelCard, read_model_config

    folder = resolve(run)
    if not (folder / "config.json").is_file():
        return ModelCard()
    return ModelCard.from_json(read_model_config(folder).get("card", {}))


def _run_data(run: Path) -> Path | None:
    """The prepared dataset a run trained on, if its ``run.json`` says and it is still there."""
    path = Path(run) / "run.json"
    from reprise.data.anticipation import is_pair_folder

    data = Path(json.loads(path.read_text())["data"]) if path.is_file() else None
    return data if data is not None and ((data / "manifest.json").is_file() or is_pair_folder(data)) else None


def _nll(folder: Path, data: Path, split: str, device: str) -> float | None:
    """NLL per token of the model folder on ``split`` of ``data`` (``None`` if that split is empty)."""
    from reprise.api import load, score

    nll = score(*load(folder, device), data, split)
    return round(nll.per_token, 5) if nll.tokens else None
