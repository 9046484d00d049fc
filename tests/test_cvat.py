"""platelab.cvat, the former name of platelab.annotate, kept for one release as an alias."""

import importlib
import subprocess
import sys

import pytest

from conftest import assert_re_exports
from platelab import annotate


def _import_cvat():
    sys.modules.pop("platelab.cvat", None)
    with pytest.warns(DeprecationWarning, match="platelab.annotate"):
        return importlib.import_module("platelab.cvat")


def test_cvat_is_a_deprecated_alias_of_annotate():
    cvat = _import_cvat()
    assert cvat.__all__ == annotate.__all__
    for name in annotate.__all__:
        assert getattr(cvat, name) is getattr(annotate, name), name


@pytest.mark.parametrize("first", ["platelab.synth.annotator", "platelab.cvat"])
def test_cvat_and_the_simulated_annotator_import_in_either_order(first):
    # platelab.cvat re-exports platelab.synth.annotator, which builds on platelab.annotate
    code = (
        f"import {first}; import platelab.cvat as cvat; import platelab.synth.annotator as a; "
        "assert cvat.simulate_annotator is a.simulate_annotator"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cvat_re_exports_each_public_name_of_its_modules():
    cvat = _import_cvat()
    homes = ["annotate.base", "annotate.tasks", "annotate.voc", "annotate.exports"]
    homes += ["annotate.client", "synth.annotator"]
    assert_re_exports(cvat, homes)
