"""Corpora, tokenizers and prepared datasets: from music files to arrays of ids."""

from reprise.data import chorale_grid, fill, melody_grid, miditok_adapter, performance  # noqa: F401  (register tokenizers)
