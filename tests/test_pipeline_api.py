"""The Python API and the image path: `vidrestore.Restorer`, `restore_image`, presets, flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import vidrestore
from faces_support import read_frames
from pipeline_support import make_tiny_restorer, test_options
from videogen import make_video
from vidrestore import cli
from vidrestore.pipeline.options import RestoreOptions, load_options
from vidrestore.pipeline.stages import select_faces


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_restorer(tmp_path_factory.mktemp("api") / "tiny.pth")


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    """A frame of a real talking-head clip saved as a PNG."""
    path = tmp_path_factory.mktemp("photo") / "face.png"
    frame = read_frames(media_dir / "videos" / "retalking_face_1.mp4", 1)[0]
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def test_image_input_through_the_command_line(tiny, photo, detector_weights, tmp_path) -> None:
    out = tmp_path / "out.png"
    args = [str(photo), str(out), "--model", str(tiny), "--detector", str(detector_weights), "--device", "cpu",
            "--det-size", "320", "-q"]
    assert cli.main(args) == 0
    before = cv2.imread(str(photo))
    after = cv2.imread(str(out))
    assert after.shape == before.shape
    assert np.array_equal(after[:40, :40], before[:40, :40])  # a corner far from the face
    assert np.abs(after.astype(int) - before).mean() > 0.1


def test_restorer_api_for_frames(tiny, photo, detector_weights) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    restorer = vidrestore.Restorer(test_options(tiny, detector_weights))
    out = restorer.restore_frame(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
    half = vidrestore.Restorer(test_options(tiny, detector_weights, blend=0.5)).restore_frame(rgb)
    assert 0 < np.abs(half.astype(int) - rgb).sum() < np.abs(out.astype(int) - rgb).sum()
    blank = np.full((120, 160, 3), 90, np.uint8)
    assert np.array_equal(restorer.restore_frame(blank), blank)
    assert np.array_equal(vidrestore.Restorer(test_options("none", detector_weights)).restore_frame(rgb), rgb)


def test_restore_frames_batches_images_of_any_size(tiny, photo, detector_weights) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    smaller = cv2.resize(rgb, (rgb.shape[1] * 3 // 4, rgb.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    blank = np.full((100, 140, 3), 30, np.uint8)
    restorer = vidrestore.Restorer(test_options(tiny, detector_weights))
    results = restorer.restore_frames([rgb, blank, smaller])
    assert [len(r.faces) for r in results] == [1, 0, 1]
    assert np.array_equal(results[1].image, blank)
    for image, result in zip((rgb, smaller), (results[0], results[2])):
        alone = restorer.restore_frame(image)
        assert np.abs(alone.astype(int) - result.image).max() <= 1  # one batch or one at a time: same faces
        box = result.faces[0].box
        assert 0 <= box[0] < box[2] <= image.shape[1] and 0 <= box[1] < box[3] <= image.shape[0]
    with pytest.raises(vidrestore.VidrestoreError, match="uint8 RGB"):
        restorer.restore_frames([rgb[..., 0]])


def test_presets_and_overrides() -> None:
    for name in ("default", "fast", "quality", "live"):
        assert isinstance(load_options(name), RestoreOptions)
    options = load_options("fast", {"batch_size": 3, "blend": None})
    assert options.batch_size == 3 and options.detect_every == 8 and options.blend == 1.0
    assert not RestoreOptions(model="none").restores


def test_face_selection() -> None:
    class Face:
        def __init__(self, box):
            self.box = np.array(box, float)

    small_centre, big_corner = Face([45, 45, 55, 55]), Face([0, 0, 40, 40])
    faces = [big_corner, small_centre]
    assert select_faces(faces, 100, 100, only_center=True, largest=False) == [small_centre]
    assert select_faces(faces, 100, 100, only_center=False, largest=True) == [big_corner]
    assert select_faces(faces, 100, 100, only_center=False, largest=False) == faces


PEAK_RSS_SCRIPT = """
import json, resource, sys
from vidrestore.pipeline.job import restore_video
from vidrestore.pipeline.options import RestoreOptions
options = RestoreOptions(model=sys.argv[3], detector=sys.argv[4], device="cpu", preset="ultrafast", det_size=320,
                         offline=True)
report = restore_video(sys.argv[1], sys.argv[2], options, progress=False)
print(json.dumps({"frames": report.frames, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak_rss_kb(video: Path, out: Path, model: Path, detector: Path) -> tuple[int, int]:
    """Frames and peak resident memory (kB) of a whole job (all five stages) run in a fresh process."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(video), str(out), str(model), str(detector)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["frames"], result["peak_kb"]


def test_memory_stays_flat_on_a_long_video(tiny, detector_weights, tmp_path: Path) -> None:
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    make_video(short, frames=400, size=(64, 64), gaps=(128,), bframes=0)
    make_video(long, frames=4000, size=(64, 64), gaps=(128,), bframes=0)  # 120 fps: 10x the frames
    frames_short, peak_short = _peak_rss_kb(short, tmp_path / "short_out.mp4", tiny, detector_weights)
    frames_long, peak_long = _peak_rss_kb(long, tmp_path / "long_out.mp4", tiny, detector_weights)
    assert (frames_short, frames_long) == (400, 4000)
    assert peak_long - peak_short < 20 * 1024, (peak_short, peak_long)  # under 20 MB more for 10x the frames


def test_sample_script_makes_a_clip_with_sound(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
    try:
        from make_sample import make_sample
    finally:
        sys.path.pop(0)
    out = make_sample(tmp_path / "sample.mp4", seconds=0.4)
    from vidrestore.video import probe

    info = probe(out)
    assert (info.width, info.height) == (640, 480) and info.stream_counts.get("audio") == 1
