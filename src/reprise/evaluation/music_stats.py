"""Musical statistics of pieces, and how far apart two sets of pieces are on each.

Per-piece statistics port MusPy's metric definitions (Dong et al., "MusPy: A
Toolkit for Symbolic Music Generation", ISMIR 2020; ``muspy/metrics/metrics.py``),
computed on the 16th-note grid of :class:`~reprise.evaluation.pieces.Piece`:

* ``pitch_range`` -- highest minus lowest pitch (MusPy ``pitch_range``).
* ``pitch_class_entropy`` -- Shannon entropy (bits) of the note-count pitch-class
  histogram (MusPy ``pitch_class_entropy``).
* ``polyphony`` -- mean number of sounding pitches over the steps where at least one
  sounds (MusPy ``polyphony``).
* ``empty_bar_ratio`` -- share of bars in which no note sounds (MusPy
  ``empty_measure_rate``, except that a note ending on a bar line does not mark the
  next bar as used, and a piece ending on a bar line has no extra empty bar).
* ``in_key`` -- share of notes whose pitch class belongs to the piece's key, the key
  estimated by the Krumhansl-Schmuckler algorithm with the Krumhansl-Kessler profiles
  (the same as music21's ``KrumhanslSchmuckler`` analysis, which the tests check;
  MusPy's ``scale_consistency`` instead takes the best of all 24 scales). A major
  key's notes are its major scale; a minor key's are its natural minor scale plus
  the raised leading tone, which tonal minor uses at every cadence.
* ``note_density`` -- notes per bar.
* ``notes_at_onset`` -- mean number of notes sounding at each distinct onset (the
  chord a listener hears struck; long overlapping notes pile up here).
* ``median_duration`` -- median note length in seconds (at the score's first tempo).
* Histograms (normalised to sum 1): ``pitch_class_histogram`` (12 classes);
  ``interval_histogram`` of the melodic intervals of every track's top line (the
  highest note at each onset), -12..+12 semitones with larger leaps counted as
  +/-12; ``ioi_histogram`` of the inter-onset intervals between successive distinct
  onsets and ``duration_histogram`` of note durations, both in
  :data:`DURATION_CLASSES` (16th notes; each value goes to the nearest class on a
  log scale).

How two sets compare follows Yang & Lerch, "On the evaluation of generative models
in music" (Neural Computing and Applications, 2020): the *overlapping area* (OA) of
two kernel density estimates, 1 for identical distributions, 0 for disjoint ones;
the report's *distance* is ``1 - OA``. A scalar statistic compares the densities of
its per-piece values. A histogram statistic compares, as Yang & Lerch do, the
density of Euclidean distances between reference pieces (intra-set) with that of
distances between samples and reference pieces (inter-set): when the samples are
like the reference, a sample is as far from a reference piece as two reference
pieces are from each other. A piece is never paired with itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reprise.evaluation.pieces import Piece
from reprise.evaluation.voice_leading import voice_leading

DURATION_CLASSES = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32])  # 16th notes: 16th ... two whole notes
INTERVAL_CLIP = 12
# Krumhansl & Kessler (1982) key profiles, tonic first, as music21 and Humdrum's keycor give them.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=bool)  # natural minor + leading tone
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class Statistic:
    """A per-piece statistic: its name, what it means, and how to compute it."""

    name: str
    label: str
    compute: Callable[[Piece], float | np.ndarray]
    histogram: bool = False
    bins: tuple[str, ...] = ()


# -- scalar statistics ---------------------------------------------------------------------------
def pitch_range(piece: Piece) -> float:
    return float(piece.pitch.max() - piece.pitch.min()) if len(piece.pitch) else np.nan


def pitch_class_histogram(piece: Piece) -> np.ndarray:
    return _normalised(np.bincount(piece.pitch % 12, minlength=12))


def pitch_class_entropy(piece: Piece) -> float:
    p = pitch_class_histogram(piece)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if len(p) else np.nan


def polyphony(piece: Piece) -> float:
    sounding = piece.roll().sum(axis=1)
    return float(sounding.sum() / (sounding > 0).sum()) if sounding.any() else np.nan


def empty_bar_ratio(piece: Piece) -> float:
    if piece.n_bars == 0:
        return np.nan
    first = np.floor(piece.onset / piece.steps_per_bar).astype(int)
    last = np.ceil((piece.onset + piece.duration) / piece.steps_per_bar - 1e-9).astype(int)  # exclusive
    change = np.zeros(piece.n_bars + 1, dtype=np.int64)
    np.add.at(change, first, 1)
    np.add.at(change, np.clip(np.maximum(last, first + 1), 0, piece.n_bars), -1)
    return float((np.cumsum(change)[:-1] == 0).mean())


def note_density(piece: Piece) -> float:
    return len(piece.pitch) / piece.n_bars if piece.n_bars else np.nan


def notes_at_onset(piece: Piece) -> float:
    if not len(piece.pitch):
        return np.nan
    onsets = np.unique(piece.onset)
    started = np.searchsorted(np.sort(piece.onset), onsets, side="right")
    ended = np.searchsorted(np.sort(piece.onset + piece.duration), onsets, side="right")
    return float((started - ended).mean())


def median_duration(piece: Piece) -> float:
    return float(np.median(piece.duration) * piece.seconds_per_step) if len(piece.pitch) else np.nan


def estimate_key(piece: Piece) -> tuple[int, str] | None:
    """``(tonic pitch class, "major" | "minor")`` by Krumhansl-Schmuckler on duration-weighted pitch classes."""
    weights = np.bincount(piece.pitch % 12, weights=piece.duration, minlength=12)
    if not weights.any():
        return None
    profiles = np.stack([np.roll(p, tonic) for p in (MAJOR_PROFILE, MINOR_PROFILE) for tonic in range(12)])
    best = int(np.argmax(np.corrcoef(weights, profiles)[0, 1:]))  # Pearson r with each of the 24 keys
    return best % 12, ("major", "minor")[best // 12]


def in_key(piece: Piece) -> float:
    return share_in_key(piece, estimate_key(piece))


def share_in_key(piece: Piece, key: tuple[int, str] | None) -> float:
    """The share of ``piece``'s notes in ``key`` (e.g. an accompaniment's in its melody's key)."""
    if key is None or not len(piece.pitch):
        return np.nan
    scale = np.roll(MAJOR_SCALE if key[1] == "major" else MINOR_SCALE, key[0])
    return float(scale[piece.pitch % 12].mean())


