"""Command-line argument types (platelab.argtypes)."""

import argparse

import pytest

from platelab.argtypes import key_value, positive


def test_positive_whole_numbers():
    parse = positive(int)
    assert parse("3") == 3 and isinstance(parse("3"), int)
    for text, message in [("0", "must be positive"), ("-2", "must be positive")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
    for text in ("1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
            parse(text)


def test_positive_numbers():
    parse = positive(float)
    assert parse("0.25") == 0.25 and parse("2") == 2.0
    with pytest.raises(argparse.ArgumentTypeError, match="must be positive: '0'"):
        parse("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number: 'fast'"):
        parse("fast")


def test_positive_in_a_parser_is_a_one_line_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--jobs", type=positive(int), default=1)
    assert parser.parse_args(["--jobs", "4"]).jobs == 4
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--jobs", "0"])
    assert stopped.value.code == 2
    assert "argument --jobs: must be positive: '0'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input_size=320", ("input_size", 320)),
        ("learning_rate=0.002", ("learning_rate", 0.002)),
        ("init=models/starter", ("init", "models/starter")),
        ("crop_training=false", ("crop_training", False)),
        ("levels=[8,16]", ("levels", [8, 16])),
    ],
)
def test_key_value_reads_json_values_and_keeps_other_text(text, expected):
    assert key_value(text) == expected


@pytest.mark.parametrize("text", ["input_size", "=3", " =3"])
def test_key_value_refuses_text_without_a_key(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not KEY=VALUE"):
        key_value(text)
