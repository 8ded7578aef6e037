"""Paste-back with a face-parsing mask (`--mask parse`), ParseNet loading, and the ResNet-50 detector's loading path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from faces_support import read_frames
from pipeline_support import make_tiny_restorer, test_options
from upscale_support import make_tiny_parsenet

from vidrestore.errors import CheckpointError
from vidrestore.faces.detector import FaceDetector, load_retinaface
from vidrestore.models.face_parser import BLUR_SIGMA, FaceParser, feather, feather_sizes
from vidrestore.models.parsenet import (
    ParseNetConfig,
    build_parsenet,
    infer_parsenet_config,
    load_parsenet,
)
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.weights import spec_for

CLIP = "retalking_face_1.mp4"  # 700x700, one face in every frame


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny restorer, a tiny random ParseNet, and ParseNets that label every pixel background / skin."""
    folder = tmp_path_factory.mktemp("parse")
    return {"restorer": make_tiny_restorer(folder / "tiny.pth"),
            "parser": make_tiny_parsenet(folder / "parser.pth"),
            "background": make_tiny_parsenet(folder / "background.pth", label=0),
            "skin": make_tiny_parsenet(folder / "skin.pth", label=1)}


@pytest.fixture(scope="module")
def frame(media_dir: Path) -> np.ndarray:
    """The first frame of the real clip (RGB), at half size."""
    return cv2.resize(read_frames(media_dir / "videos" / CLIP, 1)[0], (350, 350), interpolation=cv2.INTER_AREA)


def _pasted(restorer: Restorer, frame: np.ndarray, crops: torch.Tensor, matrices: np.ndarray,
            parser: Path | None) -> np.ndarray:
    """The frame with the restored crops pasted through the box (parser None) or that parser's masks."""
    engine = restorer.engine.with_blend(1.0, None if parser is None else
                                        FaceParser(load_parsenet(parser), torch.device("cpu")))
    out = frame.copy()
    engine.paste([out], np.zeros(len(crops), np.int64), crops, matrices)
    return out


def test_released_parsenet_layout_is_read_off_the_tensors() -> None:
    """The full-size network of parsing_parsenet.pth: its configuration is facexlib's 512 one, and the
    manifest's file size is its tensors in float32 plus the pickle's few kilobytes."""
    from facexlib.parsing.parsenet import ParseNet

    state = ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict()
    assert infer_parsenet_config(state) == ParseNetConfig(512, 512, 64, 19, 10, (64, 256))
    rebuilt = build_parsenet(state).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in state.items()}
    tensor_bytes = sum(v.numel() * v.element_size() for v in state.values() if v.dtype == torch.float32)
    spec = spec_for("parsing_parsenet", "parser")
    assert spec.filename == "parsing_parsenet.pth" and spec.sha256 is not None
    assert 0 < spec.size - tensor_bytes < 1 << 20


def test_other_checkpoints_are_refused_as_parsers(models: dict[str, Path]) -> None:
    model = load_parsenet(models["parser"])
    assert model.config.in_size == 64 and model.config.parsing_ch == 19
    with pytest.raises(CheckpointError, match="not a ParseNet"):
        load_parsenet(models["restorer"])


def _cv2_feather(binary: np.ndarray) -> np.ndarray:
    """facexlib's feathering with OpenCV at this size: two Gaussian blurs, then a zeroed border."""
    radius, sigma, border = feather_sizes(binary.shape[0])
    out = binary.astype(np.float32)
    for _ in range(2):
        out = cv2.GaussianBlur(out, (2 * radius + 1, 2 * radius + 1), sigma)
    out[:border], out[-border:], out[:, :border], out[:, -border:] = 0, 0, 0, 0
    return out


