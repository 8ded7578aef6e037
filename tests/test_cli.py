"""The command line's error contract: one line on stderr, the right exit code, traceback only with --debug."""

from __future__ import annotations

import pytest

from vidrestore import cli


def _explode(args):
    raise ZeroDivisionError("division by zero\nsecond line")


@pytest.fixture
def exploding_probe(monkeypatch):
    """Make `vidrestore probe` fail with an error vidrestore did not expect."""
    original = cli.build_parser

    def build_parser():
        parser = original()
        sub = next(a for a in parser._actions if a.dest == "command")
        sub.choices["probe"].set_defaults(handler=_explode)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)


def test_unexpected_error_is_one_line_exit_1(exploding_probe, capsys):
    assert cli.main(["probe", "whatever.mp4"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "ZeroDivisionError: division by zero" in err and "--debug" in err
    assert "Traceback" not in err


def test_unexpected_error_with_debug_raises(exploding_probe):
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "probe", "whatever.mp4"])


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().err.lower()
