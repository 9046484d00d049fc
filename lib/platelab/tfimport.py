"""TensorFlow and Keras, imported lazily and quietly: the one way platelab imports them.

Importing TensorFlow takes seconds, so no module imports it at its top: a
function that needs it calls ``tf = import_tensorflow()`` (or
``keras = import_keras()``) where it starts.
"""

import contextlib
import os
import sys


def import_tensorflow():
    """Imports TensorFlow and returns the module.

    The import's C++ start-up lines (oneDNN notices, absl's "log messages
    before InitializeLog" warning) would land in every notebook's report:
    the process's standard error is muted for the import only, and
    ``TF_CPP_MIN_LOG_LEVEL`` is 2 unless already set. Python errors still
    raise as usual. Once imported, the module is returned at once.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _muted_native_stderr():
        import tensorflow as tf

    return tf


def import_keras():
    """Imports Keras (after TensorFlow, see :func:`import_tensorflow`) and returns the module.

    Raises:
        RuntimeError: Keras runs on another backend than TensorFlow
            (``KERAS_BACKEND``): platelab's model needs TensorFlow's
    """
    import_tensorflow()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"platelab's model needs Keras's TensorFlow backend, not {keras.backend.backend()}"
        )
    return keras


@contextlib.contextmanager
def _muted_native_stderr():
    """Points file descriptor 2 at /dev/null for the duration (no-op where that fails)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
