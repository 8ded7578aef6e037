"""The command line: its error contract (one line on stderr, the right exit code, traceback only with --debug),
SIGTERM as Ctrl-C, mistyped commands, run flags on every subcommand, and a parser that imports no torch."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import pytest

from vidrestore import cli
from vidrestore.atomic import atomic_path
from vidrestore.errors import Terminated


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


HEAVY = ("torch", "torchvision", "cv2", "av")


def test_help_and_argument_errors_import_nothing_heavy():
    """--help, --version, a subcommand's --help and argument errors answer without importing torch."""
    code = f"""
import contextlib, io, runpy, sys
for argv in (["--help"], ["--version"], ["restore", "--help"], ["live", "--help"], ["serve", "--help"],
             ["qc", "--help"], ["track"], ["trak", "x.mp4"], ["restore", "a.mp4"]):
    sys.argv = ["vidrestore", *argv]
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), \\
            contextlib.redirect_stderr(io.StringIO()):
        runpy.run_module("vidrestore.cli", run_name="__main__")
print(",".join(name for name in {HEAVY!r} if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"imported while parsing: {result.stdout.strip()}"


def test_a_mistyped_command_is_named_with_the_nearest_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["trak", "x.mp4", "--json", "x.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "'trak' is neither a command nor an existing file" in err and "did you mean 'track'?" in err


def test_an_existing_file_or_a_url_first_still_means_restore(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trak").write_bytes(b"x")  # a file may be named like a command's typo
    commands = cli._command_names(cli.build_parser())
    assert cli._with_default_command(["-q", "trak", "out.mp4"], commands) == ["-q", "restore", "trak", "out.mp4"]
    assert cli._with_default_command(["rtsp://cam/1", "o.mp4"], commands)[0] == "restore"
    assert cli._with_default_command(["track", "a.mp4"], commands)[0] == "track"


def test_a_missing_input_path_is_reported_as_a_missing_input(tmp_path, monkeypatch, capsys):
    """A first word that looks like a file (an extension or a folder) is an input that is not there."""
    monkeypatch.chdir(tmp_path)
    for missing in ("missing.mp4", "clips/take1"):
        assert cli.main([missing, "out.mp4"]) == cli.EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert missing in err and "not a command" not in err and "neither" not in err
        assert not list(tmp_path.iterdir())


def every_subparser(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) for every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from every_subparser(sub, (*path, name))


def test_run_flags_work_before_or_after_every_subcommand():
    parser = cli.build_parser()
    for words, sub in every_subparser(parser):
        missing = {"-q", "--quiet", "--debug", "--offline"} - set(sub._option_string_actions)
        assert not missing, f"vidrestore {' '.join(words)} lacks {sorted(missing)}"
    track = ["track", "in.mp4", "--json", "t.json"]
    for argv in (["-q", *track], [*track, "-q"], ["--debug", *track, "--offline"]):
        args = parser.parse_args(argv)
        assert args.quiet or args.debug
    plain = parser.parse_args(track)
    assert (plain.quiet, plain.debug, plain.offline) == (False, False, False)
    after = parser.parse_args([*track, "-q", "--debug", "--offline"])
    assert (after.quiet, after.debug, after.offline) == (True, True, True)


def test_sigterm_handling_is_installed_while_a_command_runs_only(monkeypatch):
    """A command runs with SIGTERM raising Terminated (it cleans up as Ctrl-C does); afterwards, for a
    program calling main() in-process, the previous handler is back."""
    seen = []
    monkeypatch.setattr(cli, "_cmd_probe", lambda args: seen.append(signal.getsignal(signal.SIGTERM)) or 0)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["probe", "x.mp4"]) == 0
    assert seen and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert signal.getsignal(signal.SIGTERM) == before


def test_terminated_exits_143_after_the_clean_up_of_ctrl_c(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out.json"

    def stopped_while_writing(args):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise Terminated()

    monkeypatch.setattr(cli, "_cmd_probe", stopped_while_writing)
    assert cli.main(["probe", "x.mp4"]) == cli.EXIT_TERMINATED == 143
    assert "stopped (SIGTERM)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
