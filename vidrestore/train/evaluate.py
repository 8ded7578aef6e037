"""`vidrestore eval`: restore a folder of faces with a model and report quality metrics.

Data layouts (DIR):
- DIR/lq and DIR/gt: degraded faces and their ground truth, paired by file stem;
- DIR of clean faces: each is degraded first with the paper's degradation model and a fixed seed;
- DIR of degraded faces without ground truth (`degraded=True`): only the no-reference scores.
No-reference scores, of outputs and inputs: NIQE (lower is better) when a pristine model is found
(`niqe_model`, else the `niqe_pristine` weights file, looked up offline) and the faces hold at least
two 96x96 blocks; and the Laplacian sharpness (metrics.laplacian_sharpness), always.
Full-reference scores against the ground truth: PSNR, SSIM, LPIPS when the `lpips` package and the `alexnet`
weights file are present (metrics.load_lpips, looked up offline) and identity with the ArcFace weights.
Writes metrics.json (per image and means), report.md and grid.png (input | output | ground truth),
each atomically. PSNR of identical images is infinite and is written as the string "inf" in JSON.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vidrestore.atomic import atomic_path
from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.train.arcface import find_identity_net
from vidrestore.train.dataset import PairedFaces, to_tensor
from vidrestore.train.degradations import DegradationConfig, list_images, read_image, write_image
from vidrestore.train.metrics import (
    identity_similarity,
    laplacian_sharpness,
    load_lpips,
    lpips_distance,
    psnr,
    ssim,
)
from vidrestore.train.niqe import BLOCK, MIN_BLOCKS, NiqeModel, block_count, load_niqe_model, niqe

log = logging.getLogger(__name__)

GRID_ROWS = 8
NIQE_NOTE = "'niqe' is NIQE (Mittal et al. 2013; lower is better) against the pristine model {}."
SHARPNESS_NOTE = "'sharpness' is the variance of the Laplacian of the gray image (0-255); it also rises with noise."


def _to_bgr01(t: torch.Tensor) -> np.ndarray:
    """(3,H,W) RGB [-1,1] -> (H,W,3) BGR [0,1] float32."""
    return ((t.detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()[:, :, ::-1].copy()


def _load_niqe(niqe_model: str | None, out_size: int) -> tuple[NiqeModel | None, str]:
    """The NIQE pristine model and its file, or None and why NIQE is skipped (a given model must load)."""
    from vidrestore.weights import find_weights, locate, spec_for

    spec = spec_for("niqe_pristine")
    if block_count(out_size, out_size) < MIN_BLOCKS:
        reason = f"{out_size}x{out_size} faces hold fewer than {MIN_BLOCKS} blocks of {BLOCK}x{BLOCK} pixels"
    elif niqe_model or locate(spec) is not None:
        path = find_weights(niqe_model or spec.name, offline=True)
        return load_niqe_model(path), str(path)
    else:
        reason = f"{spec.filename} not found (vidrestore weights download {spec.name}, or --niqe-model PATH)"
    log.info("NIQE skipped: %s", reason)
    return None, reason


def _niqe_or_none(img: np.ndarray, model: NiqeModel) -> float | None:
    """NIQE of a BGR [0,1] image, None when it has too little texture to score."""
    try:
        return niqe(img, model)
    except VidrestoreError as exc:
        log.debug("NIQE not computed: %s", exc)
        return None


def _samples(data: Path, out_size: int, seed: int, degraded: bool,
             degradation: DegradationConfig | None) -> tuple[list[dict[str, Any]], str]:
    """The evaluation samples and a description of where they came from."""
    if (data / "lq").is_dir() and (data / "gt").is_dir():
        pairs = PairedFaces(data / "gt", out_size, lq_dir=data / "lq")
        return [pairs[i] for i in range(len(pairs))], f"pairs from {data}/lq and {data}/gt"
    if degraded:
        files = list_images(data)
        if not files:
            raise VidrestoreError(f"no images in {data}")
        return [{"lq": to_tensor(read_image(f, out_size)), "gt": None, "name": f.stem} for f in files], \
            f"degraded faces from {data} (no ground truth)"
    pairs = PairedFaces(data, out_size, seed=seed, degradation=degradation or DegradationConfig())
    return [pairs[i] for i in range(len(pairs))], f"clean faces from {data}, degraded with seed {seed}"


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    limit: int = 0,
    degraded: bool = False,
    device: str = "auto",
    arcface: str | None = None,
    niqe_model: str | None = None,
    degradation: DegradationConfig | None = None,
) -> dict[str, Any]:
    """Restore the faces of `data` with `model`, write metrics.json, report.md and grid.png; return the metrics.

    Clean faces are degraded with `degradation` (default: the paper's numbers at 512) and `seed`.
    """
    from vidrestore.models import load_restorer
    from vidrestore.weights import find_weights

    data, out_dir = Path(data).expanduser(), Path(out_dir).expanduser()
    if not data.is_dir():
        raise VidrestoreError(f"evaluation data folder not found: {data}")
    dev = resolve_device(device)
    net = load_restorer(find_weights(str(model))).to(dev)
    out_size = net.out_size
    pristine, niqe_status = _load_niqe(niqe_model, out_size)
    samples, source = _samples(data, out_size, seed, degraded, degradation)
    if limit:
        samples = samples[:limit]
    lpips_scorer = load_lpips(dev)
    identity_net = find_identity_net(arcface, dev)
    rows, grid_rows = [], []
    for sample in tqdm(samples, desc="eval", unit="face", disable=len(samples) < 2):
        with torch.no_grad():
            out, _ = net(sample["lq"].unsqueeze(0).to(dev), return_rgb=False, randomize_noise=False)
        out = out.float().clamp(-1, 1).cpu()
        out_img, lq_img = _to_bgr01(out[0]), _to_bgr01(sample["lq"])
        row: dict[str, Any] = {"name": sample["name"], "sharpness": laplacian_sharpness(out_img),
                               "sharpness_input": laplacian_sharpness(lq_img)}
        if pristine is not None:
            row |= {"niqe": _niqe_or_none(out_img, pristine), "niqe_input": _niqe_or_none(lq_img, pristine)}
        gt = sample["gt"]
        if gt is not None:
            gt_img = _to_bgr01(gt)
            row |= {"psnr": psnr(out_img, gt_img), "ssim": ssim(out_img, gt_img),
                    "psnr_input": psnr(lq_img, gt_img)}
            row["lpips"] = lpips_distance(lpips_scorer, out, gt.unsqueeze(0)) if lpips_scorer else None
            row["identity"] = identity_similarity(identity_net, out.to(dev), gt.unsqueeze(0).to(dev)) if identity_net else None
        rows.append(row)
        if len(grid_rows) < GRID_ROWS:
            grid_rows.append([lq_img, out_img] + ([_to_bgr01(gt)] if gt is not None else []))
    metrics = _summarise(rows, model, source, lpips_scorer is not None, identity_net is not None,
                         pristine is not None, niqe_status)
    _write_outputs(out_dir, metrics, grid_rows)
    return metrics


def _summarise(rows: list[dict[str, Any]], model: str | Path, source: str, has_lpips: bool, has_identity: bool,
               has_niqe: bool, niqe_status: str) -> dict[str, Any]:
    keys = ["psnr", "ssim", "lpips", "identity", "niqe", "sharpness", "psnr_input", "niqe_input", "sharpness_input"]
    means = {k: _mean([r.get(k) for r in rows]) for k in keys if any(k in r for r in rows)}
    skipped = {}
    if not has_lpips:
        skipped["lpips"] = ('needs the lpips package (pip install -e ".[train]") and the alexnet weights file '
                            "(vidrestore weights download alexnet)")
    if not has_identity:
        skipped["identity"] = "arcface_resnet18.pth not found (vidrestore weights download arcface_resnet18)"
    if not has_niqe:
        skipped["niqe"] = niqe_status
    notes = [NIQE_NOTE.format(niqe_status), SHARPNESS_NOTE] if has_niqe else [SHARPNESS_NOTE]
    return {"model": str(model), "data": source, "count": len(rows), "mean": means, "skipped": skipped,
            "notes": notes, "images": rows}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _markdown(metrics: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else ("inf" if isinstance(v, float) and math.isinf(v) else f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [f"# Evaluation of {metrics['model']}", "", f"Data: {metrics['data']} ({metrics['count']} faces).", "",
             "| metric | mean |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in metrics["mean"].items()]
    lines += [""] + [f"- {k} skipped: {why}" for k, why in metrics["skipped"].items()]
    lines += [f"- {note}" for note in metrics["notes"]]
    lines += ["", "![inputs, outputs and ground truth](grid.png)", ""]
    return "\n".join(lines)


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of equally sized BGR images, two-pixel white gaps."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    gap = 2
    canvas = np.ones((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), np.float32)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = img
    return canvas


def _write_outputs(out_dir: Path, metrics: dict[str, Any], grid_rows: list[list[np.ndarray]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "metrics.json", json.dumps(_replace_nonfinite(metrics), indent=2, allow_nan=False) + "\n")
    _write_text(out_dir / "report.md", _markdown(metrics))
    if grid_rows:
        write_image(out_dir / "grid.png", _grid(grid_rows))
    log.info("wrote %s, %s and %s", out_dir / "metrics.json", out_dir / "report.md", out_dir / "grid.png")


def _replace_nonfinite(value: Any) -> Any:
    """Infinite floats -> "inf"/"-inf" so the JSON stays standard."""
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, dict):
        return {k: _replace_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nonfinite(v) for v in value]
    return value
