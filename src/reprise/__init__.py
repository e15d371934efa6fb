"""reprise: train, sample, evaluate and look inside Music Transformers.

The package follows the pipeline: ``data`` (corpora and tokenizers) -> ``models``
-> ``training`` -> ``generation`` / ``evaluation`` -> ``visualization``, with
``cli`` tying the stages together as the ``reprise`` command.
"""

__version__ = "0.1.0"


class RepriseError(Exception):
    """A problem caused by the user's input (a missing file, a bad option).

    The command line prints these as one line and exits non-zero, instead of a
    traceback, because they are not bugs in reprise.
    """
