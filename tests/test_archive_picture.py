"""The picture as archives hold it, through the real command line on clips the ffmpeg binary made:
interlaced files keep their structure and get field-correct faces, monochrome stays monochrome, and
mezzanine codecs come back as they went in. Tiny random-weight restorer, the real RetinaFace."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from picture_media import (
    REEL,
    TIMECODE,
    dnxhd_clip,
    face_clip,
    field_flags,
    interlaced_clip,
    mezzanine_clip,
    planes_of,
    prores_frame,
    tagged_fields_clip,
    telecined_clip,
    video_facts,
)
from pipeline_support import make_tiny_restorer
from vidrestore import cli
from vidrestore.archive.job import ArchiveSettings, archive_video
from vidrestore.pipeline import stages
from vidrestore.pipeline.stages import JobCounters, OutputFrame, weave_stage
from vidrestore.errors import MediaError
from vidrestore.pipeline.job import restore_video
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import chroma_is_neutral, monochrome_reason, picture_plan, settled_options
from vidrestore.video.codecs import PRORES_PROFILES, EncoderSettings, mezzanine_options
from vidrestore.video.fields import field_frames
from vidrestore.video.probe import probe, sampled_pictures
from vidrestore.video.types import Frame


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("picture")


@pytest.fixture(scope="module")
def tiny_model(media: Path) -> Path:
    return make_tiny_restorer(media / "tiny.pth")


@pytest.fixture(scope="module")
def tff(media: Path) -> Path:
    return interlaced_clip(media / "tff.mp4", "tff")


@pytest.fixture(scope="module")
def bff(media: Path) -> Path:
    return interlaced_clip(media / "bff.mp4", "bff")


def run(src: Path, out: Path, model: Path, detector: Path, *options: str) -> None:
    """`vidrestore SRC OUT` with the tiny model and the real detector, on the CPU; it must succeed."""
    argv = ["-q", str(src), str(out), "--model", str(model), "--detector", str(detector), "--device", "cpu",
            "--det-size", "320", "--offline", "--no-progress", *options]
    assert cli.main(argv) == 0


def changed_box(source: list[list[np.ndarray]], output: list[list[np.ndarray]]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) around every luma sample any frame changed (y0 even, so fields line up)."""
    changed = np.any([s[0] != o[0] for s, o in zip(source, output)], axis=0)
    ys, xs = np.nonzero(changed)
    assert len(ys), "some face was restored"
    return int(ys.min()) & ~1, int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def roughness(picture: np.ndarray) -> float:
    """Mean |2 r(i) - r(i-1) - r(i+1)| over lines: combing (lines alternating between two pictures) makes it large."""
    rows = picture.astype(np.float64)
    return float(np.abs(2 * rows[1:-1] - rows[:-2] - rows[2:]).mean())


def inner(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """The middle half of a box (inside the face, away from the feathered edge of the paste)."""
    y0, y1, x0, x1 = box
    dy, dx = (y1 - y0) // 4 & ~1, (x1 - x0) // 4
    return slice(y0 + dy, y1 - dy), slice(x0 + dx, x1 - dx)


# --- interlaced sources --------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_interlaced_file_keeps_frames_timestamps_field_order_and_interlaced_coding(
        order: str, tff: Path, bff: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path):
    src = tff if order == "tff" else bff
    out = tmp_path / "out.mp4"
    run(src, out, tiny_model, detector_weights)
    before, after = video_facts(src), video_facts(out)
    assert after["pts"] == before["pts"] and after["time_base"] == before["time_base"]
    assert after["codec"] == "h264" and after["field_order"] == before["field_order"]
    flag = "T" if order == "tff" else "B"
    assert field_flags(src) == [flag] * len(before["pts"])
    assert field_flags(out) == [flag] * len(before["pts"]), "every frame coded interlaced, in the source's order"


