"""The base of every platelab exception: ``except PlatelabError`` catches them all.

Each module keeps its own error class (``ConfigError``, ``MediaError``,
``TrainingError``, ...), named after what failed, and each subclasses
:class:`PlatelabError` as well as the built-in error it always was
(``ValueError`` or ``RuntimeError``), so ``except ValueError`` callers keep
working. Every platelab error's message is one line naming the file, folder
or parameter at fault: ``platelab`` commands print it as
``platelab: error: <message>`` and exit with status 2 (see :func:`platelab.cli.main`).

(Not to be confused with :mod:`platelab.error_analysis`, the analysis of a model's
mistakes on held-out data.)
"""


class PlatelabError(Exception):
    """A problem platelab reports as one line naming its cause (the base of its errors)."""
