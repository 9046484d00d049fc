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


def key_value(text):
    """An ``argparse`` ``type`` for ``KEY=VALUE``: the value read as JSON where it is JSON.

    Example: ``--train input_size=320`` gives ``("input_size", 320)``;
    ``--train init=models/starter`` gives ``("init", "models/starter")``.

    Returns:
        ``(key, value)``; ``argparse.ArgumentTypeError`` for text without ``=`` or an
        empty key
    """
    import json

    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"not KEY=VALUE: {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value
