"""One error type (platelab.exceptions): every platelab error is a PlatelabError.

The ``platelab`` command turns each into one line, ``platelab: error: ...``, with exit status 2.
"""

import importlib
import inspect
import pkgutil

import pytest

import platelab
from platelab import cli
from platelab.exceptions import PlatelabError

ERRORS = {
    "analyze": ("RunError", ValueError),
    "annotations": ("AnnotationError", ValueError),
    "archives": ("ArchiveError", ValueError),
    "cli": ("CommandError", Exception),
    "collect.probe": ("MediaError", ValueError),
    "config": ("ConfigError", ValueError),
    "cvat": ("CvatError", ValueError),
    "deploy.export": ("ExportError", ValueError),
    "detector": ("ModelError", ValueError),
    "ffmpeg": ("FFmpegError", RuntimeError),
    "review": ("ReviewError", ValueError),
    "synth.seeds": ("ReservedSeedError", ValueError),
    "train": ("TrainingError", RuntimeError),
}


@pytest.mark.parametrize("module", sorted(ERRORS))
def test_each_error_is_a_platelab_error_and_keeps_its_builtin_base(module):
    name, builtin = ERRORS[module]
    error = getattr(importlib.import_module(f"platelab.{module}"), name)
    assert issubclass(error, PlatelabError) and issubclass(error, builtin)
    arguments = ("video.mp4", "unreadable") if name == "MediaError" else ("x",)
    with pytest.raises(builtin):  # callers catching the built-in error still do
        raise error(*arguments)


def test_a_run_of_another_configuration_is_a_training_error():
    from platelab import train

    assert issubclass(train.RunMismatchError, train.TrainingError)
    assert issubclass(train.RunMismatchError, PlatelabError)


def test_no_public_platelab_exception_is_left_outside_the_base():
    outside = []
    for module in pkgutil.walk_packages(platelab.__path__, "platelab."):
        if module.name.endswith("__main__"):
            continue
        for name, value in vars(importlib.import_module(module.name)).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
                and not name.startswith("_")  # private control flow, never shown
                and not issubclass(value, PlatelabError)
            ):
                outside.append(f"{module.name}.{name}")
    assert not outside, f"not PlatelabError subclasses: {outside}"


def _failing_command(monkeypatch, error):
    def handler(args):
        raise error

    monkeypatch.setattr(cli, "_stages", handler)


@pytest.mark.parametrize(
    "error",
    [
        cli.CommandError("bad   input\n  here"),
        importlib.import_module("platelab.ffmpeg").FFmpegError("ffmpeg failed: x"),
        importlib.import_module("platelab.train").TrainingError("d: no such dataset folder"),
    ],
)
def test_cli_prints_any_platelab_error_as_its_message_in_one_line(monkeypatch, capsys, error):
    _failing_command(monkeypatch, error)
    assert cli.main(["stages"]) == 2
    expected = "platelab: error: " + " ".join(str(error).split())
    assert capsys.readouterr().err == expected + "\n"


def test_cli_names_an_unexpected_error_and_debug_shows_the_traceback(monkeypatch, capsys):
    _failing_command(monkeypatch, KeyError("frames"))
    assert cli.main(["stages"]) == 2
    assert capsys.readouterr().err == (
        "platelab: error: KeyError: 'frames' (rerun with --debug for the traceback)\n"
    )
    _failing_command(monkeypatch, cli.CommandError("bad"))
    with pytest.raises(cli.CommandError):
        cli.main(["--debug", "stages"])
