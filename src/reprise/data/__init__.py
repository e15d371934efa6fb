"""Corpora, tokenizers and prepared datasets: from music files to arrays of ids."""

from reprise.data import chorale_grid  # noqa: F401  (registers the tokenizer)