def test_fields_are_restored_apart_no_combing_and_lines_outside_faces_exact(
        tff: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path):
    """Blend 0 gives the source face back through the warps, so what each field got is measurable: its
    own picture (no lines of the other field in it), against a run that sees each frame as one picture."""
    fields_out, frames_out = tmp_path / "fields.mkv", tmp_path / "frames.mkv"
    run(tff, fields_out, tiny_model, detector_weights, "--codec", "ffv1", "--blend", "0")
    run(tff, frames_out, tiny_model, detector_weights, "--codec", "ffv1", "--blend", "0", "--field-order", "progressive")
    source, woven, flat = planes_of(tff), planes_of(fields_out), planes_of(frames_out)
    box = changed_box(source, woven)
    rows, cols = inner(box)

    def field_error(output: list[list[np.ndarray]]) -> float:
        """Mean |output field - source field| of the luma inside the face, over both fields of every frame."""
        return float(np.mean([np.abs(o[0][rows][p::2, cols].astype(np.float64) - s[0][rows][p::2, cols]).mean()
                              for s, o in zip(source, output) for p in (0, 1)]))

    def field_roughness(planes: list[list[np.ndarray]]) -> float:
        return float(np.mean([roughness(f[0][rows][p::2, cols]) for f in planes for p in (0, 1)]))

    def frame_roughness(planes: list[list[np.ndarray]]) -> float:
        return float(np.mean([roughness(f[0][rows, cols]) for f in planes]))

    assert field_roughness(woven) <= field_roughness(source), "no combing inside a restored field"
    assert field_error(woven) < 0.5 * field_error(flat), "each field restored from its own lines, not both"
    assert frame_roughness(woven) > 0.5 * frame_roughness(source), "the motion between the fields is kept"
    assert frame_roughness(flat) < 0.5 * frame_roughness(source), "one picture per frame loses it"
    assert_exact_outside(source, woven, box)


def assert_exact_outside(source: list[list[np.ndarray]], output: list[list[np.ndarray]],
                         box: tuple[int, int, int, int]) -> None:
    """Every sample of every plane outside the box (in each plane's own resolution) is the source's."""
    y0, y1, x0, x1 = box
    for s, o in zip(source, output):
        for sp, op in zip(s, o):
            sx, sy = s[0].shape[1] // sp.shape[1], s[0].shape[0] // sp.shape[0]
            outside = np.ones(sp.shape, dtype=bool)
            outside[y0 // sy:-(-y1 // sy), x0 // sx:-(-x1 // sx)] = False
            assert np.array_equal(sp[outside], op[outside]), "every sample outside the faces is bit-exact"


@pytest.mark.parametrize(("order", "pix_fmt"), [("tff", "yuv420p"), ("bff", "yuv420p"), ("bff", "yuv411p")])
def test_interlaced_ffv1_out_keeps_the_field_order_and_the_lines_outside_faces(
        order: str, pix_fmt: str, media: Path, tff: Path, bff: Path, tiny_model: Path, detector_weights: Path,
        tmp_path: Path):
    """FFV1 output tagged with the source's field order, every sample outside the faces bit-exact, in
    both orders and in NTSC DV's 4:1:1 (a chroma sample per four pixels of a line)."""
    src = {"yuv420p": tff if order == "tff" else bff}.get(pix_fmt) or interlaced_clip(
        media / f"{order}_{pix_fmt}.mkv", order, frames=6, pix_fmt=pix_fmt)
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights, "--codec", "ffv1")
    facts = video_facts(out)
    assert (facts["codec"], facts["pix_fmt"]) == ("ffv1", pix_fmt)
    assert facts["field_order"] == (2 if order == "tff" else 3)  # AV_FIELD_TT, AV_FIELD_BB
    assert field_flags(out) == [order[0].upper()] * len(facts["pts"])
    source, restored = planes_of(src), planes_of(out)
    assert_exact_outside(source, restored, changed_box(source, restored))


def test_deinterlace_doubles_the_frames_at_field_times(tff: Path, tiny_model: Path, detector_weights: Path,
                                                      tmp_path: Path):
    out = tmp_path / "progressive.mkv"
    run(tff, out, tiny_model, detector_weights, "--codec", "ffv1", "--deinterlace")
    before, after = video_facts(tff), video_facts(out)
    frame = Fraction(before["pts"][1] - before["pts"][0]) * before["time_base"]
    fields = [Fraction(p) * before["time_base"] + k * frame / 2 for p in before["pts"] for k in (0, 1)]
    step = max(before["time_base"], after["time_base"])
    times = [Fraction(p) * after["time_base"] for p in after["pts"]]
    assert len(times) == 2 * len(before["pts"])
    assert all(abs(t - f) < step for t, f in zip(times, fields)), "one frame per field, at the field's time"
    assert set(field_flags(out)) == {"P"}


def test_telecined_film_keeps_its_frames_timestamps_and_field_order(media: Path, tiny_model: Path,
                                                                   detector_weights: Path, tmp_path: Path):
    src = telecined_clip(media / "telecined.mkv")
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights)
    before, after = video_facts(src), video_facts(out)
    assert after["pts"] == before["pts"] and len(after["pts"]) == 15
    assert field_flags(out) == field_flags(src) == ["T"] * 15


