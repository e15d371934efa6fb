"""Training hyper-parameters as one dataclass, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from reprise.config import JsonConfig
from reprise.data.augment import DEFAULT_STRETCHES, DEFAULT_TRANSPOSE, Augmentation


@dataclass
class TrainConfig(JsonConfig):
    """How long and how to optimise; the LR follows linear warm-up then cosine decay.

    With ``max_minutes`` the run stops when the time is up and the cosine decay
    follows whichever of steps or time is further along, so a budgeted run still
    ends at the low LR; such runs are not bit-reproducible across machines.

    With ``augment``, every training window is transposed by up to
    ``max_transpose`` semitones (within what the tokenizer's pitch range allows)
    and, for tokenizers whose ids carry time, stretched by one of ``stretches``
    (:mod:`reprise.data.augment`): on JSB Chorales ±6 semitones lets a small model
    train longer before it overfits.

    ``precision`` ``bf16`` runs the forward pass under bfloat16 autocast (weights,
    optimizer and loss stay float32): on a CPU with AVX512-BF16 the small models
    here train 1.3x to 1.6x faster; ``auto`` is bf16 on CUDA and float32 elsewhere.
    Validation always scores in float32, as ``reprise evaluate`` does.

    ``init`` starts the weights from a checkpoint (a run, a model folder or a shipped
    model's name) instead of at random: fine-tuning, e.g. with ``unlikelihood`` > 0,
    the weight of :mod:`reprise.training.unlikelihood`'s loss (chorale grid only), and
    ``sampled_unlikelihood`` > 0, its weight on continuations the model samples itself, and
    ``held_unlikelihood`` > 0, on continuations that hold a chord on past a bar.

    ``scored_only`` leaves the tokens an NLL does not score out of the loss: a harmoniser reads
    the soprano it is given and is not asked to predict it.

    ``infill`` trains a decoder-only model on fill-in-the-middle streams of a grid dataset
    (``BOS after FILL before MIDDLE middle``, :mod:`reprise.data.fill`) instead of on plain pieces.

    ``ema_decay`` > 0 keeps an exponential moving average of the weights, which
    is what gets validated and saved as ``best/``: averaging over the last
    ~1/(1 - decay) steps smooths out the optimiser's noise for free.
    """

    steps: int = 2000
    max_minutes: float | None = None  # wall-clock budget; the LR schedule then follows time
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    clip: float = 1.0
    ema_decay: float = 0.0  # weight averaging; validation and best/ use the average (0 = off)
    eval_every: int = 200
    checkpoint_minutes: float = 5.0  # also save last/ this often, so a kill loses at most this much work
    seed: int = 0
    augment: bool = True
    max_transpose: int = DEFAULT_TRANSPOSE  # augmentation's transposition range in semitones
    stretches: tuple[float, ...] = DEFAULT_STRETCHES  # augmentation's time-stretch factors (timed tokenizers)
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32), bf16 or fp32
    device: str = "auto"
    init: str | None = None  # a checkpoint whose weights the run starts from
    unlikelihood: float = 0.0  # weight of the voice-leading unlikelihood loss (0 = off)
    sampled_unlikelihood: float = 0.0  # its weight on the model's own continuations (0 = off)
    held_unlikelihood: float = 0.0  # its weight on continuations that hold a chord past a bar (0 = off)
    scored_only: bool = False  # the loss counts only the tokens an NLL scores (not a given soprano)
    infill: bool = False  # decoder-only: train on fill-in-the-middle streams (data/fill.py)
    anticipation: float = 2.0  # --task accompany, decoder-only: seconds a melody note stands ahead of its onset

    def __post_init__(self) -> None:
        if self.max_transpose is None:  # run.json files written before the setting had a default
            self.max_transpose = DEFAULT_TRANSPOSE
        self.stretches = tuple(self.stretches)  # JSON gives a list

    def augmentation(self) -> Augmentation | None:
        """What varies each training window, or ``None`` without ``augment``."""
        return Augmentation(self.max_transpose, self.stretches) if self.augment else None
