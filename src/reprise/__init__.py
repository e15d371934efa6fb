"""reprise: train, sample, evaluate and look inside Music Transformers.

The package follows the pipeline, bottom to top: ``errors``/``constants``/``config``/
``device`` -> ``data`` -> ``models`` -> ``evaluation`` -> ``training`` | ``generation``
-> ``visualization`` | ``audio`` -> ``api`` -> ``benchmark`` -> ``cli``
(docs/architecture.md). The public API (:mod:`reprise.api`) is imported on first
use, so ``import reprise.data.x`` stays light::

    import reprise
    model, tokenizer = reprise.load("runs/bach")
    ids = reprise.generate(model, tokenizer, n_new=256)
"""

from typing import Any

from reprise.errors import RepriseError

__version__ = "0.1.0"
__all__ = ["RepriseError", "generate", "load", "prepare", "score", "write_samples"]
_API = {"generate", "load", "prepare", "score", "write_samples"}


def __getattr__(name: str) -> Any:
    """PEP 562: the public API's functions, imported from :mod:`reprise.api` when first asked for."""
    if name in _API:
        from reprise import api

        return getattr(api, name)
    raise AttributeError(f"module 'reprise' has no attribute {name!r}")
