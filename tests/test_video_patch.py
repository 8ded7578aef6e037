"""Writing restored regions back into the decoded picture: exact outside the regions and wherever the
paste's mask is zero, right inside."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline_support import cut_clip, make_tiny_restorer, test_options
from vidrestore.faces.align import paste_faces, paste_regions
from vidrestore.faces.detector import FaceDetector
from vidrestore.pipeline.restorer_api import load_crop_restorer, load_detector
from vidrestore.pipeline.stages import AnalysedFrame, CropRestorer, JobCounters, RestoredBatch, composite_stage
from vidrestore.video import EncoderSettings, VideoSink, VideoSource
from vidrestore.video.patch import patch_decoded_picture
from vidrestore.video.types import Frame


def _picture(fmt: str, width: int, height: int, seed: int = 0) -> av.VideoFrame:
    """A decoded-like picture of random RGB content in `fmt`, tagged BT.709 limited range."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt, dst_colorspace=1, dst_color_range=1)


def _planes(picture: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint16 if picture.format.components[0].bits > 8 else np.uint8
    out = []
    for plane in picture.planes:
        itemsize = np.dtype(dtype).itemsize
        rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // itemsize)
        out.append(rows[:, : plane.width].copy())
    return out


def _frame(picture: av.VideoFrame, image_format: str) -> Frame:
    return Frame.from_picture(picture, 0, time_base=Fraction(1, 25), pixel_format=image_format)


@pytest.mark.parametrize("fmt,image_format,width,height", [
    ("yuv420p", "rgb24", 64, 48),
    ("yuv420p", "rgb24", 63, 47),  # odd sizes: the last chroma sample covers one column/row
    ("yuv422p", "rgb24", 64, 48),
    ("yuv444p", "rgb24", 64, 48),
    ("yuv420p10le", "rgb48le", 64, 48),
])
def test_only_the_boxes_change_and_the_decoded_picture_is_untouched(fmt, image_format, width, height) -> None:
    picture = _picture(fmt, width, height)
    original = _planes(picture)
    frame = _frame(picture, image_format)
    image = frame.image
    top = np.iinfo(image.dtype).max
    image[10:21, 13:30] = top  # a white patch, as a pasted face would be
    box = (13, 10, 30, 21)
    assert patch_decoded_picture(frame, [box])
    assert frame.native is not None and frame.native is not picture
    assert all(np.array_equal(a, b) for a, b in zip(_planes(picture), original))  # the decoder's picture
    patched = _planes(frame.native)
    luma_changed = patched[0] != original[0]
    ys, xs = np.nonzero(luma_changed)
    assert ys.min() >= 10 and ys.max() < 22 and xs.min() >= 12 and xs.max() < 30  # box grown to chroma samples
    for plane, before in zip(patched[1:], original[1:]):
        sy, sx = round(height / plane.shape[0]), round(width / plane.shape[1])
        outside = np.ones_like(plane, dtype=bool)
        outside[10 // sy: -(-22 // sy), 12 // sx: -(-30 // sx)] = False
        assert np.array_equal(plane[outside], before[outside])
    white = frame.native.to_ndarray(format=image_format)[12:19, 15:28]
    assert white.min() >= top * 0.97  # the patch reads back white


def test_formats_it_cannot_patch_keep_the_rgb_copy() -> None:
    picture = _picture("nv12", 32, 32)
    frame = _frame(picture, "rgb24")
    frame.image[:8, :8] = 0
    assert not patch_decoded_picture(frame, [(0, 0, 8, 8)])
    assert frame.native is None and frame.image[0, 0].tolist() == [0, 0, 0]  # the encoder converts the RGB copy


def test_several_boxes() -> None:
    picture = _picture("yuv420p", 80, 40, seed=1)
    original = _planes(picture)
    frame = _frame(picture, "rgb24")
    frame.image[2:8, 2:8] = 255
    frame.image[30:36, 70:76] = 0
    assert patch_decoded_picture(frame, [(2, 2, 8, 8), (70, 30, 76, 36)])
    luma = _planes(frame.native)[0]
    changed = luma != original[0]
    assert changed[2:8, 2:8].all() and changed[30:36, 70:76].all()
    changed[2:8, 2:8] = changed[30:36, 70:76] = False
    assert not changed[10:28, 10:68].any()


def _any_per_block(mask: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """A pixel mask at a subsampled plane's resolution: True where any pixel of the block is (odd edges padded)."""
    h, w = mask.shape
    padded = np.zeros((-(-h // sy) * sy, -(-w // sx) * sx), dtype=bool)
    padded[:h, :w] = mask
    return padded.reshape(padded.shape[0] // sy, sy, padded.shape[1] // sx, sx).any(axis=(1, 3))


@pytest.mark.parametrize("fmt,image_format,width,height", [
    ("yuv420p", "rgb24", 63, 47),  # the box reaches the odd right and bottom edges
    ("yuv422p", "rgb24", 64, 48),
    ("yuv420p10le", "rgb48le", 64, 48),
])
def test_with_the_originals_only_the_changed_pixels_are_rewritten(fmt, image_format, width, height) -> None:
    picture = _picture(fmt, width, height, seed=2)
    original = _planes(picture)
    frame = _frame(picture, image_format)
    image = frame.image
    box = (5, 4, width, height)
    before = image[4:height, 5:width].copy()
    yy, xx = np.mgrid[0:height, 0:width]
    disc = (xx - 40) ** 2 + (yy - 25) ** 2 < 12 ** 2  # where a feathered mask is above zero
    image[disc] = np.iinfo(image.dtype).max - image[disc]
    assert patch_decoded_picture(frame, [box], [before])
    patched = _planes(frame.native)
    assert np.array_equal(patched[0][~disc], original[0][~disc])
    assert (patched[0][disc] != original[0][disc]).mean() > 0.9
    for plane, before_plane in zip(patched[1:], original[1:]):
        touched = _any_per_block(disc, round(height / plane.shape[0]), round(width / plane.shape[1]))
        assert np.array_equal(plane[~touched], before_plane[~touched])
        assert (plane[touched] != before_plane[touched]).mean() > 0.9


def _restored_batch(engine: CropRestorer, detector: FaceDetector, frame: Frame) -> RestoredBatch:
    """The frame's detected faces restored by the engine, ready for the composite stage."""
    faces = detector.detect_one(frame.image)
    assert faces
    face_frame = np.zeros(len(faces), dtype=np.int64)
    crops, matrices = engine.restore([frame.image], face_frame, np.stack([f.landmarks for f in faces]))
    return RestoredBatch([AnalysedFrame(frame, [])], face_frame, crops, matrices)


def _mask_zero_and_boxes(batch: RestoredBatch, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the paste's mask is zero (a white paste onto black leaves those pixels black), and the paste boxes."""
    probe = np.zeros((height, width, 3), dtype=np.uint8)
    paste_faces([probe], batch.face_frame, torch.full_like(batch.crops, 255.0), batch.matrices)
    inside = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in paste_regions([probe], batch.face_frame, batch.matrices, batch.crops.shape[-1]):
        inside[y0:y1, x0:x1] = True
    return (probe == 0).all(axis=-1), inside


def _decoded_planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's planes as decoded (no colour conversion)."""
    with av.open(str(path)) as container:
        return [_planes(frame) for frame in container.decode(video=0)]


def test_samples_where_the_mask_is_zero_stay_as_decoded(media_dir: Path, detector_weights: Path,
                                                        tmp_path: Path) -> None:
    """Real faces pasted back with the composite stage into a lossless file: only the mask's samples move."""
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mkv"
    cut_clip(media_dir / "videos" / "retalking_face_1.mp4", clip, 3)
    options = test_options(make_tiny_restorer(tmp_path / "tiny.pth"), detector_weights)
    engine = load_crop_restorer(options, torch.device("cpu"))
    detector = load_detector(options, torch.device("cpu"))
    with VideoSource(clip, passthrough=True) as source:
        height, width = source.info.height, source.info.width
        with VideoSink(out, source.info, EncoderSettings("ffv1"), copy_streams=False) as sink:
            batches = [_restored_batch(engine, detector, frame) for frame in source]
            masks = [_mask_zero_and_boxes(batch, height, width) for batch in batches]
            for item in composite_stage(engine, JobCounters())(batches):
                sink.write(item.frame)
    decoded_in, decoded_out = _decoded_planes(clip), _decoded_planes(out)
    assert len(decoded_out) == len(decoded_in) == len(masks) == 3
    for (zero, inside), planes_in, planes_out in zip(masks, decoded_in, decoded_out):
        assert (zero & inside).mean() > 0.01  # inside the paste boxes, where the old write-back moved samples
        assert np.array_equal(planes_out[0][zero], planes_in[0][zero])
        chroma_zero = ~_any_per_block(~zero, 2, 2)
        for plane_in, plane_out in zip(planes_in[1:], planes_out[1:]):
            assert np.array_equal(plane_out[chroma_zero], plane_in[chroma_zero])
        assert np.abs(planes_out[0][~zero].astype(int) - planes_in[0][~zero]).mean() > 1.0  # the faces changed
