"""`vidrestore probe` and the `bench video` parser."""

from __future__ import annotations

import json

from videogen import make_video
from vidrestore.cli import build_parser, main


def test_probe_prints_json(tmp_path, capsys):
    src = tmp_path / "a.mp4"
    make_video(src, frames=6, rotation=90, audio_languages=("fra",))
    assert main(["probe", str(src)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["rotation"]) == (96, 64, 90)
    assert info["time_base"] == "1/15360"
    assert info["stream_counts"] == {"video": 1, "audio": 1}
    assert [(s["type"], s["language"]) for s in info["streams"]] == [("video", "und"), ("audio", "fra")]


def test_probe_bad_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    assert main(["probe", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.mp4" in err


def test_bench_video_parser():
    args = build_parser().parse_args(["bench", "video", "--sizes", "720p", "--seconds", "2"])
    assert args.sizes == "720p" and args.seconds == 2.0 and callable(args.handler)
    assert build_parser().parse_args(["bench", "model"]).bench_command == "model"
