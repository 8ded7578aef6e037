"""`--upscale N`: output geometry and colour tags, the Lanczos and Real-ESRGAN backgrounds, faces pasted at
the upscaled size, in video files, archive mode, images, live mode and the HTTP API."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pipeline_support import (
    cut_clip,
    encode_rgb_lossless,
    make_tiny_restorer,
    rgb_frames,
    test_options,
)
from server_support import FACE, assert_error, decode, live_server, wait_for
from upscale_support import make_tiny_parsenet, make_tiny_realesrgan
from videogen import make_video, other_packets, video_pts

from vidrestore import cli
from vidrestore.errors import CheckpointError, VidrestoreError, WeightsError
from vidrestore.faces.align import warp_faces
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.models.upsampler import (
    Background,
    TiledUpsampler,
    TileGrid,
    lanczos_resize,
    load_realesrgan,
    realesrgan_from_state_dict,
    realesrgan_layout,
    tiles_per_call,
)
from vidrestore.pipeline.job import add_restoration, restore_file, restore_video
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.restorer_api import Restorer, load_crop_restorer
from vidrestore.pipeline.runner import Pipeline
from vidrestore.pipeline.stages import (
    AnalysedFrame,
    JobCounters,
    RestoredBatch,
    composite_stage,
)
from vidrestore.server.errors import ApiError
from vidrestore.server.restorers import SharedRestorer
from vidrestore.video.geometry import Upscale, output_color
from vidrestore.video.probe import probe
from vidrestore.video.types import ColorInfo, Frame
from vidrestore.weights import spec_for

CLIP = "retalking_face_1.mp4"  # 700x700, one face in every frame, AAC audio
FRAMES = 6


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """A real clip with audio (and its lossless RGB copy), a small synthetic clip with SAR, VFR and audio,
    a tiny restorer and a tiny Real-ESRGAN x2."""
    folder = tmp_path_factory.mktemp("upscale")
    clip, lossless, small = folder / "clip.mp4", folder / "clip_rgb.mkv", folder / "small.mp4"
    cut_clip(media_dir / "videos" / CLIP, clip, FRAMES)
    encode_rgb_lossless(media_dir / "videos" / CLIP, lossless, FRAMES)
    make_video(small, frames=8, size=(96, 64), sar=Fraction(16, 11), audio_languages=["eng"])
    small_rgb = folder / "small_rgb.mkv"
    encode_rgb_lossless(small, small_rgb, 8)
    return {"clip": clip, "lossless": lossless, "small": small, "small_rgb": small_rgb,
            "model": make_tiny_restorer(folder / "tiny.pth"), "esrgan": make_tiny_realesrgan(folder / "x2.pth"),
            "parser": make_tiny_parsenet(folder / "parser.pth")}


def _no_model(**overrides: object) -> RestoreOptions:
    values = {"model": "none", "detector": "none", "device": "cpu", "preset": "ultrafast", "offline": True}
    return RestoreOptions(**{**values, **overrides})


# --- geometry and colour -------------------------------------------------------------------------


def test_output_size_keeps_sar_or_folds_it_into_square_pixels() -> None:
    pal_16_9 = Fraction(64, 45)
    assert Upscale(2).size(720, 576, pal_16_9) == (1440, 1152)
    assert Upscale(2, square_pixels=True).size(720, 576, pal_16_9) == (2048, 1152)
    assert Upscale(1, square_pixels=True).size(720, 480, Fraction(10, 11)) == (654, 480)  # even width
    assert Upscale(4).size(96, 64) == (384, 256)
    assert Upscale(1.5).size(481, 270) == (722, 404)  # even sides: no silent switch to 4:4:4
    for factor in (0.5, float("inf"), float("nan"), 64):
        with pytest.raises(VidrestoreError):
            Upscale(factor)


def test_colour_matrix_is_explicit_when_sd_becomes_hd() -> None:
    untagged = ColorInfo()
    assert output_color(untagged, 576, 1152).matrix == 5  # BT.601 (625 lines), what the pixels were made with
    assert output_color(untagged, 480, 960).matrix == 6  # BT.601 (525 lines)
    assert output_color(untagged, 288, 576) == untagged  # still SD: players assume BT.601 anyway
    assert output_color(untagged, 720, 1440) == untagged  # HD already: unchanged
    tagged = ColorInfo(primaries=5, transfer=6, matrix=5, range=1)
    assert output_color(tagged, 576, 1152) == tagged
    assert output_color(tagged, 576, 1152, "bt709") == ColorInfo(5, 6, 1, 1)  # RGB primaries stay the source's


def test_matrices_follow_the_resize_of_pixel_centres() -> None:
    """A crop pixel lands where the resize puts the frame pixel it came from: (x + 0.5) * s - 0.5."""
    rng = np.random.default_rng(1)
    matrices = np.concatenate([rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2, 1)) * 50], axis=2)
    scaled = Background.scale_matrices(matrices, (64, 96), (128, 288))
    point = np.array([10.0, 20.0])
    moved = np.array([(point[0] + 0.5) * 3 - 0.5, (point[1] + 0.5) * 2 - 0.5, 1.0])
    np.testing.assert_allclose(scaled @ moved, matrices @ np.append(point, 1.0))


# --- the background upsamplers -------------------------------------------------------------------


def test_tiles_cut_and_join_back_exactly() -> None:
    frames = torch.rand(2, 3, 70, 130)
    grid = TileGrid.for_size(70, 130, tile=40)
    assert (grid.rows, grid.cols) == (2, 4) and grid.th % 4 == 0 and grid.tw % 4 == 0
    tiles = grid.cut(frames)
    assert tiles.shape == (2 * 8, 3, grid.th + 20, grid.tw + 20)
    assert torch.equal(grid.join(tiles, 2, 1, 70, 130), frames)


def test_released_realesrgan_layouts_load_with_their_sizes() -> None:
    """RealESRGAN_x2plus and x4plus: BasicSR's RRDBNet keys and shapes (23 blocks, 64 features, growth 32)
    are what the loader builds from, and the manifest's file sizes are those tensors plus the pickle's bytes."""
    for name, scale, unshuffle in (("RealESRGAN_x2plus", 2, True), ("RealESRGAN_x4plus", 4, False)):
        state = {key: torch.empty(shape) for key, shape in realesrgan_layout(scale).items()}
        descriptor = realesrgan_from_state_dict(state, name)
        assert descriptor.scale == scale and {"64nf", "23nb"} <= set(descriptor.tags)
        assert ("unshuffle" in descriptor.tags) == unshuffle
        assert sum(p.numel() for p in descriptor.model.parameters()) == sum(v.numel() for v in state.values())
        spec = spec_for(name, "upsampler")
        assert spec.sha256 is not None and spec.url.endswith(spec.filename)
        assert 0 < spec.size - 4 * sum(v.numel() for v in state.values()) < 1 << 20


def test_other_checkpoints_are_refused_as_upsamplers(work: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError):
        load_realesrgan(work["model"])


def test_tiled_realesrgan_matches_whole_frames_and_batches(work: dict[str, Path]) -> None:
    descriptor = load_realesrgan(work["esrgan"])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8) for _ in range(2)]
    whole = TiledUpsampler(descriptor, torch.device("cpu"), tile=0).upscale(frames)
    tiled = TiledUpsampler(descriptor, torch.device("cpu"), tile=40, batch_size=3).upscale(frames)
    assert whole[0].shape == (140, 180, 3) and whole[0].dtype == np.uint8
    with torch.inference_mode():  # the network on each frame with its edges replicated (to a multiple of 4)
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
        padded = torch.nn.functional.pad(x, (10, 12, 10, 12), mode="replicate")  # 70x90 -> 72x92 plus context
        direct = (descriptor.model(padded)[:, :, 20:160, 20:200].clamp(0, 1) * 255).round().to(torch.uint8)
        direct = direct.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(np.stack(whole), direct)
    # tiles see 10 pixels of context, the network a little more: only pixels at tile seams may differ
    differs = np.any(np.stack(tiled) != direct, axis=-1)
    assert differs.mean() < 0.1


# --- video files ---------------------------------------------------------------------------------


def test_upscale_2_doubles_the_size_and_keeps_sar_frames_timestamps_and_audio(work: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    report = restore_video(work["small"], out, _no_model(upscale=2), progress=False)
    before, after = probe(str(work["small"])), probe(str(out))
    assert (after.width, after.height) == (2 * before.width, 2 * before.height)
    assert after.sample_aspect_ratio == before.sample_aspect_ratio == Fraction(16, 11)
    pts_in, tb_in = video_pts(work["small"])
    pts_out, tb_out = video_pts(out)
    assert report.frames == len(pts_out) == len(pts_in) == 8
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]
    assert other_packets(out) == other_packets(work["small"]) and other_packets(out)[0]


def test_model_none_upscale_is_a_plain_lanczos_resize(work: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    restore_video(work["small_rgb"], out, _no_model(upscale=2, bg_upsampler="lanczos", codec="ffv1", preset=None),
                  progress=False)
    before, after = rgb_frames(work["small_rgb"]), rgb_frames(out)
    assert len(after) == len(before) == 8
    for b, a in zip(before, after):
        assert np.array_equal(a, lanczos_resize(b, 192, 128))


def test_realesrgan_background_is_the_networks(work: dict[str, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.mkv"
    caplog.set_level("WARNING", logger="vidrestore")
    restore_video(work["small_rgb"], out, _no_model(upscale=2, bg_upsampler="realesrgan", bg_model=str(work["esrgan"]),
                                                    codec="ffv1", preset=None), progress=False)
    before, after = rgb_frames(work["small_rgb"]), rgb_frames(out)
    network = TiledUpsampler(load_realesrgan(work["esrgan"]), torch.device("cpu"))
    assert len(after) == 8
    assert any("Real-ESRGAN runs on the CPU" in r.getMessage() for r in caplog.records)  # the user is told it is slow
    for b, a in zip(before, after):
        assert np.array_equal(a, network.upscale([b])[0])
    # 3x from the x2 network: its output brought to the size by the same Lanczos resize
    out3 = tmp_path / "out3.mkv"
    restore_video(work["small_rgb"], out3, _no_model(upscale=3, bg_upsampler="realesrgan",
                                                     bg_model=str(work["esrgan"]), codec="ffv1", preset=None),
                  progress=False)
    first = rgb_frames(out3)[0]
    assert np.array_equal(first, lanczos_resize(network.upscale([before[0]])[0], 288, 192))


def test_faces_are_restored_at_the_upscaled_size(work: dict[str, Path], detector_weights: Path,
                                                 tmp_path: Path) -> None:
    """The background is the Lanczos resize of the source; the faces differ from it."""
    out = tmp_path / "out.mkv"
    options = test_options(work["model"], detector_weights, upscale=2, codec="ffv1", preset=None)
    report = restore_video(work["lossless"], out, options, progress=False)
    assert report.frames_with_faces >= FRAMES - 1
    before, after = rgb_frames(work["lossless"]), rgb_frames(out)
    assert after[0].shape == (1400, 1400, 3)
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=320))
    box = detector.detect_one(before[0])[0].box * 2
    centre, size = (box[:2] + box[2:]) / 2, max(box[2:] - box[:2])
    yy, xx = np.mgrid[0:1400, 0:1400]
    distance = np.maximum(abs(xx - centre[0]), abs(yy - centre[1]))
    far, near = distance > 1.1 * size, distance < 0.3 * size
    for b, a in zip(before, after):
        background = lanczos_resize(b, 1400, 1400)
        assert np.array_equal(a[far], background[far])
        assert np.abs(a[near].astype(int) - background[near]).mean() > 1.0


def test_a_face_pasted_at_the_upscaled_size_keeps_the_models_detail(work: dict[str, Path], detector_weights: Path,
                                                                    media_dir: Path) -> None:
    """A face smaller than the restorer's crop: pasted into the 2x picture, the crop is there nearly as the
    model made it; pasted at 1x and resized afterwards, its detail is lost to the resize."""
    rgb = cv2.cvtColor(cv2.imread(str(media_dir / "faces" / FACE)), cv2.COLOR_BGR2RGB)
    small = cv2.resize(rgb, (112, 112), interpolation=cv2.INTER_AREA)  # the face about 60 px, the crop 64
    restorer = Restorer(test_options(work["model"], detector_weights))
    at_2x = restorer.derive(blend=1.0, only_center_face=False, upscale=2).restore_frames([small])[0]
    at_1x = restorer.restore_frames([small])[0]
    assert at_2x.image.shape == (224, 224, 3) and len(at_2x.faces) == len(at_1x.faces) == 1
    face = at_1x.faces[0]
    crops, matrices = restorer.engine.restore([small], np.zeros(1, np.int64), face.landmarks[None])
    scaled = Background.scale_matrices(matrices, (112, 112), (224, 224))
    inner = slice(16, 48)  # inside the feathered mask, where the paste is the restored crop itself

    def error(picture: np.ndarray) -> float:
        back = warp_faces([picture], [0], scaled, 64)[0, :, inner, inner]
        return float((back - crops[0, :, inner, inner]).abs().mean())

    assert error(at_2x.image) < 0.8 * error(lanczos_resize(at_1x.image, 224, 224))


def test_square_pixels_and_the_colour_tags_of_an_hd_output(work: dict[str, Path], tmp_path: Path) -> None:
    sd = tmp_path / "sd.mp4"
    make_video(sd, frames=2, size=(180, 360), sar=Fraction(64, 45), bframes=0)
    out = tmp_path / "hd.mp4"
    restore_video(sd, out, _no_model(upscale=2, square_pixels=True), progress=False)
    info = probe(str(out))
    assert (info.width, info.height) == (512, 720) and info.sample_aspect_ratio in (None, Fraction(1))
    assert info.color.matrix == 6  # BT.601, as the frames were converted, now that players would guess BT.709
    converted = tmp_path / "hd709.mp4"
    restore_video(sd, converted, _no_model(upscale=2, matrix="bt709"), progress=False)
    assert probe(str(converted)).color.matrix == 1
    with av.open(str(converted)) as c:
        frame = next(c.decode(video=0))
        assert frame.colorspace == 1


def test_bad_upscale_options_are_one_line_errors(work: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.mp4"
    for args in (["--bg-upsampler", "realesrgan"], ["--upscale", "0.5"], ["--upscale", "inf"], ["--upscale", "64"],
                 ["--matrix", "bt709"]):
        code = cli.main([str(work["small"]), str(out), "--model", "none", "--detector", "none", *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_options_given_without_effect_are_warned_about(work: dict[str, Path], tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.mp4"
    caplog.set_level("WARNING", logger="vidrestore")
    code = cli.main([str(work["small"]), str(out), "--model", "none", "--detector", "none", "--upscale", "2",
                     "--bg-tile", "200", "--parser", "parsenet", "--no-progress"])
    err = caplog.text
    assert code == 0 and out.exists()
    assert "--bg-tile has no effect without --bg-upsampler realesrgan" in err
    assert "--parser has no effect without --mask parse" in err and "--bg-model" not in err


# --- archive mode, images, live mode, HTTP API ---------------------------------------------------


def test_archive_mode_upscales_every_chunk(work: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "archive.mp4"
    code = cli.main(["archive", str(work["small"]), str(out), "--model", "none", "--detector", "none",
                     "--upscale", "2", "--chunk-seconds", "0.1", "--no-progress", "--preset", "ultrafast", "-q"])
    assert code == 0
    info = probe(str(out))
    assert (info.width, info.height) == (192, 128) and info.sample_aspect_ratio == Fraction(16, 11)
    assert video_pts(out)[0] == video_pts(work["small"])[0]


def test_images_are_upscaled_with_faces_and_alpha(work: dict[str, Path], detector_weights: Path, media_dir: Path,
                                                  tmp_path: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(media_dir / "faces" / FACE)), cv2.COLOR_BGR2RGB)
    source = tmp_path / "face.png"
    alpha = np.full(rgb.shape[:2], 200, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(source)
    out = tmp_path / "face_2x.png"
    report = restore_file(source, out, test_options(work["model"], detector_weights, upscale=2, mask="parse",
                                                    parser=str(work["parser"])))
    assert report.faces == 1
    restored = Image.open(out)
    assert restored.size == (1024, 1024) and restored.mode == "RGBA"
    assert np.all(np.asarray(restored)[..., 3] == 200)
    assert not np.array_equal(np.asarray(restored.convert("RGB")), lanczos_resize(rgb, 1024, 1024))


def test_live_mode_delivers_upscaled_frames(work: dict[str, Path], detector_weights: Path) -> None:
    from vidrestore.live.runner import LiveOptions, run_live
    from vidrestore.live.source import LiveSource

    class Shapes:
        name = "shapes"

        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def write(self, output) -> None:
            self.shapes.append(output.image.shape)

        def idle(self, message: str) -> None:
            pass

        def close(self) -> None:
            pass

    sink = Shapes()
    options = test_options(work["model"], detector_weights, upscale=2, smoothing_lag=0, analysis_chunk=1,
                           max_batch_frames=1)
    run_live(LiveSource(str(work["small"])), [sink], options, LiveOptions())
    assert sink.shapes and set(sink.shapes) == {(128, 192, 3)}


def test_live_mode_refuses_a_matrix_it_could_not_tag(work: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "live.mkv"
    args = ["live", str(work["small"]), "--record", str(out), "--model", "none", "--detector", "none",
            "--upscale", "2", "--matrix", "bt709", "--device", "cpu"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--matrix" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_http_api_takes_upscale_and_mask(work: dict[str, Path], detector_weights: Path, media_dir: Path,
                                         tmp_path: Path) -> None:
    restorer = Restorer(test_options(work["model"], detector_weights, mask="parse", parser=str(work["parser"])))
    face = (media_dir / "faces" / FACE).read_bytes()
    with live_server(restorer, max_image_bytes=2_000_000, max_pixels=1_000_000) as (_, client):
        plain = decode(client.post("/v1/images:restore", content=face).content)
        doubled = client.post("/v1/images:restore", params={"upscale": 2, "response": "json"}, content=face)
        assert doubled.status_code == 200
        body = doubled.json()
        assert (body["width"], body["height"]) == (1024, 1024)
        assert body["faces"] and max(body["faces"][0]["box"]) > 512  # faces in output pixels
        boxed = decode(client.post("/v1/images:restore", params={"mask": "box"}, content=face).content)
        assert plain.shape == boxed.shape == (512, 512, 3) and not np.array_equal(plain, boxed)
        assert_error(client.post("/v1/images:restore", params={"upscale": 2, "bg_upsampler": "realesrgan"},
                                 content=face), 400, "unavailable_option")
        assert client.post("/v1/images:restore", params={"upscale": 8}, content=face).status_code == 422
        none = decode(client.post("/v1/images:restore", params={"model": "none", "upscale": 2},
                                  content=face).content)
        rgb = np.asarray(Image.open(io.BytesIO(face)).convert("RGB"))
        assert np.array_equal(none, lanczos_resize(rgb, 1024, 1024))

        job = client.post("/v1/videos", params={"model": "none", "upscale": 2, "format": "mkv"},
                          content=work["small"].read_bytes(), headers={"content-type": "video/mp4"})
        assert job.status_code == 202, job.text
        url = f"/v1/jobs/{job.json()['id']}"
        wait_for(lambda: client.get(url).json()["state"] not in ("queued", "running"), "the video job")
        assert client.get(url).json()["state"] == "done"
        result = tmp_path / "result.mkv"
        result.write_bytes(client.get(f"{url}/result").content)
        assert (probe(str(result)).width, probe(str(result)).height) == (192, 128)


def test_frames_of_a_batch_share_the_networks_calls(work: dict[str, Path]) -> None:
    """Frames of one batch go through the network together (tiles of all of them per call)."""
    network = TiledUpsampler(load_realesrgan(work["esrgan"]), torch.device("cpu"), batch_size=4)
    calls = itertools.count()
    forward = network._forward
    network._forward = lambda chunk: (next(calls), forward(chunk))[1]
    Background(2.0, network).upscale([np.zeros((64, 96, 3), np.uint8)] * 4)
    assert next(calls) == 1


def test_frames_are_upscaled_in_the_composite_one_batch_at_a_time() -> None:
    """No stage queue holds output-size frames: the composite upscales a batch just before it yields its
    frames, so when its first frame comes out only the first batch has been brought to the output size."""
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(6)]
    upscaled = []

    class Counted(Background):
        def upscale(self, images: list[np.ndarray]) -> list[np.ndarray]:  # the real resize, calls counted
            upscaled.extend(images)
            return super().upscale(images)

    def batches() -> Iterator[RestoredBatch]:
        for start in range(0, 6, 2):
            items = [AnalysedFrame(Frame.from_rgb(p.copy(), start + k, start + k, Fraction(1, 25)))
                     for k, p in enumerate(pictures[start : start + 2])]
            yield RestoredBatch(items, np.zeros(0, np.int64))

    background = Counted(2.0)
    frames = composite_stage(None, JobCounters(), background)(batches())
    first = next(iter(frames))
    assert len(upscaled) == 2
    assert np.array_equal(first.frame.image, lanczos_resize(pictures[0], 24, 16))
    assert [f.frame.image.shape for f in frames] == [(16, 24, 3)] * 5
    stages = add_restoration(Pipeline(), None, background, JobCounters(), 2).timings
    assert [stage.name for stage in stages] == ["restore", "composite"]


def test_a_realesrgan_server_serves_requests_at_1x_and_rounds_factors(work: dict[str, Path],
                                                                      detector_weights: Path) -> None:
    """A server started at 2x with Real-ESRGAN: a request for upscale=1 is served at the input's size (its
    background upsampler is left out, not refused), and nearly equal factors share one variant."""
    shared = SharedRestorer(Restorer(test_options(work["model"], detector_weights, upscale=2,
                                                  bg_upsampler="realesrgan", bg_model=str(work["esrgan"]))))
    at_1x = shared.variant_for(None, None, None, upscale=1)
    picture = np.zeros((48, 64, 3), np.uint8)
    assert shared.restorer(at_1x).restore_frames([picture])[0].image.shape == (48, 64, 3)
    assert shared.video_options(at_1x).upscale == 1.0
    assert shared.variant_for(None, None, None, upscale=2.0000001) == shared.default
    with pytest.raises(ApiError, match="needs --upscale above 1"):
        shared.variant_for(None, None, None, upscale=1, bg_upsampler="realesrgan")


def test_tiles_per_call_follow_an_output_pixel_budget_and_halve_when_memory_runs_out(work: dict[str, Path]) -> None:
    """x4 tiles make four times the output of x2 ones, so a call takes a quarter as many; a call that runs
    out of GPU memory is done again with half as many tiles, with the same pixels."""
    grid = TileGrid.for_size(800, 1600, 400)  # 2 x 4 tiles of 400 px, 10 px of context on each side
    assert (tiles_per_call(grid, 2), tiles_per_call(grid, 4)) == (16, 4)  # the budget: 16 x2 tiles of 420 px
    assert tiles_per_call(grid, 4, budget=1) == 1
    network = TiledUpsampler(load_realesrgan(work["esrgan"]), torch.device("cpu"), tile=32, batch_size=8)
    frames = [np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)]
    expected = network.upscale(frames)
    forward, sizes = network._forward, []

    def at_most_two(chunk: torch.Tensor) -> torch.Tensor:
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return forward(chunk)

    network._forward = at_most_two
    assert np.array_equal(network.upscale(frames)[0], expected[0])
    assert sizes == [6, 4, 2, 2, 2] and network.batch_size == 2  # 6 tiles: 8 per call, then 4, then 2


def test_missing_weights_of_restorer_and_upsampler_are_named_in_one_error(detector_weights: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with neither GFPGAN's nor Real-ESRGAN's file anywhere: one error names both, before any loads."""
    from vidrestore import weights

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", str(tmp_path / "env"))
    monkeypatch.setattr(weights, "repo_weights_dir", lambda: None)
    options = RestoreOptions(model="GFPGANv1.4", detector=str(detector_weights), device="cpu", offline=True,
                             upscale=2, bg_upsampler="realesrgan")
    with pytest.raises(WeightsError) as err:
        load_crop_restorer(options, torch.device("cpu"))
    assert "GFPGANv1.4" in str(err.value) and "RealESRGAN_x2plus" in str(err.value)
