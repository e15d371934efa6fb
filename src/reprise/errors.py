"""The one exception type for problems caused by the user's input."""


class RepriseError(Exception):
    """A problem caused by the user's input (a missing file, a bad option).

    The command line prints these as one line and exits non-zero, instead of a
    traceback, because they are not bugs in reprise.
    """
