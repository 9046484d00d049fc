"""``argparse`` argument types shared by the ``platelab`` commands.

Paths on the command line use :func:`platelab.paths.from_cwd`.
"""

import argparse


def positive(kind):
    """An ``argparse`` ``type`` that accepts numbers above 0 only.

    Example: ``parser.add_argument("--fps", type=positive(float))``.

    Args:
        kind: ``int`` (whole numbers) or ``float``

    Returns:
        a function from the argument's text to a ``kind`` greater than 0; it
        raises ``argparse.ArgumentTypeError`` (argparse's one-line usage error,
        exit status 2) for text that is not such a number, or a number <= 0
    """
    what = "a whole number" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse
