"""`reprise train`: options, presets and the config they make, then the trainer.

Options left at their default take the preset's value; an option given on the command line
overrides one field. `--resume` takes no other option: a run continues as it was configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from reprise.cli.arrange import encoder_decoder_config
from reprise.data.melody_condition import N_FEATURES, MelodyConditioned, MelodyPairs
from reprise.data.pairs import TASKS
from reprise.device import PRECISIONS, emulated_bf16, pick_device
from reprise.models.attention import ATTENTION_KINDS
from reprise.models.config import POSITIONS
from reprise.training.config import TrainConfig
from reprise.training.presets import PRESETS

if TYPE_CHECKING:
    from reprise.data.tokenizer import Tokenizer

_DEFAULTS = TrainConfig()


def _weight_option(name: str, default: float, text: str) -> Callable:
    """A loss weight: a float of at least 0, its default shown."""
    return click.option(name, type=click.FloatRange(0), default=default, show_default=True, help=text)


@click.command()
@click.option("--data", type=click.Path(path_type=Path), help="Prepared dataset directory.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run directory to write.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --run from its last checkpoint, exactly as it was configured: "
    "no other option may be given with it.",
)
@click.option("--overwrite", is_flag=True, help="Replace the run already in --run (its checkpoints and metrics).")
@click.option(
    "--model",
    type=click.Choice(["transformer", "lstm", "markov", "encoder-decoder"]),
    default="transformer",
    show_default=True,
    help="The Music Transformer, a baseline to compare it with, or the encoder-decoder that arranges (with --task).",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    help="A conditional task (docs/conditional.md). A transformer learns accompany (a `prepare-pairs` folder) "
    "given the melody beside each token (see --melody), and infill (chorale or melody "
    "grid) from fill-in-the-middle streams. The encoder-decoder learns harmonize (chorale grid: soprano -> A, T, "
    "B), accompany (melody -> accompaniment) or infill through cross-attention.",
)
@click.option(
    "--encoder-layers",
    type=click.IntRange(1),
    help="Encoder-decoder: encoder blocks [default: half of --layers, which counts the decoder's].",
)
@click.option(
    "--encoder-attention",
    help="Encoder-decoder: the encoder's attention kind (full, rope, alibi, local, fourier), or one per encoder "
    "block [default: rope].",
)
@click.option(
    "--source-context",
    type=click.IntRange(8),
    help="Encoder-decoder: source tokens the encoder reads at once [default: --context].",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="tiny",
    show_default=True,
    help="Model size and training settings (jsb-best: the tuned JSB model); the options below override single fields.",
)
@click.option("--positions", type=click.Choice(POSITIONS), help="Absolute positions [default: learned].")
@click.option(
    "--attention",
    help=f"Attention kind ({', '.join(ATTENTION_KINDS)}), or one per layer separated by "
    "commas, e.g. fourier,rope,rope,rope [default: full].",
)
@click.option("--context", type=click.IntRange(8), help="Context length in tokens [default: from preset].")
@click.option("--d-model", type=click.IntRange(8), help="Model width [default: from preset].")
@click.option("--layers", "n_layers", type=click.IntRange(1), help="Number of blocks [default: from preset].")
@click.option("--heads", "n_heads", type=click.IntRange(1), help="Attention heads [default: from preset].")
@click.option("--dropout", type=click.FloatRange(0, 1), help="Dropout [default: from preset].")
@click.option(
    "--attention-dropout",
    type=click.FloatRange(0, 1),
    help="Dropout of attention probabilities; 0 is much faster on CPU [default: --dropout; 0 for relative].",
)
@click.option(
    "--max-relative-distance",
    type=click.IntRange(1),
    help="Relative attention: longest distance with its own embedding [default: context - 1].",
)
@click.option(
    "--shared-relative-heads",
    "relative_shared_heads",
    is_flag=True,
    help="Relative attention: one set of distance embeddings for all heads.",
)
@click.option("--block-size", type=click.IntRange(1), help="Local attention: tokens per block [default: 128].")
@click.option("--local-relative", is_flag=True, help="Local attention: add relative logits.")
@click.option("--hidden", type=click.IntRange(1), default=512, show_default=True, help="LSTM: hidden units per layer.")
@click.option("--order", type=click.IntRange(0), default=4, show_default=True, help="Markov: tokens of history.")
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=_DEFAULTS.steps,
    show_default=True,
    help="Optimizer steps; the LR schedule ends here.",
)
@click.option(
    "--minutes",
    "max_minutes",
    type=click.FloatRange(0, min_open=True),
    help="Stop after this much wall-clock time; the LR schedule then follows time.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=_DEFAULTS.batch_size,
    show_default=True,
    help="Windows per micro-batch.",
)
@click.option(
    "--grad-accum",
    type=click.IntRange(1),
    default=_DEFAULTS.grad_accum,
    show_default=True,
    help="Micro-batches per optimizer step.",
)
@click.option(
    "--lr",
    type=click.FloatRange(0, min_open=True),
    default=_DEFAULTS.lr,
    show_default=True,
    help="Peak learning rate (AdamW).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=_DEFAULTS.warmup,
    show_default=True,
    help="Steps of linear warm-up before the cosine decay.",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(0),
    default=_DEFAULTS.weight_decay,
    show_default=True,
    help="AdamW weight decay on weight matrices.",
)
@click.option(
    "--clip",
    type=click.FloatRange(0, min_open=True),
    default=_DEFAULTS.clip,
    show_default=True,
    help="Gradient-norm clipping threshold.",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=_DEFAULTS.ema_decay,
    show_default=True,
    help="Keep a moving average of the weights (e.g. 0.999) and validate and save that as best/; 0 = off.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(1),
    default=_DEFAULTS.eval_every,
    show_default=True,
    help="Validate and checkpoint every this many steps.",
)
@click.option(
    "--checkpoint-minutes",
    type=click.FloatRange(0),
    default=_DEFAULTS.checkpoint_minutes,
    show_default=True,
    help="Also save last/ this often, so a killed run loses at most this much work.",
)
@click.option(
    "--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seeds initialisation, data order and dropout."
)
@click.option(
    "--init",
    metavar="CHECKPOINT",
    help="Start from this run's, model folder's or shipped model's weights (fine-tuning); the model's "
    "shape comes from it.",
)
@_weight_option(
    "--unlikelihood",
    _DEFAULTS.unlikelihood,
    "Chorale grid: weight of an unlikelihood loss on the choices that make parallel fifths or octaves, "
    "sound above a voice over them, or hold a chord past a bar (docs/quality.md); 0 = off.",
)
@_weight_option(
    "--sampled-unlikelihood",
    _DEFAULTS.sampled_unlikelihood,
    "The same loss's weight on continuations the model samples itself, every 4th step; 0 = off.",
)
@_weight_option(
    "--held-unlikelihood",
    _DEFAULTS.held_unlikelihood,
    "The same loss's weight on continuations that hold a chord on past a bar; 0 = off.",
)
@click.option(
    "--scored-only",
    is_flag=True,
    default=None,
    help="Learn only the tokens an NLL scores: a harmoniser (prepare --soprano-ahead) reads the soprano "
    "it is given and is not asked to predict it.",
)
@click.option("--no-augment", is_flag=True, help="Train without data augmentation.")
@click.option(
    "--melody",
    type=click.Choice(["features", "anticipation"]),
    default="features",
    show_default=True,
    help="--task accompany (decoder-only): how the model reads the melody. features: what it plays at each "
    "token's time, added to the token's embedding (a model grown from an accompaniment model with --init starts "
    "exactly as it); anticipation: its notes interleaved into the stream --anticipation seconds ahead.",
)
@click.option(
    "--anticipation",
    type=click.FloatRange(0, 2),
    help="--task accompany (decoder-only): seconds each melody note stands in the stream before it sounds; 0 "
    f"interleaves it where it sounds [default: {_DEFAULTS.anticipation:g}].",
)
@click.option(
    "--max-transpose",
    type=click.IntRange(0),
    help=f"Augmentation: transpose windows by up to this many semitones [default: {_DEFAULTS.max_transpose}].",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=_DEFAULTS.precision,
    show_default=True,
    help="bf16: bfloat16 autocast, 1.3-1.6x faster on CPUs with AVX512-BF16 or AMX, several times slower "
    "on CPUs that emulate it (weights stay float32); auto: bf16 on CUDA only.",
)
@click.option("--device", default=_DEFAULTS.device, show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
def train(
    data: Path | None,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    model: str,
    preset: str,
    hidden: int,
    order: int,
    no_augment: bool,
    task: str | None,
    melody: str,
    encoder_layers: int | None,
    encoder_attention: str | None,
    source_context: int | None,
    **fields: Any,
) -> None:
    """Train a model on a prepared dataset, saving best/ and last/ checkpoints in --run.

    Under `torchrun --nproc-per-node N -m reprise.cli.main -- train ...` the N processes
    train one run together (DistributedDataParallel; see the README).

    The Markov chain is "trained" by counting, in one pass over the data. The
    encoder-decoder learns the --task it is given; then `reprise harmonize`,
    `accompany` or `infill` use it.
    """
    from reprise.training.trainer import train as run_train

    if resume:
        _refuse_options_besides("--run", "--resume")
        result = run_train(run_dir, resume=True)
    else:
        if data is None:
            raise click.UsageError("--data is required for a new run")
        given = _given(fields)
        if _given({"no_augment": no_augment}):
            given["augment"] = False
        encoder = {"encoder_layers": encoder_layers, "encoder_attention": encoder_attention}
        encoder["source_context"] = source_context
        if model == "encoder-decoder":
            shape = {k: v for k, v in given.items() if k not in _TRAIN_FIELDS}
            model_config = encoder_decoder_config(data, task, PRESETS[preset], shape, encoder)
        elif task == "harmonize" or any(v is not None for v in encoder.values()):
            raise click.UsageError(
                "--encoder-layers, --encoder-attention, --source-context and --task harmonize are for "
                "--model encoder-decoder (a decoder-only model learns --task accompany or infill)"
            )
        else:
            tokenizer = _decoder_data(data, task, melody).tokenizer  # fails early on a bad --data
            if "init" in given:  # new ids (a melody's controls, FILL and MIDDLE) start afresh
                model_config = replace(_init_config(given), vocab_size=tokenizer.vocab_size)
            else:
                model_config = _model_config(model, preset, tokenizer, hidden, order, given)
            if isinstance(tokenizer, MelodyConditioned):
                model_config = replace(model_config, condition=N_FEATURES)
        infill = {"infill": True} if task == "infill" and model != "encoder-decoder" else {}
        train_config = PRESETS[preset].train_config(**{k: v for k, v in given.items() if k in _TRAIN_FIELDS}, **infill)
        if emulated_bf16(train_config.precision, pick_device(train_config.device)):
            click.echo(
                "reprise: note: this CPU has no AVX512-BF16/AMX, so bf16 autocast is emulated and runs several "
                "times slower than float32; add --precision fp32",
                err=True,
            )
        result = run_train(run_dir, data, model_config, train_config, overwrite=overwrite)
    if not result.leader:  # one report for a run on several processes
        return
    click.echo(
        f"finished at step {result.step}: best validation NLL {result.best_val_nll:.4f} nats/token, "
        f"{result.tokens_per_second:,.0f} training tokens/s; checkpoints in {result.run_dir}"
    )


_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


def _refuse_options_besides(*allowed: str) -> None:
    """A usage error naming the options given beside ``allowed``: `--resume` continues a run as it was
    configured, so an option that would change it is refused rather than silently ignored."""
    context = click.get_current_context()
    given = [
        param.opts[0]
        for param in context.command.params
        if param.opts[0] not in allowed and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"--resume continues the run with the settings it was started with; drop {', '.join(given)}"
        )


def _decoder_data(data: Path, task: str | None, melody: str) -> Any:
    """The training split a decoder-only model reads: a prepared dataset; with ``--task accompany`` a pair
    folder, as accompaniments beside their melody's features or as anticipated streams (``melody``); with
    ``--task infill`` fill-in-the-middle streams of a grid dataset."""
    from reprise.data.anticipation import is_pair_folder
    from reprise.training.splits import open_split

    if (task == "accompany") != is_pair_folder(data):
        raise click.UsageError(
            f"{data}: --task accompany trains on a `reprise prepare-pairs` folder, and a pair folder needs it"
        )
    if melody != "anticipation" and _given({"anticipation": None}):
        raise click.UsageError("--anticipation is for --melody anticipation")
    if task == "accompany" and melody == "features":
        return MelodyPairs(data, "train")
    return open_split(data, "train", None, infill=task == "infill")


def _init_config(given: dict[str, Any]) -> Any:
    """The model config of the ``--init`` checkpoint; options that would change its shape are refused."""
    from reprise.models.checkpoint import read_checkpoint

    context = click.get_current_context()
    shape = [
        param.opts[0]
        for param in context.command.params
        if param.name in (set(given) - _TRAIN_FIELDS) | {"model", "hidden", "order"}
        and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT
    ]
    if shape:
        raise click.UsageError(f"--init takes the model and its shape from the checkpoint; drop {', '.join(shape)}")
    return read_checkpoint(given["init"])[1]


_LSTM_FIELDS = {"context": "context", "d_model": "d_embed", "n_layers": "n_layers", "dropout": "dropout"}


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (on the command line or from the environment), by config field name.

    Options left at their default take the preset's value, or else the config's own default.
    """
    source = click.get_current_context().get_parameter_source
    return {name: value for name, value in options.items() if source(name) is not ParameterSource.DEFAULT}


def _model_config(model: str, preset: str, tokenizer: Tokenizer, hidden: int, order: int, given: dict[str, Any]) -> Any:
    """The model config for ``tokenizer``'s data: the preset's shape with the given fields on top."""
    from reprise.models.lstm import LSTMConfig
    from reprise.models.markov import MarkovConfig

    if model == "markov":
        return MarkovConfig(vocab_size=tokenizer.vocab_size, order=order)
    if model == "lstm":
        shape = {lstm: given[name] for name, lstm in _LSTM_FIELDS.items() if name in given}
        return LSTMConfig(vocab_size=tokenizer.vocab_size, hidden=hidden, **shape)
    shape = {k: v for k, v in given.items() if k not in _TRAIN_FIELDS}
    return PRESETS[preset].model_config(**{**shape, "vocab_size": tokenizer.vocab_size, "frame": tokenizer.frame})