@pytest.mark.parametrize(("order", "tag", "flag"), [("tff", 4, "T"), ("bff", 5, "B")])
def test_field_orders_tb_and_bt_are_read_as_the_ffmpeg_binary_writes_them(order: str, tag: int, flag: str,
                                                                          tmp_path: Path):
    """The ffmpeg binary tags top-field-first frames TB and bottom-first BT; the decoder's own flags of
    each frame say which field comes first, and the probe must agree with them."""
    clip = tagged_fields_clip(tmp_path / f"{order}.mkv", order)
    assert video_facts(clip)["field_order"] == tag
    assert field_flags(clip) == [flag, flag]
    assert probe(clip).field_order == order


def test_field_order_flag_overrides_a_wrong_tag(tff: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path):
    out = tmp_path / "out.mp4"
    run(tff, out, tiny_model, detector_weights, "--field-order", "bff")
    assert set(field_flags(out)) == {"B"}
    assert video_facts(out)["field_order"] == 3  # AV_FIELD_BB


def test_track_on_an_interlaced_source_gives_the_landmarks_the_job_aligns_each_field_with(
        tff: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    aligned: dict[tuple[int, int], list] = {}
    real = stages.landmarks_of

    def recording(items):
        face_frame, landmarks = real(items)
        for k, item in enumerate(items):
            aligned[item.frame.index, item.frame.field_of.number] = np.round(landmarks[face_frame == k], 2).tolist()
        return face_frame, landmarks

    monkeypatch.setattr(stages, "landmarks_of", recording)
    options = RestoreOptions(model=str(tiny_model), detector=str(detector_weights), device="cpu", det_size=320,
                             offline=True, codec="ffv1")
    report = restore_video(tff, tmp_path / "out.mkv", options, progress=False)
    tracks, drawn = tmp_path / "tracks.json", tmp_path / "drawn.mkv"
    assert cli.main(["-q", "track", str(tff), "--json", str(tracks), "--draw", str(drawn), "--detector",
                     str(detector_weights), "--device", "cpu", "--det-size", "320"]) == 0
    document = json.loads(tracks.read_text())
    frames = len(video_facts(tff)["pts"])
    assert document["video"]["frames"] == 2 * frames and document["video"]["field_order"] == "tff"
    assert [(r["index"], r["field"]) for r in document["frames"]] == sorted(aligned) == \
        [(k, n) for k in range(frames) for n in (0, 1)]
    assert sum(bool(r["faces"]) for r in document["frames"]) >= 2 * frames - 2, "the face is found in the fields"
    for record in document["frames"]:
        assert [face["landmarks"] for face in record["faces"]] == aligned[record["index"], record["field"]]
    assert len(video_facts(drawn)["pts"]) == 2 * frames, "the drawn video shows every field"
    per_frame = [max(len(r["faces"]) for r in document["frames"] if r["index"] == k) for k in range(frames)]
    assert (report.frames, report.faces, report.frames_with_faces) == \
        (frames, sum(per_frame), sum(n > 0 for n in per_frame)), "a frame counts its faces once, not per field"


def test_a_field_without_its_pair_is_an_error(tff: Path):
    with av.open(str(tff)) as container:
        picture = next(container.decode(video=0))
        info = probe(tff)
        frame = Frame.from_picture(picture, 0, time_base=info.time_base)
        first, second = field_frames([frame], info, "tff")
    assert second.field_of.number == 1
    counters = JobCounters()
    with pytest.raises(MediaError, match="frame 0: its second field never came"):
        list(weave_stage(counters)([OutputFrame(first, 0)]))


def test_archive_mode_restores_fields_as_file_mode_does(tff: Path, tiny_model: Path, detector_weights: Path,
                                                       tmp_path: Path):
    options = RestoreOptions(model=str(tiny_model), detector=str(detector_weights), device="cpu", det_size=320,
                             offline=True, codec="ffv1")
    archived, file_mode = tmp_path / "archived.mkv", tmp_path / "file_mode.mkv"
    archive_video(tff, archived, options, ArchiveSettings(chunk_seconds=0.2, progress=False))
    restore_video(tff, file_mode, options, progress=False)
    assert video_facts(archived)["pts"] == video_facts(file_mode)["pts"]
    assert field_flags(archived) == field_flags(file_mode) == ["T"] * len(video_facts(tff)["pts"])
    source, out, one_pass = planes_of(tff), planes_of(archived), planes_of(file_mode)
    changed_box(source, out)  # faces were restored
    assert len(out) == len(one_pass) == len(source)
    for a, f in zip(out, one_pass):
        assert all(np.array_equal(pa, pf) for pa, pf in zip(a, f)), "every plane as one pass has it, bit for bit"


def test_archive_mode_refuses_deinterlace_before_any_work(tff: Path, tiny_model: Path, detector_weights: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out.mkv"
    argv = ["-q", "archive", str(tff), str(out), "--model", str(tiny_model), "--detector", str(detector_weights),
            "--device", "cpu", "--offline", "--deinterlace", "--no-progress"]
    assert cli.main(argv) == 2
    assert "--deinterlace" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no output, no work folder"


# --- monochrome and colour -----------------------------------------------------------------------


def test_monochrome_is_found_by_flat_chroma_and_by_grey_pixel_format(media: Path):
    grey_in_yuv = face_clip(media / "grey_yuv.mp4", grey=True)
    grey_format = face_clip(media / "grey.mkv", grey=True, codec=("ffv1",), pix_fmt="gray")
    colour = face_clip(media / "colour.mp4")
    assert monochrome_reason(probe(grey_in_yuv)) == "chroma flat at neutral on 5 sampled frames"
    assert monochrome_reason(probe(grey_format)) == "grey pixel format gray"
    assert monochrome_reason(probe(colour)) is None
    assert not any(chroma_is_neutral(p) for p in sampled_pictures(str(colour), 5))


def test_monochrome_is_told_past_a_black_leader_and_a_coloured_logo(media: Path):
    """Black frames have neutral chroma in colour films too: they are not counted, and a clip whose first
    frames are black is judged on the others (sampled at their times, not the keyframe before); a small
    logo in colour does not make a black-and-white film colour."""
    colour_after_black = face_clip(media / "colour_leader.mp4", black=3)
    grey_after_black = face_clip(media / "grey_leader.mp4", grey=True, black=3)
    grey_with_logo = face_clip(media / "grey_logo.mp4", grey=True, speck=True)
    assert monochrome_reason(probe(colour_after_black)) is None
    assert monochrome_reason(probe(grey_after_black)) == "chroma flat at neutral on 4 sampled frames"
    assert monochrome_reason(probe(grey_with_logo)) == "chroma flat at neutral on 5 sampled frames"
    all_black = face_clip(media / "black.mp4", black=12)
    assert monochrome_reason(probe(all_black)) is None, "nothing bright enough to tell: colour, as it may be"


def test_settled_options_decide_the_picture_again_without_reading_the_source(media: Path, tff: Path):
    """What archive mode gives its chunks: the field order and colour of the whole source, explicit, so a
    chunk does not sample the file again (here it could not: the path names no file)."""
    options = RestoreOptions(model="tiny.pth", detector="retina.pth")  # a model: colour auto has a choice
    for src in (face_clip(media / "mono.mp4", grey=True), tff):
        plan = picture_plan(probe(src), options)
        settled = settled_options(options, plan)
        elsewhere = dataclasses.replace(probe(src), path=str(media / "no such file.mp4"), field_order="progressive")
        again = picture_plan(elsewhere, settled)
        assert (again.field_order, again.luma_only) == (plan.field_order, plan.luma_only)


def test_monochrome_source_stays_monochrome_bit_exact_in_chroma(media: Path, tiny_model: Path,
                                                               detector_weights: Path, tmp_path: Path):
    src = face_clip(media / "mono.mp4", grey=True)
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights, "--codec", "ffv1")
    source, restored = planes_of(src), planes_of(out)
    assert len(source) == len(restored) == 12
    changed_box(source, restored)  # faces were restored: the luma changed
    for s, o in zip(source, restored):
        assert all(np.array_equal(sc, oc) for sc, oc in zip(s[1:], o[1:])), "every chroma sample is the source's"


@pytest.mark.parametrize("pix_fmt", ["gray", "gray10le"])
def test_grey_pixel_formats_are_written_back_in_their_own_format(pix_fmt: str, media: Path, tiny_model: Path,
                                                                detector_weights: Path, tmp_path: Path):
    src = face_clip(media / f"{pix_fmt}.mkv", grey=True, frames=6, codec=("ffv1",), pix_fmt=pix_fmt)
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights, "--codec", "ffv1")
    assert video_facts(out)["pix_fmt"] == pix_fmt
    source, restored = planes_of(src), planes_of(out)
    assert [len(f) for f in restored] == [1] * 6
    assert_exact_outside(source, restored, changed_box(source, restored))


