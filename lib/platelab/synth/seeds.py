"""Generator seeds reserved for evaluation: training and pretraining data never use them.

Held-out scores mean something only if no training frame came from the same scenes. A
batch seed fixes every scene of a synthetic set (each video's random generator is
seeded with ``(seed, index)``), so the rule is kept on batch seeds:

* ``4242``: the held-out synthetic set of ``07_analyze`` and the benchmarks;
* ``987654``: ``08_deploy``'s novel video;
* every seed from ``1_000_000`` up: held-out sets kept outside this repository.

:func:`check_seed` refuses them for ``training`` data (stage 00, pretraining corpora)
and allows any seed for ``evaluation``.
"""

from platelab.exceptions import PlatelabError

EVALUATION_SEEDS = (4242, 987654)
"""Reserved batch seeds below :data:`EVALUATION_SEED_FLOOR`."""

EVALUATION_SEED_FLOOR = 1_000_000
"""Every batch seed from this one up is reserved for evaluation."""

PURPOSES = ("training", "evaluation")


class ReservedSeedError(PlatelabError, ValueError):
    """A seed reserved for evaluation was asked for training data (one-line message)."""


def is_evaluation_seed(seed):
    """Whether a batch seed is reserved for evaluation (see the module docstring)."""
    return int(seed) in EVALUATION_SEEDS or int(seed) >= EVALUATION_SEED_FLOOR


def check_seed(seed, purpose="training"):
    """Refuses a reserved evaluation seed for training data.

    Args:
        seed: a generator batch seed
        purpose: ``training`` (stage 00 videos, pretraining corpora) or ``evaluation``
            (held-out sets, the novel video)

    Raises:
        ReservedSeedError: ``seed`` is reserved for evaluation and ``purpose`` is
            ``training``
        ValueError: an unknown ``purpose``
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    if purpose == "training" and is_evaluation_seed(seed):
        raise ReservedSeedError(
            f"seed {int(seed)} is reserved for evaluation (held-out seeds "
            f"{', '.join(map(str, EVALUATION_SEEDS))} and every seed from "
            f"{EVALUATION_SEED_FLOOR:,}): choose another seed for training data"
        )
