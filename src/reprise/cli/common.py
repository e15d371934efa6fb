"""Helpers that several commands share: option parsing, and refusing a model a command cannot use.

Every command module imports from here, and this module from none of them, so the
command modules never import each other's private helpers.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from reprise.errors import RepriseError


def length_in_tokens(length: str, tokenizer, option: str) -> int:
    """``"512"`` -> 512 tokens; ``"8bars"`` -> 8 bars' worth for tokenizers with fixed bars."""
    match = re.fullmatch(r"\s*(\d+)\s*(bars?)?\s*", length.lower())
    if not match or int(match[1]) < 1:
        raise RepriseError(f"{option} {length!r}: expected a number of tokens (512) or bars (8bars)")
    if not match[2]:
        return int(match[1])
    per_bar = tokenizer.tokens_per_bar()
    if per_bar is None:
        raise RepriseError(f"{option} {length}: this tokenizer has no fixed bar length; give tokens")
    return int(match[1]) * per_bar


def parse_split(text: str) -> tuple[float, float, float]:
    """``--split``'s ``"0.8,0.1,0.1"`` as three fractions; a usage error unless they sum to 1."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise click.BadParameter(f"{text!r}: three fractions summing to 1, like 0.8,0.1,0.1", param_hint="--split")
    return parts


def refuse_arranger(model, checkpoint: str | Path) -> None:
    """Commands that continue music from the left cannot use an encoder-decoder: name the one that can."""
    from reprise.models.encoder_decoder import EncoderDecoder

    if isinstance(model, EncoderDecoder):
        raise RepriseError(
            f"{checkpoint}: an encoder-decoder trained to {model.config.task}; use `reprise {model.config.task}`"
        )
