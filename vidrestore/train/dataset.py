"""Training data: aligned faces (FFHQ layout) with synthetic LQ copies and facial component boxes.

A sample is a dict of tensors: `gt` and `lq` (3,S,S) RGB in [-1,1], `loc_left_eye`, `loc_right_eye`,
`loc_mouth` (4,) boxes [x1,y1,x2,y2] in pixels of the S x S image, and `index`. With
`degrade_in_loader=False` it carries the drawn `degradation` (DegradationParams) instead of `lq`, and the
trainer degrades the whole batch on its device (`collate_samples` keeps the parameters as a list).
The degradation and the flip of sample i in epoch e depend on (seed, i, e) only, and the batches of
iteration t on (seed, t) only (`IterationBatchSampler`), so a resumed run sees the same data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from vidrestore.errors import VidrestoreError
from vidrestore.train.degradations import (
    DegradationConfig,
    apply_degradation,
    degrade,
    list_images,
    read_image,
    sample_degradation,
    sample_rng,
)

log = logging.getLogger(__name__)

COMPONENTS = ("left_eye", "right_eye", "mouth")
EYE_ENLARGE_RATIO = 1.4
# Component (centre x, centre y, half length) at 512 when no landmarks file is given: centres from the
# FFHQ-512 5-point template (eyes; midpoint of the mouth corners); half lengths are typical FFHQ values
# (eye width about 50 px, mouth width = corner distance 112 px).
TEMPLATE_COMPONENTS_512 = {
    "left_eye": (192.98, 239.95, 25.0),
    "right_eye": (318.90, 240.19, 25.0),
    "mouth": (257.18, 371.28, 56.0),
}


def image_files(source: str | Path) -> list[Path]:
    """The images of a folder (sorted) or of a list file (one path per line, relative to the file)."""
    source = Path(source).expanduser()
    if source.is_dir():
        files = list_images(source)
    elif source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        files = [(source.parent / line) for line in lines if line and not line.startswith("#")]
    else:
        raise VidrestoreError(f"training data not found: {source}")
    if not files:
        raise VidrestoreError(f"no images in {source}")
    return files


def load_component_boxes(path: str | Path) -> dict[int, dict[str, tuple[float, float, float]]]:
    """Read FFHQ_eye_mouth_landmarks_512.pth: {index: {component: (x, y, half_len)}} at 512."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    boxes = {}
    for key, entry in raw.items():
        boxes[int(key)] = {name: tuple(float(v) for v in entry[name]) for name in COMPONENTS}
    return boxes


def component_box(center_x: float, center_y: float, half_len: float) -> torch.Tensor:
    """The [x1, y1, x2, y2] box of a component, as GFP-GAN cuts it: [c - h + 1, c + h]."""
    return torch.tensor([center_x - half_len + 1, center_y - half_len + 1, center_x + half_len, center_y + half_len])


def boxes_for(
    components: dict[str, tuple[float, float, float]], out_size: int, flipped: bool
) -> dict[str, torch.Tensor]:
    """Component boxes cut at 512 (eyes enlarged, mirrored with eyes swapped on a flip), scaled to out_size."""
    boxes = {}
    for name in COMPONENTS:
        source = name
        if flipped and name != "mouth":
            source = "right_eye" if name == "left_eye" else "left_eye"
        x, y, half = components[source]
        if flipped:
            x = 512 - x
        if name != "mouth":
            half *= EYE_ENLARGE_RATIO
        boxes[f"loc_{name}"] = component_box(x, y, half) * (out_size / 512)
    return boxes


