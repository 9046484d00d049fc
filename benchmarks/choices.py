"""Command-line choices the benchmarks share: named rows (or settings) and seed lists."""

import sys


def chosen(text, known, what="row"):
    """The names of a comma-separated list, each one of ``known`` (``all``: every one).

    Args:
        text: e.g. ``"plain,margin"``
        known: the names there are (a dict or a sequence, in their order)
        what: what a name is, for the message (``row``, ``setting``)

    Returns:
        the names asked for, in the order given

    Raises:
        SystemExit: naming the unknown names and the known ones
    """
    if text.strip() == "all":
        return list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"unknown {what}(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return names


def seed_list(text):
    """The integers of a comma-separated list of seeds (``"5151,5152"``)."""
    return [int(value) for value in text.split(",") if value.strip()]


def tuning_seeds(text):
    """The seeds of a comma-separated list, none of them one evaluation uses.

    Raises:
        SystemExit: naming the evaluation seeds given (4242, 987654, from 1,000,000)
    """
    from platelab.synth import is_evaluation_seed

    seeds = seed_list(text)
    reserved = [seed for seed in seeds if is_evaluation_seed(seed)]
    if reserved:
        sys.exit(f"seed(s) {', '.join(map(str, reserved))} are evaluation seeds: choose others")
    return seeds
