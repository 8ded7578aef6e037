"""Every encoder `vidrestore restore --help` lists, through the real command line on a short real clip.

`--model none --detector none` keeps the runs to pure I/O; the output is decoded to check its codec.
A preset's CRF only reaches encoders that have one; an explicit --crf for one without is the one error.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import av
import pytest

from pipeline_support import cut_clip, files_in
from vidrestore import cli
from vidrestore.video.codecs import PRESETS, takes_quality

CLIP = "facerec_short_hamilton_clip.mp4"  # 640x360, AAC audio, no B-frames (cut_clip keeps it exact)
FRAMES = 6
IO_ONLY = ["--model", "none", "--detector", "none", "--no-progress"]


def encoders_in_help() -> list[str]:
    """The encoder names the restore command's --codec help text mentions (those vidrestore has presets for)."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    codec = next(a for a in sub.choices["restore"]._actions if "--codec" in a.option_strings)
    return [word for word in re.findall(r"[\w-]+", codec.help) if word in PRESETS]


LISTED = encoders_in_help()
WITHOUT_QUALITY = [name for name in LISTED if not takes_quality(name)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    """The first frames of a real clip with its audio, remuxed."""
    path = tmp_path_factory.mktemp("codecs") / "clip.mp4"
    cut_clip(media_dir / "videos" / CLIP, path, FRAMES)
    return path


def restore(clip: Path, out: Path, *options: str) -> int:
    """`vidrestore -q CLIP OUT --model none --detector none OPTIONS...`; its exit status."""
    return cli.main(["-q", str(clip), str(out), *IO_ONLY, *options])


def decoded(path: Path) -> tuple[str, int]:
    """(codec family, frame count) of a file's video stream, by decoding all of it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.codec.canonical_name, sum(1 for _ in container.decode(stream))


def crf_in_stream(path: Path) -> str | None:
    """The crf that x264/x265 wrote into the stream's encoder-settings text, or None."""
    match = re.search(rb"crf=([0-9.]+)", path.read_bytes())
    return match.group(1).decode() if match else None


def test_help_lists_the_encoders_of_the_readme():
    assert set(LISTED) >= {"libx264", "libx265", "ffv1", "prores_ks", "libvpx-vp9"}
    assert set(WITHOUT_QUALITY) == {"ffv1", "prores_ks"}


@pytest.mark.parametrize("encoder", LISTED)
def test_every_listed_encoder_writes_a_decodable_file(encoder: str, clip: Path, tmp_path: Path):
    out = tmp_path / "out.mkv"
    assert restore(clip, out, "--codec", encoder) == 0
    assert decoded(out) == (av.codec.Codec(encoder, "w").canonical_name, FRAMES)


@pytest.mark.parametrize("encoder", WITHOUT_QUALITY)
def test_a_preset_crf_does_not_reach_an_encoder_without_one(encoder: str, clip: Path, tmp_path: Path):
    """fast.yaml says crf 20 for its libx264; asking for another encoder leaves that number behind."""
    out = tmp_path / "out.mkv"
    assert restore(clip, out, "--config", "fast", "--codec", encoder) == 0
    assert decoded(out)[1] == FRAMES


@pytest.mark.parametrize("encoder", WITHOUT_QUALITY)
def test_explicit_crf_for_an_encoder_without_one_is_the_one_error(encoder: str, clip: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]):
    assert restore(clip, tmp_path / "out.mkv", "--codec", encoder, "--crf", "18") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and encoder in err and "--crf" in err and "Traceback" not in err
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(("options", "crf"), [((), "18.0"), (("--config", "fast"), "20.0"),
                                              (("--config", "fast", "--codec", "libx265"), "20.0"),
                                              (("--codec", "libx265", "--crf", "26"), "26.0")])
def test_crf_reaches_encoders_that_take_one(options: tuple[str, ...], crf: str, clip: Path, tmp_path: Path):
    """The preset's CRF (default 18, fast 20) or the explicit one is what x264/x265 encoded with."""
    out = tmp_path / "out.mkv"
    assert restore(clip, out, *options) == 0
    assert crf_in_stream(out) == crf