def test_restored_colour_on_monochrome_is_what_auto_prevents(media: Path, tiny_model: Path, detector_weights: Path,
                                                            tmp_path: Path):
    src = face_clip(media / "mono.mp4", grey=True)
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights, "--codec", "ffv1", "--colour", "restored")
    assert any(not np.array_equal(s[1], o[1]) for s, o in zip(planes_of(src), planes_of(out))), \
        "the model's own colours do reach the chroma (so the auto test above can fail)"


def test_colour_source_on_a_colour_clip_keeps_chroma_bit_exact(media: Path, tiny_model: Path,
                                                              detector_weights: Path, tmp_path: Path):
    src = face_clip(media / "colour.mp4")
    out = tmp_path / "out.mkv"
    run(src, out, tiny_model, detector_weights, "--codec", "ffv1", "--colour", "source")
    source, restored = planes_of(src), planes_of(out)
    changed_box(source, restored)
    for s, o in zip(source, restored):
        assert all(np.array_equal(sc, oc) for sc, oc in zip(s[1:], o[1:]))


def test_colour_source_on_rgb_frames_changes_only_what_the_paste_changed(media: Path, tiny_model: Path,
                                                                         detector_weights: Path, tmp_path: Path):
    """RGB pictures (FFV1 keeps them as bgr0) cannot keep their chroma plane by plane: the restored pixels
    take the source's chroma, and the other pixels of the face's box are left exactly as they were."""
    src = face_clip(media / "rgb.mkv", frames=4, codec=("ffv1",), pix_fmt="bgr0")
    assert video_facts(src)["pix_fmt"] == "bgr0"
    runs = {}
    for colour in ("restored", "source"):
        out = tmp_path / f"{colour}.mkv"
        run(src, out, tiny_model, detector_weights, "--codec", "ffv1", "--colour", colour)
        assert video_facts(out)["pix_fmt"] == "bgr0"
        runs[colour] = rgb_frames(out)
    source = rgb_frames(src)
    pasted = np.any(runs["restored"] != source, axis=-1)
    changed = np.any(runs["source"] != source, axis=-1)
    assert pasted.any(), "faces were restored"
    assert not (changed & ~pasted).any(), "no pixel the paste left alone was changed"
    assert np.any(runs["source"] != runs["restored"]), "the source's chroma did replace the model's"