def to_tensor(img_bgr: np.ndarray) -> torch.Tensor:
    """float32 BGR (H,W,3) [0,1] -> RGB (3,H,W) [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(img_bgr[:, :, ::-1].transpose(2, 0, 1))) * 2.0 - 1.0


class FaceDataset(Dataset):
    """Aligned HQ faces, resized to out_size on load, with a freshly degraded LQ copy per draw."""

    def __init__(
        self,
        source: str | Path,
        out_size: int = 512,
        degradation: DegradationConfig | None = None,
        seed: int = 0,
        use_hflip: bool = True,
        landmarks: str | Path | None = None,
        cache: bool = False,
        degrade_in_loader: bool = True,
    ) -> None:
        self.files = image_files(source)
        self.degrade_in_loader = degrade_in_loader
        self.out_size = out_size
        self.degradation = degradation or DegradationConfig()
        self.seed = seed
        self.use_hflip = use_hflip
        self.landmarks = load_component_boxes(landmarks) if landmarks else None
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def _components(self, index: int) -> dict[str, tuple[float, float, float]]:
        """Landmark-file boxes of the image (by its numeric stem, else its index), else the template's."""
        if self.landmarks is None:
            return TEMPLATE_COMPONENTS_512
        stem = self.files[index].stem
        key = int(stem) if stem.isdigit() else index
        if key not in self.landmarks:
            raise VidrestoreError(f"no component boxes for {self.files[index].name} (key {key}) in the landmarks file")
        return self.landmarks[key]

    def hq(self, index: int) -> np.ndarray:
        """Face `index` as float32 BGR [0,1] at out_size (cached when the dataset caches)."""
        if self._cache is None:
            return read_image(self.files[index], self.out_size)
        if index not in self._cache:
            self._cache[index] = read_image(self.files[index], self.out_size)
        return self._cache[index]

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Sample `index`, or `(index, epoch)`: the epoch changes the random draws."""
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        rng = sample_rng(self.seed, index, epoch)
        gt = self.hq(index)
        flipped = bool(self.use_hflip and rng.uniform() < 0.5)
        if flipped:
            gt = np.ascontiguousarray(gt[:, ::-1])
        params = sample_degradation(rng, self.degradation)
        sample: dict = {"gt": to_tensor(gt), "index": torch.tensor(index)}
        if self.degrade_in_loader:
            sample["lq"] = to_tensor(apply_degradation(gt, params))
        else:
            sample["degradation"] = params
        sample.update(boxes_for(self._components(index), self.out_size, flipped))
        return sample


def collate_samples(samples: list[dict]) -> dict:
    """default_collate, except that drawn degradation parameters stay a list (one per sample)."""
    if "degradation" not in samples[0]:
        return default_collate(samples)
    batch = default_collate([{k: v for k, v in s.items() if k != "degradation"} for s in samples])
    batch["degradation"] = [s["degradation"] for s in samples]
    return batch


class IterationBatchSampler(Sampler):
    """Batches of (index, epoch) for iterations start..stop-1; iteration t's batch depends on (seed, t) only."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, stop: int) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.stop = stop
        self._perm_epoch = -1
        self._perm: Sequence[int] = ()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _permutation(self, epoch: int) -> Sequence[int]:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_samples, generator=gen).tolist()
            self._perm_epoch = epoch
        return self._perm

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """The (index, epoch) pairs of one iteration (0-based)."""
        items = []
        for k in range(self.batch_size):
            epoch, offset = divmod(iteration * self.batch_size + k, self.num_samples)
            items.append((self._permutation(epoch)[offset], epoch))
        return items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start, self.stop):
            yield self.batch(iteration)


class PairedFaces(Dataset):
    """Validation/evaluation pairs: the LQ images of a folder with the GT of the same stem, or GT degraded with a fixed seed."""

    def __init__(
        self,
        gt_source: str | Path,
        out_size: int,
        lq_dir: str | Path | None = None,
        seed: int = 0,
        degradation: DegradationConfig | None = None,
    ) -> None:
        self.gt_files = image_files(gt_source)
        self.out_size = out_size
        self.lq_dir = Path(lq_dir) if lq_dir else None
        self.seed = seed
        self.degradation = degradation or DegradationConfig()
        if self.lq_dir is not None:  # the pairs are the LQ images, each with the GT of the same stem
            self.lq_files = list_images(self.lq_dir)
            gt_by_stem = {p.stem: p for p in self.gt_files}
            missing = [p.name for p in self.lq_files if p.stem not in gt_by_stem]
            if missing or not self.lq_files:
                raise VidrestoreError(f"no ground truth in {gt_source} for LQ {', '.join(missing[:3]) or 'images'}")
            self.gt_files = [gt_by_stem[p.stem] for p in self.lq_files]

    def __len__(self) -> int:
        return len(self.gt_files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        gt = read_image(self.gt_files[index], self.out_size)
        if self.lq_dir is not None:
            lq = read_image(self.lq_files[index], self.out_size)
        else:
            lq = degrade(gt, sample_rng(self.seed, index), self.degradation)
        return {"gt": to_tensor(gt), "lq": to_tensor(lq), "name": self.gt_files[index].stem}
