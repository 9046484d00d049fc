"""TensorFlow and Keras imports (platelab.tfimport)."""

import os
import sys

from platelab import model, tfimport


def test_import_tensorflow_and_keras():
    tf = tfimport.import_tensorflow()
    assert tf is sys.modules["tensorflow"] and tfimport.import_tensorflow() is tf
    keras = tfimport.import_keras()
    assert keras.backend.backend() == "tensorflow"
    # one home: the model module has no private copies left
    assert not hasattr(model, "_import_tensorflow") and not hasattr(model, "_import_keras")


def test_native_stderr_is_muted_for_the_import_only(capfd):
    with tfimport._muted_native_stderr():
        os.write(2, b"native noise\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