def test_feather_is_facexlibs_and_stays_inside_the_region_and_its_blur() -> None:
    size = 512
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - 230) ** 2 + (xx - 260) ** 2 < 120**2).astype(np.float32)
    soft = feather(torch.from_numpy(disc)[None, None])[0, 0].numpy()
    radius, sigma, border = feather_sizes(size)
    assert (radius, sigma, border) == (50, BLUR_SIGMA, 10)
    np.testing.assert_allclose(soft, _cv2_feather(disc), atol=1e-5)  # float32 sums in another order
    support = cv2.dilate(disc, np.ones((4 * radius + 1, 4 * radius + 1), np.uint8))  # two blurs of radius r
    assert not soft[support == 0].any()
    assert soft[230, 260] > 0.999 and soft[230, 260 + 120 + radius] < 0.01


def test_masks_are_zero_outside_the_parsed_face_and_hair(models: dict[str, Path]) -> None:
    parser = FaceParser(load_parsenet(models["parser"]), torch.device("cpu"))
    crops = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, 3, 128, 128))).float()
    labels = parser.labels(crops)
    masks = parser.masks(crops)
    assert masks.shape == (3, 1, 128, 128)
    binary = parser.face_classes[labels].float().unsqueeze(1)  # at the parser's 64x64
    radius, _, _ = feather_sizes(64)
    support = torch.nn.functional.max_pool2d(binary, 4 * radius + 1, stride=1, padding=2 * radius)
    support = torch.nn.functional.interpolate(support, size=(128, 128), mode="nearest")
    assert not masks[support == 0].any()
    assert 0.0 < float(masks.mean()) < 1.0


def test_parse_mask_changes_only_pixels_inside_the_parsed_region(models: dict[str, Path], detector_weights: Path,
                                                                 frame: np.ndarray) -> None:
    """Through the restorer: pixels change only where the parser's mask is above zero (its region and
    feather). A parser that sees only background pastes nothing; one that sees only skin pastes the
    crop less its feathered border, which is not the box's paste."""
    restorer = Restorer(test_options(models["restorer"], detector_weights, mask="parse", parser=str(models["parser"])))
    parsed = restorer.restore_frames([frame])[0]
    changed = np.any(parsed.image != frame, axis=-1)
    landmarks = np.asarray(parsed.faces[0].landmarks)[None]
    crops, matrices = restorer.engine.restore([frame], np.zeros(1, np.int64), landmarks)
    mask = restorer.engine.parser.masks(crops)[0, 0].numpy()
    inverse = cv2.invertAffineTransform(matrices[0])
    region = cv2.warpAffine((mask > 0).astype(np.float32), inverse, frame.shape[1::-1], flags=cv2.INTER_LINEAR)
    region = cv2.dilate((region > 0).astype(np.uint8), np.ones((3, 3), np.uint8))  # bilinear: a pixel further
    assert changed.any() and not changed[region == 0].any()
    assert np.array_equal(_pasted(restorer, frame, crops, matrices, models["parser"]), parsed.image)

    box = _pasted(restorer, frame, crops, matrices, None)
    assert (box != frame).any()
    assert np.array_equal(_pasted(restorer, frame, crops, matrices, models["background"]), frame)
    skin = _pasted(restorer, frame, crops, matrices, models["skin"])
    assert (skin != frame).any() and not np.array_equal(skin, box)


def test_resnet50_detector_loads_through_its_path(tmp_path: Path, frame: np.ndarray) -> None:
    """retinaface_resnet50 (GFPGAN's default detector): a random-weight network in the released layout
    (a bare state dict with DataParallel's `module.` prefixes) loads and runs; its name is in the manifest."""
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    network = RetinaFace(network_name="resnet50", device=torch.device("cpu"))
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)
    loaded = load_retinaface(path, torch.device("cpu"))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in network.parameters())
    assert any(name.startswith("body.layer4") for name, _ in loaded.named_parameters())
    detector = FaceDetector(path, "cpu")
    assert isinstance(detector.detect_one(cv2.resize(frame, (96, 96))), list)
    assert spec_for("retinaface_resnet50", "detector").filename == path.name