def rgb_frames(path: Path) -> np.ndarray:
    """Every frame of a video as RGB, (frames, height, width, 3)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_colour_source_on_an_image_keeps_a_grey_picture_grey(media: Path, tiny_model: Path, detector_weights: Path,
                                                             tmp_path: Path):
    from PIL import Image

    from picture_media import still_picture

    grey = tmp_path / "grey.png"
    Image.open(still_picture(media / "still.png")).convert("L").resize((320, 320)).save(grey)
    out = tmp_path / "out.png"
    run(grey, out, tiny_model, detector_weights)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert not np.array_equal(rgb[..., 0], np.asarray(Image.open(grey))), "the face was restored"
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


# --- mezzanine codecs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "suffix", "codec", "profile", "pix_fmt"), [
    ("prores", ".mov", "prores", "HQ", "yuv422p10le"),
    ("dnxhr", ".mov", "dnxhd", "DNXHR HQ", "yuv422p"),
    ("ffv1", ".mkv", "ffv1", None, "yuv422p10le"),
])
def test_mezzanine_in_gives_the_same_codec_profile_pixel_format_and_timecode_out(
        kind: str, suffix: str, codec: str, profile: str | None, pix_fmt: str, media: Path, tiny_model: Path,
        detector_weights: Path, tmp_path: Path):
    src = mezzanine_clip(media / f"{kind}{suffix}", kind)
    out = tmp_path / f"out{suffix}"
    run(src, out, tiny_model, detector_weights)
    before, after = video_facts(src), video_facts(out)
    assert (before["codec"], before["profile"], before["pix_fmt"]) == (codec, profile, pix_fmt)
    assert (after["codec"], after["profile"], after["pix_fmt"]) == (codec, profile, pix_fmt)
    assert after["timecode"] == before["timecode"] == TIMECODE
    assert after["reel_name"] == REEL
    assert after["pts"] == before["pts"]
    if kind == "ffv1":
        assert ffv1_version_3_with_crc(after["extradata"]), "FFV1 version 3, its header checked by a CRC"


def ffv1_version_3_with_crc(extradata: bytes) -> bool:
    """True when FFV1 extradata ends in the CRC of version 3 headers (FFmpeg's AV_CRC_32_IEEE over the
    whole header, its stored CRC included, is 0); versions 0 and 1 have no such header at all."""
    crc = 0
    for byte in extradata:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return len(extradata) > 4 and crc == 0


def pure_io(src: Path, out: Path, *options: str) -> int:
    """`vidrestore SRC OUT` without a model or detector (every frame as decoded): its exit status."""
    return cli.main(["-q", str(src), str(out), "--model", "none", "--detector", "none", "--offline", "--no-progress",
                     *options])


@pytest.mark.parametrize(("rate", "order", "flag"), [("30000/1001", "progressive", "P"),
                                                     ("24000/1001", "progressive", "P"), ("30000/1001", "tff", "T")])
def test_dnxhd_in_gives_dnxhd_of_the_same_bit_rate_and_field_coding_out(rate: str, order: str, flag: str,
                                                                       media: Path, tmp_path: Path):
    """DNxHD's profiles are bit rates the container's average lands beside (219.98 Mb/s for 220 at 29.97,
    175.98 for 175 at 23.976): the same profile, frames of the same size, fields coded as they were."""
    src = dnxhd_clip(media / f"dnxhd_{rate.split('/')[0]}_{order}.mov", rate, order)
    out = tmp_path / "out.mov"
    assert pure_io(src, out) == 0
    before, after = video_facts(src), video_facts(out)
    assert (before["codec"], before["profile"]) == (after["codec"], after["profile"]) == ("dnxhd", "DNXHD")
    assert after["pix_fmt"] == before["pix_fmt"]
    assert after["bit_rate"] == before["bit_rate"], "the same profile: every frame of the same size"
    assert field_flags(src) == field_flags(out) == [flag] * 3
    assert after["timecode"] == TIMECODE


def test_dnxhd_at_a_bit_rate_of_no_profile_is_refused_before_any_work(media: Path):
    info = probe(dnxhd_clip(media / "dnxhd_30000_progressive.mov", "30000/1001"))
    odd = dataclasses.replace(info, bit_rate=100_000_000)  # no 100 Mb/s DNxHD profile at 1920x1080p
    with pytest.raises(MediaError, match="none of the profiles .* give --codec"):
        EncoderSettings(codec="auto").for_source(odd)


@pytest.mark.parametrize(("name", "option"), sorted(PRORES_PROFILES.items()))
def test_every_prores_profile_is_written_again_as_it_was(name: str, option: str, tmp_path: Path):
    info = probe(prores_frame(tmp_path / "one.mov", int(option)))
    assert info.profile == name
    assert mezzanine_options(info) == ("prores_ks", {"profile": option})


def test_codec_flag_wins_over_the_source_codec(media: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path):
    src = mezzanine_clip(media / "prores.mov", "prores")
    out = tmp_path / "out.mov"
    run(src, out, tiny_model, detector_weights, "--codec", "libx264")
    assert video_facts(out)["codec"] == "h264"
    assert video_facts(out)["timecode"] == TIMECODE


def test_a_container_that_cannot_hold_the_source_codec_is_refused_before_any_work(
        media: Path, tiny_model: Path, detector_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = mezzanine_clip(media / "dnxhr.mov", "dnxhr")
    out = tmp_path / "out.mkv"
    argv = ["-q", str(src), str(out), "--model", str(tiny_model), "--detector", str(detector_weights),
            "--device", "cpu", "--offline", "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot hold video encoder dnxhd" in err
    assert "codec auto chose it for the dnxhd source: give --codec libx264" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []



def test_upscaling_an_interlaced_source_needs_deinterlace(tff: Path, tiny_model: Path, detector_weights: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["-q", str(tff), str(tmp_path / "woven.mkv"), "--model", str(tiny_model), "--detector",
            str(detector_weights), "--device", "cpu", "--offline", "--no-progress", "--upscale", "2"]
    assert cli.main(argv) == 2 and "add --deinterlace" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    run(tff, tmp_path / "p.mkv", tiny_model, detector_weights, "--upscale", "2", "--deinterlace")
    facts, source = video_facts(tmp_path / "p.mkv"), probe(tff)
    assert len(facts["pts"]) == 2 * len(video_facts(tff)["pts"]) and (source.width * 2, source.height * 2) == (
        probe(tmp_path / "p.mkv").width, probe(tmp_path / "p.mkv").height)