# -- histogram statistics ------------------------------------------------------------------------
def interval_histogram(piece: Piece) -> np.ndarray:
    intervals = [np.diff(piece.top_line(t)[1]) for t in range(len(piece.track_names))]
    steps = np.concatenate(intervals) if intervals else np.zeros(0, dtype=int)
    clipped = np.clip(steps, -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    return _normalised(np.bincount(clipped, minlength=2 * INTERVAL_CLIP + 1))


def ioi_histogram(piece: Piece) -> np.ndarray:
    return _duration_classes(np.diff(np.unique(np.round(piece.onset, 3))))


def duration_histogram(piece: Piece) -> np.ndarray:
    return _duration_classes(piece.duration)


def _duration_classes(values: np.ndarray) -> np.ndarray:
    values = values[values > 0]
    nearest = np.abs(np.log2(values)[:, None] - np.log2(DURATION_CLASSES)[None, :]).argmin(axis=1)
    return _normalised(np.bincount(nearest, minlength=len(DURATION_CLASSES)))


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.full(len(counts), np.nan)


def _duration_label(steps: int) -> str:
    return f"{steps / 4:g}q"


STATISTICS = (
    Statistic("pitch_range", "pitch range (semitones)", pitch_range),
    Statistic("pitch_class_entropy", "pitch-class entropy (bits)", pitch_class_entropy),
    Statistic("in_key", "share of notes in the estimated key", in_key),
    Statistic("note_density", "notes per bar", note_density),
    Statistic("polyphony", "polyphony (pitches sounding at once)", polyphony),
    Statistic("notes_at_onset", "notes sounding at an onset", notes_at_onset),
    Statistic("median_duration", "median note duration (seconds)", median_duration),
    Statistic("empty_bar_ratio", "share of empty bars", empty_bar_ratio),
    Statistic("pitch_class_histogram", "pitch-class histogram", pitch_class_histogram, True, PITCH_NAMES),
    Statistic(
        "interval_histogram",
        "melodic interval histogram (top line of each track)",
        interval_histogram,
        True,
        tuple(f"{i:+d}" for i in range(-INTERVAL_CLIP, INTERVAL_CLIP + 1)),
    ),
    Statistic(
        "ioi_histogram",
        "inter-onset-interval histogram",
        ioi_histogram,
        True,
        tuple(_duration_label(c) for c in DURATION_CLASSES),
    ),
    Statistic(
        "duration_histogram",
        "note duration histogram",
        duration_histogram,
        True,
        tuple(_duration_label(c) for c in DURATION_CLASSES),
    ),
)


def _voice_leading_rate(name: str) -> Callable[[Piece], float]:
    return lambda piece: voice_leading(piece.grid).rates()[name]


VOICE_LEADING = tuple(
    Statistic(name, label, _voice_leading_rate(name))
    for name, label in (
        ("parallel_fifths", "parallel fifths per sonority change"),
        ("parallel_octaves", "parallel octaves per sonority change"),
        ("voice_crossings", "share of steps with a voice crossing"),
        ("out_of_range", "share of notes outside the SATB ranges"),
    )
)


# -- comparing two sets ------------------------------------------------------------------------------
def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area of Gaussian kernel density estimates of ``a`` and ``b`` (NaNs dropped; NaN if one is empty)."""
    estimate = densities(a, b)
    if estimate is None:
        a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
        return 1.0 if np.isfinite(a).any() and np.isfinite(b).any() else np.nan
    grid, density_a, density_b = estimate
    return float(np.trapezoid(np.minimum(density_a, density_b), grid))


def densities(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, density of ``a``, density of ``b``): Gaussian KDEs on one even grid, or None if there is no spread.

    Each set's bandwidth follows Scott's rule (``std * n ** -0.2``, as scipy's
    ``gaussian_kde``); a set whose values are all equal borrows the other's
    bandwidth, and two such sets get a tenth of the gap between them. None when
    a set is empty or all values are one number.
    """
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    pooled = np.concatenate([a, b])
    if not len(a) or not len(b) or np.ptp(pooled) == 0:
        return None
    scott = [x.std() * len(x) ** -0.2 for x in (a, b)]
    widths = [w or max(scott) or np.ptp(pooled) / 10 for w in scott]
    low, high = pooled.min() - 5 * max(widths), pooled.max() + 5 * max(widths)
    n_points = int(np.clip((high - low) / min(widths) * 8, 2048, 65_536))
    grid = np.linspace(low, high, n_points)
    return grid, _kde(a, widths[0], grid), _kde(b, widths[1], grid)


def _kde(values: np.ndarray, width: float, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE on an even ``grid``: values binned to the grid, then convolved (by FFT) with the kernel."""
    n, step = len(grid), grid[1] - grid[0]
    counts = np.histogram(values, bins=n, range=(grid[0] - step / 2, grid[-1] + step / 2))[0]
    kernel = np.exp(-0.5 * (np.arange(-n + 1, n) * step / width) ** 2)
    size = 3 * n
    density = np.fft.irfft(np.fft.rfft(counts, size) * np.fft.rfft(kernel, size), size)[n - 1 : 2 * n - 1]
    return np.maximum(density, 0) / (len(values) * width * np.sqrt(2 * np.pi))


def set_distances(
    samples: list[np.ndarray], reference: list[np.ndarray], sample_keys: list[str], reference_keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(intra-reference, inter-set) Euclidean distances between histograms.

    Each pair of pieces counts once and a piece is never paired with itself, so
    a set compared with itself gives two identical lists of distances.
    """
    a, b = np.asarray(samples, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    ka, kb = np.asarray(sample_keys), np.asarray(reference_keys)
    ok_a, ok_b = np.isfinite(a).all(axis=1), np.isfinite(b).all(axis=1)
    intra_pairs = np.triu(np.ones((len(b), len(b)), dtype=bool), 1) & (kb[:, None] != kb[None, :])
    mirrored = np.isin(ka, kb)[:, None] & np.isin(kb, ka)[None, :]  # (x, y) and (y, x) both occur: keep one
    inter_pairs = (ka[:, None] != kb[None, :]) & ~(mirrored & (ka[:, None] > kb[None, :]))
    intra = _pairwise(b, b)[intra_pairs & ok_b[:, None] & ok_b[None, :]]
    inter = _pairwise(a, b)[inter_pairs & ok_a[:, None] & ok_b[None, :]]
    return intra, inter


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def piece_statistics(piece: Piece) -> dict[str, float | np.ndarray]:
    """Every statistic of one piece, with the voice-leading rates when it has an SATB grid."""
    chosen = STATISTICS + (VOICE_LEADING if piece.grid is not None else ())
    return {s.name: s.compute(piece) for s in chosen}


def compare(samples: list[Piece], reference: list[Piece]) -> dict[str, dict]:
    """For each statistic: both sets' per-piece values summarised, the overlap, and the distance ``1 - overlap``.

    Voice leading is compared when both sets have SATB grids.
    """
    sample_values = [piece_statistics(p) for p in samples]
    reference_values = [piece_statistics(p) for p in reference]
    rows = {}
    for stat in STATISTICS + VOICE_LEADING:
        a = [v[stat.name] for v in sample_values if stat.name in v]
        b = [v[stat.name] for v in reference_values if stat.name in v]
        if not a or not b:
            continue
        if stat.histogram:
            keys = [
                [p.key for p, v in zip(pieces, values) if stat.name in v]
                for pieces, values in ((samples, sample_values), (reference, reference_values))
            ]
            intra, inter = set_distances(a, b, *keys)
            oa = overlap(inter, intra)
            row = {"samples": _mean_histogram(a), "reference": _mean_histogram(b), "bins": list(stat.bins)}
        else:
            oa = overlap(np.array(a), np.array(b))
            row = {
                "samples": _summary(a),
                "reference": _summary(b),
                "values": {"samples": _floats(a), "reference": _floats(b)},
            }
        rows[stat.name] = {"label": stat.label, "histogram": stat.histogram, "overlap": oa, "distance": 1 - oa, **row}
    return rows


def _summary(values: list[float]) -> dict[str, float]:
    x = np.array(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return {"mean": np.nan, "std": np.nan, "median": np.nan, "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std()), "median": float(np.median(x)), "n": len(x)}


def _mean_histogram(rows: list[np.ndarray]) -> list[float]:
    finite = [r for r in rows if np.isfinite(r).all()]
    return [float(v) for v in np.mean(finite, axis=0)] if finite else []


def _floats(values: list[float]) -> list[float]:
    return [float(v) for v in values]
